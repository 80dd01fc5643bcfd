//! Renderings shared by the nodes that give a template the same values. Most templates read
//! group-level data only (`meta.ntp_server`, `node.labels.role`, `boot.kernel`): thousands of
//! nodes render them to the same text, and rendering (twice, for YAML's structure check) is
//! most of a rebuild. A template is rendered once per distinct set of the values it reads, as
//! minijinja's own analysis of the template names them; a template that reads a node's
//! identity (its name, MACs, address, the whole `meta`...) is rendered for every node.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use minijinja::value::ValueKind;
use minijinja::{Environment, Value};

use super::RenderError;

/// What one BootConfig's memo may hold: renderings are at most a megabyte each, and a
/// template whose values differ per node would otherwise keep one per node.
const MAX_ENTRIES: usize = 1024;
const MAX_BYTES: usize = 4 * 1024 * 1024;

/// The roots templates are given (`template::variables`).
const ROOTS: [&str; 4] = ["node", "meta", "boot", "server"];
/// Builtin functions that read nothing but their arguments.
const PURE_FUNCTIONS: [&str; 3] = ["range", "dict", "namespace"];
/// Values that set one node apart from every other: reading one makes a template per node.
const PER_NODE: [&str; 7] = [
    "node.name",
    "node.hostname",
    "node.nid",
    "node.ip",
    "node.mac",
    "node.macs",
    "boot.params",
];

pub type Rendered = Result<Option<String>, RenderError>;

/// How a template's renderings may be shared.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sharing {
    /// By the values at these paths (each a chain of attribute names from a root).
    ByValues(Vec<Vec<String>>),
    PerNode,
}

#[derive(Default)]
struct Cache {
    /// By template name and the values it read (`RenderMemo::key`).
    by_key: HashMap<String, Rendered>,
    bytes: usize,
}

#[derive(Default)]
pub struct RenderMemo {
    sharing: Vec<(&'static str, Sharing)>,
    cache: Mutex<Cache>,
}

impl RenderMemo {
    /// Learns from `env` what `template` (whose text is `source`) reads.
    pub fn learn(&mut self, env: &Environment<'static>, template: &'static str, source: &str) {
        // The analysis sees one template: what an included or imported one reads is not in
        // it. Any mention of those words keeps the template per node, however it is used.
        let composed = ["include", "import", "extends"]
            .iter()
            .any(|word| source.contains(word));
        let sharing = match env.get_template(template) {
            Ok(t) if !composed => {
                if assigns_a_root(source) {
                    Sharing::PerNode
                } else {
                    sharing_of(t.undeclared_variables(true))
                }
            }
            _ => Sharing::PerNode,
        };
        self.sharing.push((template, sharing));
    }

    /// The key under which `template`'s rendering with `vars` is shared, if it is.
    pub fn key(&self, template: &'static str, vars: &Value) -> Option<String> {
        let (_, Sharing::ByValues(paths)) = self.sharing.iter().find(|(t, _)| *t == template)?
        else {
            return None;
        };
        let mut key = String::from(template);
        key.push('\0');
        for path in paths {
            let mut value = vars.clone();
            for attr in path {
                value = value.get_attr(attr).unwrap_or(Value::UNDEFINED);
            }
            write_value(&value, &mut key)?;
            key.push('\u{1}');
        }
        Some(key)
    }

    pub fn get(&self, key: &str) -> Option<Rendered> {
        let cache = self.cache.lock().ok()?;
        cache.by_key.get(key).cloned()
    }

    pub fn keep(&self, key: String, rendered: &Rendered) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        let size = key.len()
            + match rendered {
                Ok(text) => text.as_ref().map_or(0, String::len),
                Err(e) => e.to_string().len(),
            };
        if cache.by_key.len() >= MAX_ENTRIES || cache.bytes + size > MAX_BYTES {
            cache.by_key.clear();
            cache.bytes = 0;
        }
        if size <= MAX_BYTES {
            cache.bytes += size;
            cache.by_key.insert(key, rendered.clone());
        }
    }
}

