//! The OpenCHAMI cloud-init server's admin data: groups, cluster defaults, instance info.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::null_default;

/// `GET /cloud-init/admin/groups` (a map keyed by name, or a list).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CiGroup {
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, rename = "meta-data", deserialize_with = "null_default")]
    pub meta_data: Map<String, Value>,
    #[serde(default)]
    pub file: Option<CiFile>,
}

/// A group's cloud-config file: what its members' vendor-data includes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CiFile {
    #[serde(default, deserialize_with = "null_default")]
    pub content: String,
    #[serde(default, deserialize_with = "null_default")]
    pub filename: String,
    /// `plain` or `base64`.
    #[serde(default, deserialize_with = "null_default")]
    pub encoding: String,
}

/// `GET /cloud-init/admin/cluster-defaults`. The server's JSON spells `cloud_provider` with an
/// underscore and the rest with hyphens; the metadata-service spells them all with
/// underscores. Both are read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClusterDefaults {
    #[serde(default, alias = "cloud-provider", deserialize_with = "null_default")]
    pub cloud_provider: String,
    #[serde(default, deserialize_with = "null_default")]
    pub region: String,
    #[serde(
        default,
        rename = "availability-zone",
        alias = "availability_zone",
        deserialize_with = "null_default"
    )]
    pub availability_zone: String,
    #[serde(
        default,
        rename = "cluster-name",
        alias = "cluster_name",
        deserialize_with = "null_default"
    )]
    pub cluster_name: String,
    #[serde(
        default,
        rename = "public-keys",
        alias = "public_keys",
        deserialize_with = "null_default"
    )]
    pub public_keys: Vec<String>,
    #[serde(
        default,
        rename = "base-url",
        alias = "base_url",
        deserialize_with = "null_default"
    )]
    pub base_url: String,
    #[serde(
        default,
        rename = "short-name",
        alias = "short_name",
        deserialize_with = "null_default"
    )]
    pub short_name: String,
    #[serde(default, rename = "nid-length", alias = "nid_length")]
    pub nid_length: Option<u32>,
    #[serde(
        default,
        rename = "boot-subnet",
        alias = "boot_subnet",
        deserialize_with = "null_default"
    )]
    pub boot_subnet: String,
    #[serde(
        default,
        rename = "wg-subnet",
        alias = "wg_subnet",
        deserialize_with = "null_default"
    )]
    pub wg_subnet: String,
}

/// `GET /cloud-init/admin/instance-info/{id}`, or a list of them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InstanceInfo {
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    #[serde(
        default,
        rename = "instance-id",
        alias = "instance_id",
        deserialize_with = "null_default"
    )]
    pub instance_id: String,
    #[serde(
        default,
        rename = "local-hostname",
        alias = "local_hostname",
        deserialize_with = "null_default"
    )]
    pub local_hostname: String,
    #[serde(default, deserialize_with = "null_default")]
    pub hostname: String,
    #[serde(
        default,
        rename = "public-keys",
        alias = "public_keys",
        deserialize_with = "null_default"
    )]
    pub public_keys: Vec<String>,
    #[serde(
        default,
        rename = "instance-type",
        alias = "instance_type",
        deserialize_with = "null_default"
    )]
    pub instance_type: String,
}
