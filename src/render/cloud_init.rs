//! cloud-init NoCloud meta-data: the merge of the layers and its YAML form.

use serde_json::{Map, Value};

use crate::crd::MetaData;

/// Merges meta-data, lowest first: BootConfig, NodeGroup, node; then `instance-id` (the node
/// name unless a layer set one), `local-hostname` and `hostname` (always the node's hostname).
pub fn merge_meta(
    layers: &[Option<&MetaData>],
    default_instance_id: &str,
    hostname: &str,
) -> Map<String, Value> {
    let mut merged = Map::new();
    for layer in layers.iter().flatten() {
        for (k, v) in layer.iter() {
            merged.insert(k.clone(), v.clone());
        }
    }
    if !merged.contains_key("instance-id") {
        merged.insert(
            "instance-id".into(),
            Value::String(default_instance_id.into()),
        );
    }
    merged.insert("local-hostname".into(), Value::String(hostname.into()));
    merged.insert("hostname".into(), Value::String(hostname.into()));
    merged
}

pub fn meta_data_yaml(meta: &Map<String, Value>) -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(meta)
}

/// cloud-config documents must parse as a YAML mapping, or cloud-init ignores them on the node.
pub fn check_cloud_config(doc: &str) -> Result<(), String> {
    if !doc.starts_with("#cloud-config") {
        return Ok(());
    }
    match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(doc) {
        Ok(serde_yaml_ng::Value::Mapping(_)) | Ok(serde_yaml_ng::Value::Null) => Ok(()),
        Ok(_) => Err("a #cloud-config document must be a YAML mapping".into()),
        Err(e) => Err(format!("not valid YAML: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_merge_lowest_first() {
        let bc: MetaData = [("ntp".into(), "1.1.1.1".into()), ("a".into(), "bc".into())].into();
        let group: MetaData = [("a".into(), "group".into())].into();
        let node: MetaData = [
            ("a".into(), "node".into()),
            ("hostname".into(), "evil".into()),
        ]
        .into();
        let m = merge_meta(&[Some(&bc), Some(&group), Some(&node)], "x1", "nid0001");
        assert_eq!(m["a"], "node");
        assert_eq!(m["ntp"], "1.1.1.1");
        assert_eq!(m["instance-id"], "x1");
        assert_eq!(m["hostname"], "nid0001");
        assert_eq!(m["local-hostname"], "nid0001");
        let yaml = meta_data_yaml(&m).unwrap();
        assert!(yaml.contains("instance-id: x1\n"), "{yaml}");
    }

    #[test]
    fn cloud_config_must_be_yaml() {
        assert!(check_cloud_config("#cloud-config\nhostname: a\n").is_ok());
        assert!(check_cloud_config("#cloud-config\nhostname: [a\n").is_err());
        assert!(check_cloud_config("#!/bin/sh\necho [\n").is_ok());
    }
}
