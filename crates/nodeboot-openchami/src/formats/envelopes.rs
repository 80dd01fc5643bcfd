//! The Kubernetes-style envelopes of boot-service (`boot.openchami.io/v1`) and metadata-service
//! (`cloud-init.openchami.io/v1`): `{apiVersion, kind, metadata: {name}, spec}`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::null_default;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Envelope {
    #[serde(rename = "apiVersion", default, deserialize_with = "null_default")]
    pub api_version: String,
    #[serde(default, deserialize_with = "null_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub metadata: EnvelopeMeta,
    #[serde(default)]
    pub spec: Value,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EnvelopeMeta {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
}

/// boot-service `BootConfiguration.spec`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BootConfigurationSpec {
    #[serde(default, deserialize_with = "null_default")]
    pub hosts: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub macs: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub nids: Vec<i64>,
    #[serde(default, deserialize_with = "null_default")]
    pub groups: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub kernel: String,
    #[serde(default, deserialize_with = "null_default")]
    pub initrd: String,
    #[serde(default, deserialize_with = "null_default")]
    pub params: String,
    #[serde(default)]
    pub priority: i64,
}

/// boot-service `Node.spec`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeSpec {
    pub xname: String,
    #[serde(default)]
    pub nid: Option<i64>,
    #[serde(rename = "bootMac", default, deserialize_with = "null_default")]
    pub boot_mac: String,
    #[serde(default, deserialize_with = "null_default")]
    pub role: String,
    #[serde(rename = "subRole", default, deserialize_with = "null_default")]
    pub sub_role: String,
    #[serde(default, deserialize_with = "null_default")]
    pub hostname: String,
    #[serde(default, deserialize_with = "null_default")]
    pub interfaces: Vec<NodeInterface>,
    #[serde(default, deserialize_with = "null_default")]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeInterface {
    #[serde(default, deserialize_with = "null_default")]
    pub mac: String,
    #[serde(default, deserialize_with = "null_default")]
    pub ip: String,
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
}

/// metadata-service `Group.spec`: a server-side template and string meta-data.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MetadataGroupSpec {
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "null_default")]
    pub template: String,
    #[serde(rename = "metaData", default, deserialize_with = "null_default")]
    pub meta_data: BTreeMap<String, String>,
}