/// True when `source` may assign a root: `set node =`, `for meta in`, `macro m(boot)`,
/// `with server =`. The analysis reports no read of a variable after it is assigned, and an
/// assignment on one branch only would hide reads of the real one on the others. Decided on the
/// text around each mention, erring towards "yes": such a template is rendered per node.
fn assigns_a_root(source: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    ROOTS.iter().any(|root| {
        source.match_indices(root).any(|(at, _)| {
            let (head, tail) = (&source[..at], &source[at + root.len()..]);
            if head.chars().next_back().is_some_and(word) || tail.chars().next().is_some_and(word) {
                return false; // part of a longer name
            }
            let (before, after) = (head.trim_end(), tail.trim_start());
            let previous_word = before.rsplit(|c: char| !word(c)).next().unwrap_or_default();
            ["set", "for", "as", "with", "macro"].contains(&previous_word)
                || before.ends_with(',')
                || before.ends_with('(')
                || (after.starts_with('=') && !after.starts_with("=="))
        })
    })
}

fn sharing_of(variables: std::collections::HashSet<String>) -> Sharing {
    let mut paths = Vec::new();
    for variable in variables {
        let parts: Vec<String> = variable.split('.').map(str::to_owned).collect();
        let root = parts.first().map(String::as_str).unwrap_or_default();
        if PURE_FUNCTIONS.contains(&root) && parts.len() == 1 {
            continue;
        }
        let per_node = PER_NODE
            .iter()
            .any(|p| variable == *p || variable.starts_with(&format!("{p}.")));
        // A whole root, or `node.labels` whole, is read item by item in ways the analysis does
        // not name (a loop, a subscript, `debug()`); so is anything outside the known roots.
        let whole = parts.len() == 1 || variable == "node.labels";
        if per_node || whole || !ROOTS.contains(&root) {
            return Sharing::PerNode;
        }
        paths.push(parts);
    }
    paths.sort();
    Sharing::ByValues(paths)
}

