//! The schema's rules, checked in Rust: `nodeboot serve` has no API server to enforce them,
//! and a bad object must be refused with the same message either way.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use super::schema::MAX_NODES_PER_GROUP;
use super::{BootConfigSpec, NodeGroupSpec};
use crate::labels;
use crate::mac::Mac;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

fn check_user_labels(field: &str, labels: &BTreeMap<String, String>) -> Result<(), SpecError> {
    for (key, value) in labels {
        if !labels::is_valid_key(key) {
            return Err(err(
                format!("{field}[{key}]"),
                "label keys must be Kubernetes qualified names ([prefix/]name)",
            ));
        }
        if key.starts_with(labels::RESERVED_PREFIX) {
            return Err(err(
                format!("{field}[{key}]"),
                "the nodeboot.io/ label prefix is reserved for well-known labels",
            ));
        }
        if !labels::is_valid_value(value) {
            return Err(err(
                format!("{field}[{key}]"),
                format!(
                    "'{value}' is not a valid label value (alphanumerics and -_. inside, at most 63 characters)"
                ),
            ));
        }
    }
    Ok(())
}

pub fn validate_node_group(spec: &NodeGroupSpec) -> Result<(), SpecError> {
    check_user_labels("spec.labels", &spec.labels)?;
    if spec.nodes.is_empty() {
        return Err(err("spec.nodes", "at least one node is required"));
    }
    if spec.nodes.len() as u64 > MAX_NODES_PER_GROUP {
        return Err(err(
            "spec.nodes",
            format!("at most {MAX_NODES_PER_GROUP} nodes per NodeGroup; split the group"),
        ));
    }
    let mut names = HashSet::with_capacity(spec.nodes.len());
    for (i, node) in spec.nodes.iter().enumerate() {
        let at = |f: &str| format!("spec.nodes[{i}].{f}");
        if node.name.is_empty() || !labels::is_valid_value(&node.name) {
            return Err(err(
                at("name"),
                format!(
                    "'{}' is not a valid node name (alphanumerics and -_. inside, at most 63 characters)",
                    node.name
                ),
            ));
        }
        if !names.insert(node.name.as_str()) {
            return Err(err(
                at("name"),
                format!("duplicate node name '{}'", node.name),
            ));
        }
        if node.macs.is_empty() {
            return Err(err(at("macs"), "at least one MAC is required"));
        }
        let mut macs = HashSet::new();
        for raw in &node.macs {
            let mac: Mac = raw
                .parse()
                .map_err(|e: crate::mac::MacParseError| err(at("macs"), e.to_string()))?;
            if !macs.insert(mac) {
                return Err(err(at("macs"), format!("MAC {mac} is listed twice")));
            }
        }
        if let Some(nid) = node.nid
            && nid < 0
        {
            return Err(err(at("nid"), "must be >= 0"));
        }
        if let Some(ip) = &node.ip
            && ip.parse::<IpAddr>().is_err()
        {
            return Err(err(
                at("ip"),
                format!("'{ip}' is not an IPv4 or IPv6 address"),
            ));
        }
        if let Some(hostname) = &node.hostname
            && !labels::is_valid_hostname(hostname)
        {
            return Err(err(
                at("hostname"),
                format!("'{hostname}' is not an RFC 1123 host name"),
            ));
        }
        check_user_labels(&at("labels"), &node.labels)?;
    }
    Ok(())
}

fn check_url(field: &str, url: &str) -> Result<(), SpecError> {
    let scheme_ok = ["http://", "https://", "tftp://"]
        .iter()
        .any(|s| url.starts_with(s) && url.len() > s.len());
    if !scheme_ok {
        return Err(err(
            field,
            format!("'{url}' must be an http, https or tftp URL"),
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err(
            field,
            "URLs may not contain white space or control characters",
        ));
    }
    Ok(())
}

pub fn validate_boot_config(spec: &BootConfigSpec) -> Result<(), SpecError> {
    check_url("spec.kernel", &spec.kernel)?;
    if let Some(initrd) = &spec.initrd {
        check_url("spec.initrd", initrd)?;
    }
    if let Some(ci) = &spec.cloud_init
        && ci.user_data.is_some()
        && ci.user_data_secret_ref.is_some()
    {
        return Err(err(
            "spec.cloudInit",
            "set userData or userDataSecretRef, not both",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::NodeSpec;

    fn node(name: &str, mac: &str) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            macs: vec![mac.into()],
            ..Default::default()
        }
    }

    #[test]
    fn refuses_reserved_label_prefix() {
        let mut spec = NodeGroupSpec {
            nodes: vec![node("n1", "02:00:00:00:00:01")],
            ..Default::default()
        };
        spec.nodes[0]
            .labels
            .insert("nodeboot.io/known".into(), "true".into());
        let e = validate_node_group(&spec).unwrap_err();
        assert_eq!(e.field, "spec.nodes[0].labels[nodeboot.io/known]");
    }

    #[test]
    fn refuses_bad_mac_and_duplicate_names() {
        let spec = NodeGroupSpec {
            nodes: vec![node("n1", "02:00:00:00:00:0g")],
            ..Default::default()
        };
        assert_eq!(
            validate_node_group(&spec).unwrap_err().field,
            "spec.nodes[0].macs"
        );
        let spec = NodeGroupSpec {
            nodes: vec![
                node("n1", "02:00:00:00:00:01"),
                node("n1", "02:00:00:00:00:02"),
            ],
            ..Default::default()
        };
        assert!(
            validate_node_group(&spec)
                .unwrap_err()
                .message
                .contains("duplicate")
        );
    }

    #[test]
    fn refuses_userdata_and_secret_ref_together() {
        let spec = BootConfigSpec {
            kernel: "http://x/vmlinuz".into(),
            cloud_init: Some(crate::crd::CloudInit {
                user_data: Some("#cloud-config".into()),
                user_data_secret_ref: Some(crate::crd::SecretKeyRef {
                    name: "s".into(),
                    key: "k".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(validate_boot_config(&spec).is_err());
        let spec = BootConfigSpec {
            kernel: "ftp://x/vmlinuz".into(),
            ..Default::default()
        };
        assert_eq!(
            validate_boot_config(&spec).unwrap_err().field,
            "spec.kernel"
        );
    }
}
