//! The template environment every BootConfig compiles into, and the variables templates see.

use std::net::IpAddr;

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, context};

use crate::crd::{Arch, NodeGroup};
use crate::labels::Labels;
use crate::mac::Mac;

pub const PARAMS: &str = "params";
pub const SCRIPT: &str = "script";
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

/// A fresh environment: strict about undefined variables (a typo is an error, not an empty
/// string), keeps trailing newlines (cloud-config files end in one), and checks every value
/// interpolated into an iPXE template. Literal template text is the BootConfig author's and is
/// trusted; values come from inventory (names, labels, meta-data) and are not.
pub fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.set_fuel(Some(FUEL_PER_RENDER));
    env.set_formatter(|out, state, value| {
        let ipxe = matches!(state.name(), PARAMS | SCRIPT);
        if value.is_none() || value.is_undefined() {
            return Ok(());
        }
        if ipxe && !value.is_safe() {
            let text = value.to_string();
            if let Some(bad) = text.chars().find(|c| ipxe_unsafe_char(*c)) {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "value {text:?} may not reach an iPXE script: it contains {bad:?} \
                         (white space, control characters and |&;#$\"'\\ are refused)"
                    ),
                ));
            }
            return out
                .write_str(&text)
                .map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string()));
        }
        write!(out, "{value}").map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string()))
    });
    env
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
        node: context! {
            name => node.name,
            hostname => node.hostname,
            nid => node.nid,
            ip => node.ip.map(|ip| ip.to_string()),
            mac => node.mac.map(|m| m.to_string()),
            macs => macs,
            arch => node.arch.map(Arch::as_str),
            group => node.group,
            namespace => node.namespace,
            labels => labels,
        },
        meta: Value::from_serialize(node.meta),
    }
}

/// What templates know of the boot that was chosen. Values here were checked already (URLs at
/// compile time, params after rendering), so they are marked safe for iPXE templates.
#[derive(Debug, Clone, Copy)]
pub struct BootView<'a> {
    pub config: &'a str,
    pub kernel: &'a str,
    pub initrd: Option<&'a str>,
    pub params: Option<&'a str>,
    pub server_url: &'a str,
}

pub fn variables(vars: &NodeVars, boot: &BootView<'_>) -> Value {
    let safe = |s: &str| Value::from_safe_string(s.to_owned());
    context! {
        node => vars.node.clone(),
        meta => vars.meta.clone(),
        boot => context! {
            config => boot.config,
            kernel => safe(boot.kernel),
            initrd => boot.initrd.map(safe),
            params => boot.params.map(safe),
        },
        server => context! { url => safe(boot.server_url) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, name: &str, meta: serde_json::Value) -> Result<String, Error> {
        let mut env = new_environment();
        env.add_template_owned(name.to_owned(), template.to_owned())
            .unwrap();
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
        env.get_template(name)?
            .render(variables(&node_vars(&node), &boot))
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
        }
        // The same value is fine in cloud-init data, where iPXE never sees it.
        let ud = render(
            "#cloud-config\nx: {{ meta.v }}\n",
            USER_DATA,
            serde_json::json!({"v": "a b"}),
        );
        assert_eq!(ud.unwrap(), "#cloud-config\nx: a b\n");
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
        let mut env = new_environment();
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
    fn undefined_is_an_error() {
        let err = render("{{ meta.nope }}", USER_DATA, serde_json::json!({})).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UndefinedError);
    }
}