/// Writes `value` into a key, tagged with its kind so that `1` and `"1"` differ; `None` for
/// kinds without a faithful text form.
fn write_value(value: &Value, key: &mut String) -> Option<()> {
    match value.kind() {
        ValueKind::Undefined => key.push('u'),
        ValueKind::String | ValueKind::Plain => {
            key.push('s');
            write!(key, "{value}").ok()?;
        }
        ValueKind::None
        | ValueKind::Bool
        | ValueKind::Number
        | ValueKind::Seq
        | ValueKind::Map
        | ValueKind::Bytes => {
            key.push('j');
            key.push_str(&serde_json::to_string(value).ok()?);
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sharing(source: &str) -> Sharing {
        let mut env = Environment::new();
        env.add_template_owned("t", source.to_owned()).unwrap();
        sharing_of(env.get_template("t").unwrap().undeclared_variables(true))
    }

    fn paths(list: &[&str]) -> Sharing {
        let mut paths: Vec<Vec<String>> = list
            .iter()
            .map(|p| p.split('.').map(str::to_owned).collect())
            .collect();
        paths.sort();
        Sharing::ByValues(paths)
    }

    #[test]
    fn group_level_values_are_shared_by_value() {
        assert_eq!(
            sharing("ntp: {{ meta.ntp_server }} {{ node.labels.rack }}"),
            paths(&["meta.ntp_server", "node.labels.rack"])
        );
        assert_eq!(
            sharing("{% for s in meta.servers %}{{ s }}{% endfor %}{{ boot.kernel }}"),
            paths(&["boot.kernel", "meta.servers"])
        );
        for source in [
            "{% if node.labels.gpu == 'yes' %}x{% endif %}",
            "nodes: {{ meta.nodes }} {{ node.labels.nodeset }}",
        ] {
            assert!(!assigns_a_root(source), "{source}");
        }
        assert_eq!(sharing("constant"), paths(&[]));
        assert_eq!(
            sharing("{% for i in range(3) %}{{ i }}{% endfor %}"),
            paths(&[])
        );
    }

    #[test]
    fn anything_that_may_read_a_node_is_per_node() {
        for source in [
            "{{ node.hostname }}",
            "{{ meta.x | default(node.name) }}",
            "{{ meta['ntp.server'] }}",
            "{% for k, v in meta|items %}{{ k }}{% endfor %}",
            "{{ node.labels['rack'] }}",
            "{{ debug() }}",
            "{{ boot.params }}",
            "{% macro m(x) %}{{ x }}{% endmacro %}{{ m(node.ip) }}",
            "{{ other.value }}",
        ] {
            assert_eq!(sharing(source), Sharing::PerNode, "{source}");
        }
    }

    /// A root assigned on some branch hides the reads of it after the branch from the
    /// analysis.
    #[test]
    fn templates_that_assign_a_root_are_per_node() {
        for source in [
            "{% if meta.x %}{% set node = {'name': 'a'} %}{% endif %}{{ node.name }}",
            "{% for node in meta.list %}{% endfor %}{{ meta.y }}",
            "{% macro m(meta) %}{{ meta }}{% endmacro %}{{ m(1) }}",
            "{{ meta.a }}{% if meta.x %}{% set meta = {'b': 1} %}{% endif %}{{ meta.b }}",
            "{% for k, boot in meta.items %}{% endfor %}",
            "{% with server = 1 %}{% endwith %}",
        ] {
            let mut env = Environment::new();
            env.add_template_owned("t", source.to_owned()).unwrap();
            let mut memo = RenderMemo::default();
            memo.learn(&env, "t", source);
            assert_eq!(memo.sharing[0].1, Sharing::PerNode, "{source}");
        }
    }

    /// A template that includes another reads what that one reads, which the analysis of the
    /// first does not show.
    #[test]
    fn templates_made_of_others_are_per_node() {
        let mut env = Environment::new();
        env.add_template("inner", "{{ node.name }}").unwrap();
        env.add_template("outer", "{% include 'inner' %}").unwrap();
        env.add_template("macros", "{% import 'inner' as m %}x")
            .unwrap();
        let mut memo = RenderMemo::default();
        memo.learn(&env, "outer", "{% include 'inner' %}");
        memo.learn(&env, "macros", "{% import 'inner' as m %}x");
        let vars = minijinja::context! { node => minijinja::context! { name => "n1" } };
        assert_eq!(memo.key("outer", &vars), None);
        assert_eq!(memo.key("macros", &vars), None);
    }

    #[test]
    fn keys_tell_values_and_kinds_apart() {
        let mut memo = RenderMemo::default();
        let mut env = Environment::new();
        env.add_template("t", "{{ meta.a }}").unwrap();
        memo.learn(&env, "t", "{{ meta.a }}");
        let key = |meta: serde_json::Value| {
            memo.key(
                "t",
                &minijinja::context! { meta => Value::from_serialize(meta) },
            )
            .unwrap()
        };
        let one = key(serde_json::json!({"a": 1}));
        assert_eq!(one, key(serde_json::json!({"a": 1, "b": 2})));
        assert_ne!(one, key(serde_json::json!({"a": "1"})));
        assert_ne!(one, key(serde_json::json!({"a": 2})));
        assert_ne!(one, key(serde_json::json!({})));
    }

    #[test]
    fn what_is_kept_is_bounded() {
        let memo = RenderMemo::default();
        for i in 0..(MAX_ENTRIES * 3) {
            memo.keep(format!("k{i}"), &Ok(Some("x".repeat(100))));
        }
        let cache = memo.cache.lock().unwrap();
        assert!(cache.by_key.len() <= MAX_ENTRIES);
        assert!(cache.bytes <= MAX_BYTES);
    }
}
