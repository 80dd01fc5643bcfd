//! One BootConfig's templates, each compiled into the environment of its dialect, and the
//! checks every rendering passes before anything is served: the dialect's value rule, a cap on
//! the output, and for YAML documents, the structure its template's own text gives it.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use minijinja::{Environment, ErrorKind, Value};

use super::RenderError;
use super::cloud_init::CLOUD_CONFIG_HEADER;
use super::memo::RenderMemo;
use super::shape::{Shape, yaml_shape};
use super::template::{
    Dialect, GRUB_SCRIPT, NETWORK_CONFIG, PARAMS, SCRIPT, USER_DATA, VENDOR_DATA, YAML_UNSAFE,
    new_environment,
};

/// The most one rendering of `params` may produce: a kernel command line is at most a few KiB.
pub const MAX_PARAMS_BYTES: usize = 4096;
/// The most one rendering of any other template may produce.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// What the shape cache of one BootConfig may hold, in structure tokens.
const MAX_CACHED_SHAPE_BYTES: usize = 1024 * 1024;

/// Shapes by (hash, length) of the shape rendering's text: the text itself is not kept (it
/// may be a megabyte), and the hash is keyed at random, so no one can aim for a collision.
#[derive(Default)]
struct ShapeCache {
    hasher: std::collections::hash_map::RandomState,
    by_text: HashMap<(u64, usize), Arc<Result<Shape, String>>>,
    bytes: usize,
}

/// YAML's longest implicit key.
const MAX_IMPLICIT_KEY: usize = 1024;
/// Distinct shape renderings remembered per BootConfig; most have one (every node takes the
/// same branches), a template that branches per node may have a few.
const MAX_CACHED_SHAPES: usize = 256;

/// The sources of a BootConfig's templates, by name; an empty source is no template.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sources<'a> {
    pub params: &'a str,
    pub script: &'a str,
    pub grub_script: &'a str,
    pub user_data: Option<&'a str>,
    pub vendor_data: Option<&'a str>,
    pub network_config: Option<&'a str>,
}

