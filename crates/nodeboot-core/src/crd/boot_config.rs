// kube's printcolumn(...) repeats `type_ = ...` by design; clippy reads that as a duplicate.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::MetaData;
use super::schema;

/// What matched nodes boot: kernel, initrd, parameters, and their cloud-init data.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "nodeboot.io",
    version = "v1alpha1",
    kind = "BootConfig",
    namespaced,
    shortname = "bc",
    status = "BootConfigStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "BootConfig says what the nodes its selector matches boot: kernel, initrd, kernel parameters and cloud-init data.",
    printcolumn(name = "Priority", type_ = "integer", json_path = ".spec.priority"),
    printcolumn(name = "Kernel", type_ = "string", json_path = ".spec.kernel"),
    printcolumn(
        name = "Matched",
        type_ = "integer",
        json_path = ".status.matchedNodes"
    ),
    printcolumn(
        name = "Served",
        type_ = "integer",
        json_path = ".status.rollout.served"
    ),
    printcolumn(
        name = "Booted",
        type_ = "integer",
        json_path = ".status.rollout.booted"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BootConfigSpec {
    /// Which nodes this applies to (Kubernetes label selector over the nodes' effective labels).
    /// `{}` matches every known node; leaving it out matches none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::node_selector")]
    pub node_selector: Option<LabelSelector>,

    /// Higher wins among matching BootConfigs; a tie at the top is a Conflict.
    #[serde(default)]
    pub priority: i32,

    /// Kernel URL (http, https or tftp).
    #[schemars(schema_with = "schema::boot_url")]
    pub kernel: String,

    /// Initrd URL (http, https or tftp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::boot_url")]
    pub initrd: Option<String>,

    /// Kernel command line, a template; must render to one line without control characters.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(schema_with = "schema::template")]
    pub params: String,

    /// Append BOOTIF, xname, nid and ds= to params when they are not there already.
    #[serde(default = "default_true")]
    pub auto_params: bool,

    /// A whole iPXE script template that replaces the default script.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(schema_with = "schema::template")]
    pub script: String,

    /// A whole GRUB config template that replaces the default GRUB config (served at
    /// /boot/v1/grub.cfg); `boot.kernel` and `boot.initrd` are written as GRUB devices there.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(schema_with = "schema::template")]
    pub grub_script: String,

    /// cloud-init NoCloud data for matched nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_init: Option<CloudInit>,
}

fn default_true() -> bool {
    true
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.userData) && has(self.userDataSecretRef))",
    "message": "set userData or userDataSecretRef, not both"
}]))]
pub struct CloudInit {
    /// Meta-data for matched nodes; the lowest layer (NodeGroup and node metaData win).
    #[serde(default, skip_serializing_if = "MetaData::is_empty")]
    #[schemars(schema_with = "schema::meta_data")]
    pub meta_data: MetaData,

    /// user-data template (for example `#cloud-config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_template")]
    pub user_data: Option<String>,

    /// user-data taken verbatim (not as a template) from a Secret in the same namespace; the
    /// Secret must be labelled nodeboot.io/user-data=true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data_secret_ref: Option<SecretKeyRef>,

    /// vendor-data template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_template")]
    pub vendor_data: Option<String>,

    /// network-config template (cloud-init network config v1 or v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_template")]
    pub network_config: Option<String>,

    /// Give matched nodes an instance-id that changes with this BootConfig's generation
    /// (`<instance-id>.g<generation>`), so that cloud-init runs its once-per-instance modules
    /// (`phone_home` among them) again after a rollout, also on nodes that keep /var/lib/cloud.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub instance_id_per_generation: bool,
}

/// A key of a Secret in the BootConfig's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootConfigStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub matched_nodes: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The version being served: the spec (and its generation) that last compiled. Kept here so
    /// that an operator started while the BootConfig is broken still serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good: Option<LastGood>,
    /// How far the served generation has reached: of the nodes this BootConfig boots, how many
    /// fetched its script (`served`) and then phoned home (`booted`). Written by the leader
    /// from every replica's boot records, at most once every few seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Unknown MACs this (discovery) BootConfig answered, most recent first (at most 16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub discovered: Vec<DiscoveredMac>,
}

/// A BootConfig's rollout: counts for the generation it serves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// The generation being served (the last good one when the current one does not compile).
    pub generation: i64,
    /// Nodes assigned to this BootConfig that fetched this generation's boot script.
    pub served: i32,
    /// Of those, the nodes that phoned home after fetching it.
    pub booted: i32,
}

/// An unknown MAC that asked for a boot script.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredMac {
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// RFC 3339 time of its last request.
    pub last_seen: String,
    pub count: i64,
}

/// A BootConfig spec that compiled, and its generation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastGood {
    pub generation: i64,
    /// The spec as it was; not validated again by the API server (it was when it was written).
    #[schemars(schema_with = "schema::opaque_object")]
    pub spec: serde_json::Value,
}
