//! Hand-written OpenAPI fragments for fields whose validation the API server must enforce
//! (patterns, sizes, list-map keys, CEL rules); schemars' derive cannot express them.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use super::NodeSpec;
use crate::labels;
use crate::mac;

/// The most nodes one NodeGroup may hold; keeps the object well under etcd's size limit.
pub const MAX_NODES_PER_GROUP: u64 = 5000;
const MAX_GROUP_LABELS: u64 = 64;
/// Smaller than a group's: the API server budgets CEL cost over 5000 nodes' label maps, and the
/// key-syntax rule does not fit that budget with 64 keys per node.
const MAX_NODE_LABELS: u64 = 32;
const MAX_TEMPLATE_BYTES: u64 = 256 * 1024;

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
        "maxProperties": 256,
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
        "maxItems": 16,
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
        "maxLength": 253,
        "pattern": labels::HOSTNAME_PATTERN,
    })
}

pub fn boot_url(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 2048,
        "pattern": "^(http|https|tftp)://[^\\s]+$",
    })
}

pub fn template(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "maxLength": MAX_TEMPLATE_BYTES})
}

pub fn optional_template(generator: &mut SchemaGenerator) -> Schema {
    template(generator)
}

pub fn node_selector(generator: &mut SchemaGenerator) -> Schema {
    let mut schema =
        <k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as JsonSchema>::json_schema(
            generator,
        );
    schema.insert(
        "description".into(),
        "Kubernetes label selector over the nodes' effective labels; {} matches every known node, absent matches none."
            .into(),
    );
    schema
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
