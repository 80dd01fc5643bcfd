//! The inventory file `ochami discover static` reads (many sites keep it as their source of
//! truth).

use serde::Deserialize;
use serde_json::Value;

use super::null_default;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StaticInventory {
    #[serde(default, deserialize_with = "null_default")]
    pub nodes: Vec<StaticNode>,
    /// BMCs: nodeboot does not manage them; reported, not mapped.
    #[serde(default, deserialize_with = "null_default")]
    pub bmcs: Vec<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StaticNode {
    /// The node's host name (`nid001`).
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default)]
    pub nid: Option<i64>,
    pub xname: String,
    /// The node's BMC, by xname or by a nested object: not mapped.
    #[serde(default)]
    pub bmc: Value,
    #[serde(default, deserialize_with = "null_default")]
    pub groups: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub interfaces: Vec<StaticInterface>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StaticInterface {
    pub mac_addr: String,
    #[serde(default, deserialize_with = "null_default")]
    pub ip_addrs: Vec<StaticIp>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StaticIp {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    pub ip_addr: String,
}
