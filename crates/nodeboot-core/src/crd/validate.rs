//! The schema's rules, checked in Rust: `nodeboot serve` has no API server to enforce them,
//! and a bad object must be refused with the same message either way.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use super::schema::{
    MAX_GROUP_LABELS, MAX_HOSTNAME_CHARS, MAX_MACS_PER_NODE, MAX_META_DATA_KEYS, MAX_NODE_LABELS,
    MAX_NODES_PER_GROUP, MAX_SELECTOR_EXPRESSIONS, MAX_SELECTOR_LABELS, MAX_SELECTOR_VALUES,
    MAX_TEMPLATE_CHARS, MAX_URL_CHARS,
};
use super::{BootConfigSpec, MetaData, NodeGroupSpec};
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

fn at_most(field: &str, what: &str, count: usize, max: u64) -> Result<(), SpecError> {
    if count as u64 > max {
        return Err(err(field, format!("at most {max} {what}; found {count}")));
    }
    Ok(())
}

fn check_chars(field: &str, value: &str, max: u64) -> Result<(), SpecError> {
    at_most(field, "characters", value.chars().count(), max)
}

fn check_meta_data(field: &str, meta: &MetaData) -> Result<(), SpecError> {
    at_most(field, "keys", meta.len(), MAX_META_DATA_KEYS)
}

fn check_user_labels(
    field: &str,
    labels: &BTreeMap<String, String>,
    max: u64,
) -> Result<(), SpecError> {
    at_most(field, "labels", labels.len(), max)?;
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
                    "'{}' is not a valid label value (alphanumerics and -_. inside, at most 63 characters)",
                    labels::shown(value)
                ),
            ));
        }
    }
    Ok(())
}

pub fn validate_node_group(spec: &NodeGroupSpec) -> Result<(), SpecError> {
    check_user_labels("spec.labels", &spec.labels, MAX_GROUP_LABELS)?;
    check_meta_data("spec.metaData", &spec.meta_data)?;
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
                    labels::shown(&node.name)
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
        at_most(&at("macs"), "MACs", node.macs.len(), MAX_MACS_PER_NODE)?;
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
                format!("'{}' is not an IPv4 or IPv6 address", labels::shown(ip)),
            ));
        }
        if let Some(hostname) = &node.hostname
            && (!labels::is_valid_hostname(hostname) || hostname.len() as u64 > MAX_HOSTNAME_CHARS)
        {
            return Err(err(
                at("hostname"),
                format!("'{}' is not an RFC 1123 host name", labels::shown(hostname)),
            ));
        }
        check_user_labels(&at("labels"), &node.labels, MAX_NODE_LABELS)?;
        check_meta_data(&at("metaData"), &node.meta_data)?;
    }
    Ok(())
}

