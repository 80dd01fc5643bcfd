//! Hand-written OpenAPI fragments for fields whose validation the API server must enforce
//! (patterns, sizes, list-map keys, CEL rules); schemars' derive cannot express them.

use schemars::{Schema, SchemaGenerator, json_schema};

use super::NodeSpec;
use crate::labels;
use crate::mac;

// Every limit here is also checked by `validate`, for `nodeboot serve`, which has no API
// server: both modes refuse the same objects.

/// The most nodes one NodeGroup may hold; keeps the object well under etcd's size limit.
pub const MAX_NODES_PER_GROUP: u64 = 5000;
pub const MAX_GROUP_LABELS: u64 = 64;
/// Smaller than a group's: the API server budgets CEL cost over 5000 nodes' label maps, and the
/// key-syntax rule does not fit that budget with 64 keys per node.
pub const MAX_NODE_LABELS: u64 = 32;
pub const MAX_MACS_PER_NODE: u64 = 16;
pub const MAX_META_DATA_KEYS: u64 = 256;
/// Characters (the API server counts characters, not bytes).
pub const MAX_TEMPLATE_CHARS: u64 = 256 * 1024;
pub const MAX_URL_CHARS: u64 = 2048;
pub const MAX_HOSTNAME_CHARS: u64 = 253;
pub const MAX_SELECTOR_LABELS: u64 = 32;
pub const MAX_SELECTOR_EXPRESSIONS: u64 = 32;
pub const MAX_SELECTOR_VALUES: u64 = 64;
/// A qualified label key: a DNS subdomain prefix (253) and `/` and a name (63).
pub const MAX_LABEL_KEY_CHARS: u64 = 317;

pub fn group_labels(_: &mut SchemaGenerator) -> Schema {
    labels_schema(MAX_GROUP_LABELS)
}

pub fn node_labels(_: &mut SchemaGenerator) -> Schema {
    labels_schema(MAX_NODE_LABELS)
}

fn labels_schema(max: u64) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": max,
        "additionalProperties": {
            "type": "string",
            "maxLength": 63,
            "pattern": labels::VALUE_PATTERN,
        },
        "x-kubernetes-validations": [
            {
                "rule": format!("self.all(k, k.matches('{}'))", labels::KEY_PATTERN),
                "message": "label keys must be Kubernetes qualified names ([prefix/]name, name at most 63 characters)",
            },
            {
                "rule": "self.all(k, !k.startsWith('nodeboot.io/'))",
                "message": "the nodeboot.io/ label prefix is reserved for well-known labels",
            }
        ],
    })
}

pub fn meta_data(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": MAX_META_DATA_KEYS,
        "additionalProperties": {"x-kubernetes-preserve-unknown-fields": true},
    })
}

pub fn node_list(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<NodeSpec>();
    json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_NODES_PER_GROUP,
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
    })
}

pub fn node_name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 63,
        "pattern": labels::VALUE_PATTERN,
    })
}

pub fn mac_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_MACS_PER_NODE,
        "items": {"type": "string", "maxLength": 17, "pattern": mac::PATTERN},
        "x-kubernetes-list-type": "set",
    })
}

pub fn nid(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer", "format": "int64", "minimum": 0})
}

pub fn ip(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": 45,
        "x-kubernetes-validations": [
            {"rule": "isIP(self)", "message": "must be an IPv4 or IPv6 address"}
        ],
    })
}

pub fn hostname(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_HOSTNAME_CHARS,
        "pattern": labels::HOSTNAME_PATTERN,
    })
}

pub fn boot_url(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_URL_CHARS,
        "pattern": "^(http|https|tftp)://[^\\s]+$",
    })
}

pub fn template(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "maxLength": MAX_TEMPLATE_CHARS})
}

pub fn optional_template(generator: &mut SchemaGenerator) -> Schema {
    template(generator)
}

/// A Kubernetes label selector whose keys, values and operators the API server checks, so a
/// selector that could never match as meant (`Equals`, a key with a space) is refused at
/// `kubectl apply` rather than shown later in status.
pub fn node_selector(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Kubernetes label selector over the nodes' effective labels; {} matches every known node, absent matches none.",
        "type": "object",
        "properties": {
            "matchLabels": {
                "description": "key: value pairs a node's labels must all have.",
                "type": "object",
                "maxProperties": MAX_SELECTOR_LABELS,
                "additionalProperties": {
                    "type": "string",
                    "maxLength": 63,
                    "pattern": labels::VALUE_PATTERN,
                },
                "x-kubernetes-validations": [{
                    "rule": format!("self.all(k, k.matches('{}'))", labels::KEY_PATTERN),
                    "message": "label keys must be Kubernetes qualified names ([prefix/]name, name at most 63 characters)",
                }],
            },
            "matchExpressions": {
                "description": "Requirements a node's labels must all meet.",
                "type": "array",
                "maxItems": MAX_SELECTOR_EXPRESSIONS,
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {
                            "type": "string",
                            "maxLength": MAX_LABEL_KEY_CHARS,
                            "pattern": labels::KEY_PATTERN,
                        },
                        "operator": {
                            "type": "string",
                            "enum": ["In", "NotIn", "Exists", "DoesNotExist"],
                        },
                        "values": {
                            "type": "array",
                            "maxItems": MAX_SELECTOR_VALUES,
                            "items": {
                                "type": "string",
                                "maxLength": 63,
                                "pattern": labels::VALUE_PATTERN,
                            },
                        },
                    },
                    "x-kubernetes-validations": [{
                        "rule": "(self.operator == 'In' || self.operator == 'NotIn') ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
                        "message": "In and NotIn need at least one value; Exists and DoesNotExist take none",
                    }],
                },
            },
        },
    })
}

pub fn conditions(generator: &mut SchemaGenerator) -> Schema {
    let item =
        generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>();
    json_schema!({
        "type": "array",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}

pub fn arch(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": ["x86_64", "arm64"]})
}

/// A JSON object the API server stores as it is: a copy of a spec, checked when it was written.
pub fn opaque_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}
