// kube's printcolumn(...) repeats `type_ = ...` by design; clippy reads that as a duplicate.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::MetaData;
use super::schema;
use crate::labels::{self, Labels};

/// The inventory: a set of nodes that share labels and meta-data.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "nodeboot.io",
    version = "v1alpha1",
    kind = "NodeGroup",
    namespaced,
    shortname = "ng",
    status = "NodeGroupStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "NodeGroup lists compute nodes (name, MACs, NID, IP) and the labels that BootConfig selectors match.",
    printcolumn(name = "Nodes", type_ = "integer", json_path = ".status.nodeCount"),
    printcolumn(
        name = "Assigned",
        type_ = "integer",
        json_path = ".status.assignedCount"
    ),
    printcolumn(
        name = "Conflicts",
        type_ = "integer",
        json_path = ".status.conflictCount"
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
pub struct NodeGroupSpec {
    /// Labels every member node carries; a node's own labels win on a key clash.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "schema::group_labels")]
    pub labels: BTreeMap<String, String>,

    /// Merged into every member's cloud-init meta-data (below the node's own metaData).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "schema::meta_data")]
    pub meta_data: MetaData,

    /// The member nodes, keyed by name.
    #[schemars(schema_with = "schema::node_list")]
    pub nodes: Vec<NodeSpec>,
}

/// One compute node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    /// Node name, usually an xname; unique in the namespace. Also a label value, so at most 63 characters.
    #[schemars(schema_with = "schema::node_name")]
    pub name: String,

    /// MAC addresses of the node's boot interfaces, in any common notation; unique in the namespace.
    #[schemars(schema_with = "schema::mac_list")]
    pub macs: Vec<String>,

    /// Node ID number; unique in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::nid")]
    pub nid: Option<i64>,

    /// IPv4 or IPv6 address of the boot interface; cloud-init data is served only to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::ip")]
    pub ip: Option<String>,

    /// Hostname (RFC 1123); defaults to the node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::hostname")]
    pub hostname: Option<String>,

    /// CPU architecture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::arch")]
    pub arch: Option<Arch>,

    /// The node's own labels; they win over the group's labels on a key clash.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "schema::node_labels")]
    pub labels: BTreeMap<String, String>,

    /// The node's own meta-data; wins over the group's metaData on a key clash.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "schema::meta_data")]
    pub meta_data: MetaData,
}

/// CPU architectures nodeboot knows; `arm64` iPXE reports itself as `arm64`, x86 as `x86_64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Maps iPXE's `${buildarch}` (and common aliases) to an architecture.
    pub fn from_request(raw: &str) -> Option<Arch> {
        match raw {
            "x86_64" | "amd64" | "i386" | "x86" => Some(Arch::X86_64),
            "arm64" | "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeGroupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub node_count: i32,
    #[serde(default)]
    pub assigned_count: i32,
    #[serde(default)]
    pub conflict_count: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeStatus>,
}

/// What one node will boot, and why not when it won't.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub name: String,
    pub phase: NodePhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_config: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Generation of the BootConfig whose boot script the node last fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_generation: Option<i64>,
    /// Generation the node last confirmed by phoning home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booted_generation: Option<i64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum NodePhase {
    Assigned,
    #[default]
    Unassigned,
    Conflict,
}

impl NodePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            NodePhase::Assigned => "Assigned",
            NodePhase::Unassigned => "Unassigned",
            NodePhase::Conflict => "Conflict",
        }
    }
}

impl NodeGroup {
    /// One effective label of member `node`, without building the label map: the well-known
    /// `nodeboot.io/` labels, then the node's own, then the group's.
    pub fn effective_label<'a>(&'a self, node: &'a NodeSpec, key: &str) -> Option<&'a str> {
        if let Some(well_known) = key.strip_prefix(labels::RESERVED_PREFIX) {
            return match well_known {
                "name" => Some(&node.name),
                "group" => self.metadata.name.as_deref(),
                "arch" => node.arch.map(Arch::as_str),
                "known" => Some("true"),
                _ => None,
            };
        }
        node.labels
            .get(key)
            .or_else(|| self.spec.labels.get(key))
            .map(String::as_str)
    }

    /// The effective labels of member `node`, as selectors see them: group labels, then node
    /// labels, then the well-known labels.
    pub fn effective_labels(&self, node: &NodeSpec) -> Labels {
        let mut out = self.spec.labels.clone();
        out.extend(node.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        out.insert(labels::NAME.into(), node.name.clone());
        out.insert(
            labels::GROUP.into(),
            self.metadata.name.clone().unwrap_or_default(),
        );
        if let Some(arch) = node.arch {
            out.insert(labels::ARCH.into(), arch.as_str().into());
        }
        out.insert(labels::KNOWN.into(), "true".into());
        out
    }
}