pub struct TemplateSet {
    ipxe: Environment<'static>,
    yaml: Environment<'static>,
    shape: Environment<'static>,
    text: Environment<'static>,
    grub: Environment<'static>,
    /// The templates there are, with their dialect.
    dialects: Vec<(&'static str, Dialect)>,
    /// Structure of each distinct shape rendering seen so far, by a keyed hash of its text.
    shapes: Mutex<ShapeCache>,
    /// Renderings shared by the nodes that give a template the same values.
    memo: RenderMemo,
}

/// One line saying what is wrong and where, without the debug dump of the template source.
pub fn describe(e: &minijinja::Error) -> String {
    let what = match e.kind() {
        ErrorKind::UndefinedError => UNDEFINED_PREFIX.to_string(),
        _ => e.kind().to_string(),
    };
    let mut msg = match e.detail() {
        Some(detail) => format!("{what}: {detail}"),
        None => what,
    };
    if let Some(line) = e.line() {
        msg.push_str(&format!(" (line {line})"));
    }
    msg
}

/// How `describe` starts for an undefined variable.
pub const UNDEFINED_PREFIX: &str = "undefined value";

fn error(template: &'static str, message: impl Into<String>) -> RenderError {
    RenderError::Template {
        template,
        message: message.into(),
    }
}

/// An `io::Write` that refuses to grow past a limit: template output is bounded in bytes, not
/// only in instructions (a short loop can still print a lot).
struct Capped {
    out: Vec<u8>,
    max: usize,
    overflowed: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.max {
            self.overflowed = true;
            return Err(std::io::Error::other("output limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A rendering, and whether every value it wrote was plain-safe (`template::is_plain_safe`;
/// only the YAML dialect tells, the others answer false).
fn render_capped(
    env: &Environment<'static>,
    template: &'static str,
    vars: &Value,
    max: usize,
) -> Result<(String, bool), RenderError> {
    let tmpl = env
        .get_template(template)
        .map_err(|e| error(template, describe(&e)))?;
    let mut out = Capped {
        out: Vec::new(),
        max,
        overflowed: false,
    };
    match tmpl.render_captured_to(vars, &mut out) {
        Ok(captured) => {
            let plain = captured.state().get_temp(YAML_UNSAFE).is_none();
            let text =
                String::from_utf8(out.out).map_err(|_| error(template, "output is not UTF-8"))?;
            Ok((text, plain))
        }
        Err(_) if out.overflowed => Err(error(
            template,
            format!("output is larger than {max} bytes; the limit protects every other node"),
        )),
        Err(e) => Err(error(template, describe(&e))),
    }
}

impl TemplateSet {
    pub fn compile(sources: &Sources<'_>) -> Result<TemplateSet, RenderError> {
        let mut set = TemplateSet {
            ipxe: new_environment(Dialect::Ipxe),
            yaml: new_environment(Dialect::Yaml),
            shape: new_environment(Dialect::Shape),
            text: new_environment(Dialect::Text),
            grub: new_environment(Dialect::Grub),
            dialects: Vec::new(),
            shapes: Mutex::default(),
            memo: RenderMemo::default(),
        };
        let yaml_or_text = |source: &str| {
            if source.trim_start().starts_with(CLOUD_CONFIG_HEADER) {
                Dialect::Yaml
            } else {
                Dialect::Text
            }
        };
        let wanted = [
            (PARAMS, Some(sources.params), Dialect::Ipxe),
            (SCRIPT, Some(sources.script), Dialect::Ipxe),
            (GRUB_SCRIPT, Some(sources.grub_script), Dialect::Grub),
            (
                USER_DATA,
                sources.user_data,
                sources.user_data.map_or(Dialect::Text, yaml_or_text),
            ),
            (
                VENDOR_DATA,
                sources.vendor_data,
                sources.vendor_data.map_or(Dialect::Text, yaml_or_text),
            ),
            // network-config has no header: it is YAML by definition.
            (NETWORK_CONFIG, sources.network_config, Dialect::Yaml),
        ];
        for (name, source, dialect) in wanted {
            let Some(source) = source.filter(|s| !s.is_empty()) else {
                continue;
            };
            let add = |env: &mut Environment<'static>| {
                env.add_template_owned(name, source.to_owned())
                    .map_err(|e| error(name, describe(&e)))
            };
            match dialect {
                Dialect::Ipxe => add(&mut set.ipxe)?,
                Dialect::Text => add(&mut set.text)?,
                Dialect::Grub => add(&mut set.grub)?,
                Dialect::Yaml | Dialect::Shape => {
                    add(&mut set.yaml)?;
                    add(&mut set.shape)?;
                }
            }
            let env = match dialect {
                Dialect::Ipxe => &set.ipxe,
                Dialect::Text => &set.text,
                Dialect::Grub => &set.grub,
                Dialect::Yaml | Dialect::Shape => &set.yaml,
            };
            set.memo.learn(env, name, source);
            set.dialects.push((name, dialect));
        }
        Ok(set)
    }

    fn dialect(&self, template: &str) -> Option<Dialect> {
        self.dialects
            .iter()
            .find(|(name, _)| *name == template)
            .map(|(_, d)| *d)
    }

    pub fn has(&self, template: &str) -> bool {
        self.dialect(template).is_some()
    }

    /// Renders one template with every check; `Ok(None)` when there is none by that name.
    /// A node that gives the template the same values as one before gets that rendering.
    pub fn render(
        &self,
        template: &'static str,
        vars: &Value,
    ) -> Result<Option<String>, RenderError> {
        let Some(key) = self.memo.key(template, vars) else {
            return self.render_checked(template, vars);
        };
        if let Some(rendered) = self.memo.get(&key) {
            return rendered;
        }
        let rendered = self.render_checked(template, vars);
        self.memo.keep(key, &rendered);
        rendered
    }

    fn render_checked(
        &self,
        template: &'static str,
        vars: &Value,
    ) -> Result<Option<String>, RenderError> {
        let Some(dialect) = self.dialect(template) else {
            return Ok(None);
        };
        let max = if template == PARAMS {
            MAX_PARAMS_BYTES
        } else {
            MAX_DOCUMENT_BYTES
        };
        let env = match dialect {
            Dialect::Ipxe => &self.ipxe,
            Dialect::Text => &self.text,
            Dialect::Grub => &self.grub,
            Dialect::Yaml | Dialect::Shape => &self.yaml,
        };
        // The shape rendering first: it is dropped before the document is made, so its memory
        // is reused for it instead of leaving a hole beside every node's documents.
        let expected = (dialect == Dialect::Yaml)
            .then(|| {
                render_capped(&self.shape, template, vars, max)
                    .map(|(shape_text, _)| self.shape_of(&shape_text))
            })
            .transpose()?;
        let (rendered, plain) = render_capped(env, template, vars, max)?;
        if let Some(expected) = expected {
            check_structure(template, &expected, &rendered, plain)?;
        }
        Ok(Some(rendered))
    }

    fn shape_of(&self, shape_text: &str) -> Arc<Result<Shape, String>> {
        let (key, cached) = match self.shapes.lock() {
            Ok(cache) => {
                let key = (cache.hasher.hash_one(shape_text), shape_text.len());
                (key, cache.by_text.get(&key).cloned())
            }
            Err(_) => ((0, 0), None),
        };
        if let Some(shape) = cached {
            return shape;
        }
        let shape = Arc::new(yaml_shape(shape_text));
        if let Ok(mut cache) = self.shapes.lock() {
            let size = shape.as_ref().as_ref().map_or(64, Shape::len);
            if cache.by_text.len() >= MAX_CACHED_SHAPES
                || cache.bytes + size > MAX_CACHED_SHAPE_BYTES
            {
                cache.by_text.clear();
                cache.bytes = 0;
            }
            cache.bytes += size;
            cache.by_text.insert(key, shape.clone());
        }
        shape
    }
}

/// A rendered YAML document must parse, and have the structure of its shape rendering:
/// no interpolated value may add a key or a list item, or stand in for a collection.
fn check_structure(
    template: &'static str,
    expected: &Result<Shape, String>,
    rendered: &str,
    plain: bool,
) -> Result<(), RenderError> {
    // Every value plain-safe, and too short for any implicit key to pass YAML's 1024
    // characters: the document reads as its shape rendering does, which is parsed once
    // for all the nodes that render it alike.
    let actual = if plain && rendered.len() <= MAX_IMPLICIT_KEY {
        match expected {
            Ok(shape) => shape.clone(),
            Err(e) => return Err(error(template, format!("the template's own text: {e}"))),
        }
    } else {
        yaml_shape(rendered).map_err(|e| error(template, e))?
    };
    if rendered.trim_start().starts_with(CLOUD_CONFIG_HEADER) && !actual.is_mapping_or_empty() {
        return Err(error(
            template,
            "a #cloud-config document must be a YAML mapping",
        ));
    }
    match expected {
        Ok(expected) if *expected == actual => Ok(()),
        Ok(_) => Err(error(
            template,
            "an interpolated value changes the document's structure (it adds a key or a \
             list item, or replaces a value with a collection); write such values with \
             |tojson, or fix the value",
        )),
        Err(e) => Err(error(template, format!("the template's own text: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use minijinja::context;

    use proptest::prop_assume;

    use super::super::template::{ipxe_unsafe_char, is_plain_safe};
    use super::*;

    fn user_data(template: &str) -> TemplateSet {
        TemplateSet::compile(&Sources {
            user_data: Some(template),
            ..Default::default()
        })
        .unwrap()
    }

    fn render_with(set: &TemplateSet, meta: serde_json::Value) -> Result<String, RenderError> {
        set.render(USER_DATA, &context! { meta => meta })
            .map(|doc| doc.unwrap_or_default())
    }

    #[test]
    fn values_cannot_add_keys_or_items_to_cloud_config() {
        let set = user_data(
            "#cloud-config\nhostname: {{ meta.h }}\nntp:\n  servers: [{{ meta.ntp }}]\nwrite_files:\n- path: /etc/motd\n  content: |\n    {{ meta.motd }}\n",
        );
        let ok = serde_json::json!({"h": "nid001", "ntp": "10.1.0.2", "motd": "hello: world"});
        assert!(render_with(&set, ok).is_ok());
        for evil in [
            serde_json::json!({"h": "x\nruncmd: [reboot]", "ntp": "a", "motd": "m"}),
            serde_json::json!({"h": "x", "ntp": "a, 10.6.6.6", "motd": "m"}),
            serde_json::json!({"h": "x", "ntp": "a", "motd": "m\nruncmd: [reboot]"}),
            serde_json::json!({"h": "[a, b]", "ntp": "a", "motd": "m"}),
            serde_json::json!({"h": "{a: b}", "ntp": "a", "motd": "m"}),
        ] {
            let got = render_with(&set, evil.clone());
            assert!(got.is_err(), "{evil} was accepted: {got:?}");
        }
        // tojson writes any string as one node.
        let set = user_data("#cloud-config\nhostname: {{ meta.h|tojson }}\n");
        let doc = render_with(&set, serde_json::json!({"h": "x\nruncmd: [reboot]"})).unwrap();
        assert_eq!(doc, "#cloud-config\nhostname: \"x\\nruncmd: [reboot]\"\n");
        // ...where it stands alone: beside literal text its quotes are just characters.
        let set = user_data(
            "#cloud-config\nusers: [{name: admin, gecos: Admin {{ meta.owner|tojson }}}]\nruncmd:\n - echo {{ meta.x|tojson }}\n",
        );
        for evil in [
            serde_json::json!({"owner": "x, sudo: ALL, y: z", "x": "a"}),
            serde_json::json!({"owner": "o", "x": "a: b"}),
        ] {
            let got = render_with(&set, evil.clone());
            assert!(got.is_err(), "{evil} was accepted: {got:?}");
        }
        assert!(render_with(&set, serde_json::json!({"owner": "o", "x": "a"})).is_ok());
    }

    proptest::proptest! {
        /// Whatever a value holds, a cloud-config keeps the keys and items its template gives it.
        #[test]
        fn no_value_changes_a_cloud_configs_structure(
            v in "\\PC{0,24}|[a-z :,\\[\\]{}#&*!|>'\"\\-\n]{0,24}",
            w in "\\PC{0,24}|[a-z :,\\[\\]{}#&*!|>'\"\\-\n]{0,24}",
        ) {
            let set = user_data("#cloud-config\nk: {{ meta.v }}\nl: [{{ meta.w }}]\nm:\n  n: |\n    {{ meta.v }}\n");
            if let Ok(doc) = render_with(&set, serde_json::json!({"v": v, "w": w})) {
                let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&doc).unwrap();
                let map = value.as_mapping().unwrap();
                let keys: Vec<_> = map.keys().filter_map(|k| k.as_str()).collect();
                proptest::prop_assert_eq!(keys, vec!["k", "l", "m"]);
                proptest::prop_assert!(!map["k"].is_mapping() && !map["k"].is_sequence());
                proptest::prop_assert_eq!(map["l"].as_sequence().map(Vec::len), Some(1));
                proptest::prop_assert_eq!(map["m"].as_mapping().map(|m| m.len()), Some(1));
            }
        }

        /// The shortcut: a document whose values are all plain-safe reads as its shape
        /// rendering does, wherever they stand.
        #[test]
        fn plain_safe_values_keep_the_shape_rendering(
            v in "[A-Za-z0-9][A-Za-z0-9._/-]{0,30}",
            w in "[A-Za-z0-9][A-Za-z0-9._/-]{0,30}",
        ) {
            prop_assume!(is_plain_safe(&v) && is_plain_safe(&w));
            let template = "#cloud-config\n{{ meta.v }}: {{ meta.w }}\nk: [{{ meta.v }}, {a: {{ meta.w }}}]\nq: \"x {{ meta.v }}\"\ns: '{{ meta.w }}'\nl:\n- {{ meta.v }}\n- !!str {{ meta.w }}\nb: |\n  {{ meta.v }}\n{{ meta.w }}x: &a1 1\n";
            let mut shape_env = new_environment(Dialect::Shape);
            shape_env.add_template_owned(USER_DATA, template).unwrap();
            let vars = context! { meta => serde_json::json!({"v": v, "w": w}) };
            let shape_text = shape_env.get_template(USER_DATA).unwrap().render(&vars).unwrap();
            let mut yaml_env = new_environment(Dialect::Yaml);
            yaml_env.add_template_owned(USER_DATA, template).unwrap();
            let doc = yaml_env.get_template(USER_DATA).unwrap().render(&vars).unwrap();
            proptest::prop_assert_eq!(yaml_shape(&doc), yaml_shape(&shape_text), "{}", doc);
        }

        /// Whatever a value holds, it adds nothing iPXE would read as a new command or token.
        #[test]
        fn no_value_adds_an_ipxe_token(v in "\\PC{0,24}|[a-z |&;#$\"'\\\\\n{}]{0,24}") {
            let set = TemplateSet::compile(&Sources {
                params: "root=live:{{ meta.v }} console=ttyS0",
                script: "#!ipxe\nkernel http://k/vmlinuz {{ meta.v|safe }}\nboot\n",
                ..Default::default()
            })
            .unwrap();
            let vars = context! { meta => serde_json::json!({"v": v}) };
            for (template, literal) in [
                (PARAMS, "root=live: console=ttyS0"),
                (SCRIPT, "#!ipxe\nkernel http://k/vmlinuz \nboot\n"),
            ] {
                // The template's own white space and newlines are all the output may have.
                let separators = |text: &str| text.chars().filter(|c| ipxe_unsafe_char(*c)).count();
                if let Ok(Some(out)) = set.render(template, &vars) {
                    proptest::prop_assert_eq!(separators(&out), separators(literal), "{}", out);
                }
            }
        }
    }

    proptest::proptest! {
        /// Whatever a value holds, it adds nothing GRUB would read as a new command, argument
        /// or variable: the output has exactly the template's own separators.
        #[test]
        fn no_value_adds_a_grub_token(v in "\\PC{0,24}|[a-z ;&|<>{}$#*?\\[\\]\"'\\\\\n`]{0,24}") {
            let set = TemplateSet::compile(&Sources {
                grub_script: "linux (http,h)/k root={{ meta.v }} x\nboot\n",
                ..Default::default()
            })
            .unwrap();
            let vars = context! { meta => serde_json::json!({"v": v}) };
            let separators = |text: &str| {
                text.chars().filter(|c| super::super::grub::grub_unsafe_char(*c)).count()
            };
            if let Ok(Some(out)) = set.render(GRUB_SCRIPT, &vars) {
                proptest::prop_assert_eq!(
                    separators(&out),
                    separators("linux (http,h)/k root= x\nboot\n"),
                    "{}",
                    out
                );
            }
        }
    }

    #[test]
    fn output_is_capped() {
        let line = "x".repeat(1000);
        let set = user_data(&format!(
            "#!/bin/sh\n{{% for i in range(2000) %}}{line}{{% endfor %}}"
        ));
        let err = render_with(&set, serde_json::json!({})).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        let set = TemplateSet::compile(&Sources {
            params: "{% for i in range(1000) %}console=ttyS0 {% endfor %}",
            ..Default::default()
        })
        .unwrap();
        assert!(set.render(PARAMS, &context! {}).is_err());
    }

    #[test]
    fn a_cloud_config_that_is_not_a_mapping_is_refused() {
        let set = user_data("#cloud-config\n- a\n");
        assert!(render_with(&set, serde_json::json!({})).is_err());
        let set = user_data("#cloud-config\n");
        assert_eq!(
            render_with(&set, serde_json::json!({})).unwrap(),
            "#cloud-config\n"
        );
    }

    /// Nodes that give a template the same values share its rendering; a node whose value
    /// differs gets its own, and a value that breaks the document is refused for every node
    /// that has it, not only the first.
    #[test]
    fn shared_renderings_never_cross_values() {
        let set = TemplateSet::compile(&Sources {
            vendor_data: Some("#cloud-config\nntp: {{ meta.ntp }}\n"),
            user_data: Some("#cloud-config\nhostname: {{ node.hostname }}\n"),
            ..Default::default()
        })
        .unwrap();
        let vars = |hostname: &str, ntp: &str| {
            context! { node => context! { hostname => hostname }, meta => context! { ntp => ntp } }
        };
        let doc = |template, hostname, ntp| {
            set.render(template, &vars(hostname, ntp))
                .map(|d| d.unwrap_or_default())
        };
        for _ in 0..2 {
            for (template, hostname, ntp, want) in [
                (
                    VENDOR_DATA,
                    "n1",
                    "10.0.0.1",
                    "#cloud-config\nntp: 10.0.0.1\n",
                ),
                (
                    VENDOR_DATA,
                    "n2",
                    "10.0.0.2",
                    "#cloud-config\nntp: 10.0.0.2\n",
                ),
                (USER_DATA, "n1", "10.0.0.1", "#cloud-config\nhostname: n1\n"),
                (USER_DATA, "n2", "10.0.0.1", "#cloud-config\nhostname: n2\n"),
            ] {
                assert_eq!(doc(template, hostname, ntp).unwrap(), want);
            }
            assert!(doc(VENDOR_DATA, "n3", "x\nruncmd: [reboot]").is_err());
        }
    }
}