fn check_url(field: &str, url: &str) -> Result<(), SpecError> {
    check_chars(field, url, MAX_URL_CHARS)?;
    let scheme_ok = ["http://", "https://", "tftp://"]
        .iter()
        .any(|s| url.starts_with(s) && url.len() > s.len());
    if !scheme_ok {
        return Err(err(
            field,
            format!(
                "'{}' must be an http, https or tftp URL",
                labels::shown(url)
            ),
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
    check_chars("spec.params", &spec.params, MAX_TEMPLATE_CHARS)?;
    check_chars("spec.script", &spec.script, MAX_TEMPLATE_CHARS)?;
    check_chars("spec.grubScript", &spec.grub_script, MAX_TEMPLATE_CHARS)?;
    // The schema refuses bad operators, keys and values; so does this.
    crate::selector::Selector::compile(spec.node_selector.as_ref())
        .map_err(|e| err("spec.nodeSelector", e.to_string()))?;
    if let Some(selector) = &spec.node_selector {
        let labels = selector.match_labels.as_ref().map_or(0, BTreeMap::len);
        at_most(
            "spec.nodeSelector.matchLabels",
            "labels",
            labels,
            MAX_SELECTOR_LABELS,
        )?;
        let expressions = selector.match_expressions.as_deref().unwrap_or_default();
        at_most(
            "spec.nodeSelector.matchExpressions",
            "expressions",
            expressions.len(),
            MAX_SELECTOR_EXPRESSIONS,
        )?;
        for (i, e) in expressions.iter().enumerate() {
            at_most(
                &format!("spec.nodeSelector.matchExpressions[{i}].values"),
                "values",
                e.values.as_ref().map_or(0, Vec::len),
                MAX_SELECTOR_VALUES,
            )?;
        }
    }
    if let Some(ci) = &spec.cloud_init {
        if ci.user_data.is_some() && ci.user_data_secret_ref.is_some() {
            return Err(err(
                "spec.cloudInit",
                "set userData or userDataSecretRef, not both",
            ));
        }
        check_meta_data("spec.cloudInit.metaData", &ci.meta_data)?;
        for (field, template) in [
            ("spec.cloudInit.userData", &ci.user_data),
            ("spec.cloudInit.vendorData", &ci.vendor_data),
            ("spec.cloudInit.networkConfig", &ci.network_config),
        ] {
            if let Some(template) = template {
                check_chars(field, template, MAX_TEMPLATE_CHARS)?;
            }
        }
        if let Some(r) = &ci.user_data_secret_ref {
            for (field, value) in [
                ("spec.cloudInit.userDataSecretRef.name", &r.name),
                ("spec.cloudInit.userDataSecretRef.key", &r.key),
            ] {
                if value.is_empty() {
                    return Err(err(field, "must not be empty"));
                }
                check_chars(field, value, 253)?;
            }
        }
    }
    Ok(())
}

/// Object names as the API server accepts them for custom resources and Secrets: DNS
/// subdomains (lowercase alphanumerics, `-` and `.`, at most 253 characters). Anything else,
/// a line break above all, never reaches a log line or a status.
pub fn validate_object_name(field: &str, name: &str) -> Result<(), SpecError> {
    if labels::is_dns_subdomain(name) {
        Ok(())
    } else {
        Err(err(
            field,
            format!(
                "{:?} is not a valid name (lowercase alphanumerics, '-' and '.', at most 253 characters)",
                name.chars().take(64).collect::<String>()
            ),
        ))
    }
}

/// Namespaces are DNS labels: lowercase alphanumerics and `-`, at most 63 characters.
pub fn validate_namespace(field: &str, namespace: &str) -> Result<(), SpecError> {
    let ok = !namespace.is_empty()
        && namespace.len() <= 63
        && !namespace.contains('.')
        && labels::is_dns_subdomain(namespace);
    if ok {
        Ok(())
    } else {
        Err(err(
            field,
            format!(
                "{:?} is not a valid namespace (lowercase alphanumerics and '-', at most 63 characters)",
                namespace.chars().take(64).collect::<String>()
            ),
        ))
    }
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
    fn limits_the_schema_sets_are_checked_too() {
        let mut spec = NodeGroupSpec {
            nodes: vec![node("n1", "02:00:00:00:00:01")],
            ..Default::default()
        };
        spec.nodes[0].macs = (0..17).map(|i| format!("02:00:00:00:01:{i:02x}")).collect();
        assert_eq!(
            validate_node_group(&spec).unwrap_err().field,
            "spec.nodes[0].macs"
        );
        spec.nodes[0].macs.truncate(1);
        spec.nodes[0].labels = (0..33).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(
            validate_node_group(&spec).unwrap_err().to_string(),
            "spec.nodes[0].labels: at most 32 labels; found 33"
        );
        let spec = BootConfigSpec {
            kernel: "http://x/vmlinuz".into(),
            params: "x".repeat(256 * 1024 + 1),
            ..Default::default()
        };
        assert_eq!(
            validate_boot_config(&spec).unwrap_err().field,
            "spec.params"
        );
        assert!(validate_object_name("metadata.name", "ok-name.1").is_ok());
        for bad in ["", "Upper", "a\nb", "a_b", &"x".repeat(254)] {
            assert!(
                validate_object_name("metadata.name", bad).is_err(),
                "{bad:?}"
            );
        }
        assert!(validate_namespace("metadata.namespace", "hpc").is_ok());
        assert!(validate_namespace("metadata.namespace", "a.b").is_err());
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
