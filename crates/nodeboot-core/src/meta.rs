//! cloud-init meta-data: the layers a node's meta-data is merged from.

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
    }
}
