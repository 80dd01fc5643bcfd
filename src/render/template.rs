//! The template environment every BootConfig compiles into, and the variables templates see.

use std::net::IpAddr;

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, context};

use crate::crd::Arch;
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
    pub labels: &'a Labels,
    pub meta: &'a serde_json::Map<String, serde_json::Value>,
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

pub fn variables(node: &NodeView<'_>, boot: &BootView<'_>) -> Value {
    let macs: Vec<String> = node.macs.iter().map(Mac::to_string).collect();
    let safe = |s: &str| Value::from_safe_string(s.to_owned());
    context! {
        node => context! {
            name => node.name,
            hostname => node.hostname,
            nid => node.nid,
            ip => node.ip.map(|ip| ip.to_string()),
            mac => node.mac.map(|m| m.to_string()),
            macs => macs,
            arch => node.arch.map(Arch::as_str),
            group => node.group,
            namespace => node.namespace,
            labels => Value::from_serialize(node.labels),
        },
        meta => Value::from_serialize(node.meta),
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
            labels: &labels,
            meta: &meta,
        };
        let boot = BootView {
            config: "c",
            kernel: "http://k",
            initrd: None,
            params: Some("console=ttyS0 quiet"),
            server_url: "http://10.0.0.1:8080",
        };
        env.get_template(name)?.render(variables(&node, &boot))
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
    fn undefined_is_an_error() {
        let err = render("{{ meta.nope }}", USER_DATA, serde_json::json!({})).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UndefinedError);
    }
}
