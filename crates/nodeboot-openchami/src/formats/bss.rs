//! BSS's `GET /boot/v1/bootparameters` answer: a bare JSON array of `BootParams`.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::null_default;

/// One element of the array. With the etcd back end it is one stored key (`hosts` holds the
/// key) or one image (`kernel` or `initrd` with the params BSS appends for it); with Postgres it
/// is one boot configuration, whose `hosts`, `macs` and `nids` are not index-aligned.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BootParams {
    #[serde(default, deserialize_with = "null_default")]
    pub hosts: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub macs: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub nids: Vec<i64>,
    #[serde(default, deserialize_with = "null_default")]
    pub kernel: String,
    #[serde(default, deserialize_with = "null_default")]
    pub initrd: String,
    #[serde(default, deserialize_with = "null_default")]
    pub params: String,
    #[serde(default, rename = "cloud-init", deserialize_with = "null_default")]
    pub cloud_init: BssCloudInit,
}

/// The cloud-init data BSS stores with a key (etcd only).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BssCloudInit {
    #[serde(default, rename = "meta-data", deserialize_with = "null_default")]
    pub meta_data: Map<String, Value>,
    #[serde(default, rename = "user-data", deserialize_with = "null_default")]
    pub user_data: Map<String, Value>,
    #[serde(default, rename = "phone-home", deserialize_with = "null_default")]
    pub phone_home: Value,
}

/// Which BSS back end an export came from, read off its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One element per stored key, plus image elements.
    Etcd,
    /// One element per boot configuration, naming its nodes by host, MAC and NID.
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Etcd => "etcd",
            Backend::Postgres => "postgres",
        }
    }
}

/// Postgres elements name several nodes or name them by MAC or NID; etcd elements hold one key.
pub fn backend(params: &[BootParams]) -> Backend {
    let postgres = params
        .iter()
        .any(|p| p.hosts.len() > 1 || !p.macs.is_empty() || !p.nids.is_empty());
    if postgres {
        Backend::Postgres
    } else {
        Backend::Etcd
    }
}

/// What kind of key an etcd element's host is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKey {
    Default,
    Global,
    /// `Unknown-<arch>`: what BSS serves nodes SMD does not know, by the arch they report.
    Unknown(String),
    /// `nid<N>`: stored by NID for a NID SMD did not know.
    Nid(i64),
    /// A bare MAC: stored for a MAC SMD did not know.
    Mac(nodeboot_core::mac::Mac),
    /// An xname or any other node name, or a role name: which one depends on the inventory.
    Name(String),
}

pub fn host_key(host: &str) -> HostKey {
    match host {
        "Default" => return HostKey::Default,
        "Global" => return HostKey::Global,
        _ => {}
    }
    if let Some(arch) = host.strip_prefix("Unknown-") {
        return HostKey::Unknown(arch.to_owned());
    }
    if let Some(n) = host.strip_prefix("nid")
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
        && let Ok(nid) = n.parse()
    {
        return HostKey::Nid(nid);
    }
    if host.len() >= 12
        && let Ok(mac) = host.parse()
    {
        return HostKey::Mac(mac);
    }
    HostKey::Name(host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys() {
        assert_eq!(host_key("Default"), HostKey::Default);
        assert_eq!(
            host_key("Unknown-x86_64"),
            HostKey::Unknown("x86_64".into())
        );
        assert_eq!(host_key("nid000012"), HostKey::Nid(12));
        assert_eq!(host_key("nidx"), HostKey::Name("nidx".into()));
        assert!(matches!(host_key("a4:bf:01:00:00:01"), HostKey::Mac(_)));
        assert_eq!(host_key("Compute"), HostKey::Name("Compute".into()));
        assert_eq!(
            host_key("x1000c0s0b0n0"),
            HostKey::Name("x1000c0s0b0n0".into())
        );
    }

    #[test]
    fn nulls_read_as_empty() {
        let p: BootParams =
            serde_json::from_str(r#"{"hosts":null,"macs":null,"kernel":"k","cloud-init":null}"#)
                .unwrap();
        assert!(p.hosts.is_empty() && p.macs.is_empty() && p.kernel == "k");
    }
}
