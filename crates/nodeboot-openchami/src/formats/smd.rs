//! SMD (the hardware state manager): components, Ethernet interfaces, groups, memberships.

use serde::Deserialize;
use serde_json::Value;

use super::null_default;

/// `GET /hsm/v2/State/Components`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Components {
    #[serde(rename = "Components", default, deserialize_with = "null_default")]
    pub components: Vec<Component>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Component {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Type", default, deserialize_with = "null_default")]
    pub kind: String,
    #[serde(rename = "State", default, deserialize_with = "null_default")]
    pub state: String,
    #[serde(rename = "Enabled", default)]
    pub enabled: Option<bool>,
    #[serde(rename = "Role", default, deserialize_with = "null_default")]
    pub role: String,
    #[serde(rename = "SubRole", default, deserialize_with = "null_default")]
    pub sub_role: String,
    /// A number, or (from some clients) a string of one.
    #[serde(rename = "NID", default)]
    pub nid: Value,
    #[serde(rename = "Arch", default, deserialize_with = "null_default")]
    pub arch: String,
}

impl Component {
    pub fn nid(&self) -> Option<i64> {
        match &self.nid {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
}

/// `GET /hsm/v2/Inventory/EthernetInterfaces`: a bare array.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EthernetInterface {
    #[serde(rename = "ID", default, deserialize_with = "null_default")]
    pub id: String,
    #[serde(rename = "MACAddress", default, deserialize_with = "null_default")]
    pub mac_address: String,
    #[serde(rename = "ComponentID", default, deserialize_with = "null_default")]
    pub component_id: String,
    #[serde(rename = "IPAddresses", default, deserialize_with = "null_default")]
    pub ip_addresses: Vec<IpAddress>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct IpAddress {
    #[serde(rename = "IPAddress", default, deserialize_with = "null_default")]
    pub ip_address: String,
    #[serde(rename = "Network", default, deserialize_with = "null_default")]
    pub network: String,
}

/// `GET /hsm/v2/groups`: a bare array.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Group {
    pub label: String,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
    #[serde(rename = "exclusiveGroup", default, deserialize_with = "null_default")]
    pub exclusive_group: String,
    #[serde(default, deserialize_with = "null_default")]
    pub members: Members,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Members {
    #[serde(default, deserialize_with = "null_default")]
    pub ids: Vec<String>,
}

/// `GET /hsm/v2/memberships`: a bare array.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Membership {
    pub id: String,
    #[serde(rename = "groupLabels", default, deserialize_with = "null_default")]
    pub group_labels: Vec<String>,
    #[serde(rename = "partitionName", default, deserialize_with = "null_default")]
    pub partition_name: String,
}
