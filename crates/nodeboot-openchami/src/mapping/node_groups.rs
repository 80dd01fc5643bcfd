//! The site's nodes onto NodeGroups. Nodes are grouped by SMD role and group membership, so
//! what members share (role and group labels, group meta-data, site-wide meta-data) sits once
//! on the NodeGroup; per node stay MACs, NID, address, host name, sub-role and the
//! assignment labels. A NodeGroup holds at most `NODES_PER_GROUP` nodes, well inside etcd's
//! object size with a label and some meta-data on every node.

use std::collections::{BTreeMap, BTreeSet};

use nodeboot_core::crd::validate_node_group;
use nodeboot_core::crd::{MetaData, NodeGroup, NodeGroupSpec, NodeSpec};
use nodeboot_core::labels;
use serde_json::{Value, json};

use super::cloud_init::{CloudMapped, default_hostname};
use super::{GROUP_LABEL_PREFIX, Names, NodeAdditions, Options, ROLE_LABEL, SUB_ROLE_LABEL};
use crate::report::Report;
use crate::site::{Site, SiteNode};

pub const NODES_PER_GROUP: usize = 1000;

fn node_spec(
    node: &SiteNode,
    additions: &NodeAdditions,
    cloud: &CloudMapped,
    report: &mut Report,
) -> Option<NodeSpec> {
    let (source, object) = node.origins.first().cloned().unwrap_or_default();
    let refuse = |report: &mut Report, why: &str| {
        for (source, object) in &node.origins {
            report.unmapped(source, object.clone(), why);
        }
    };
    if node.macs.is_empty() {
        refuse(
            report,
            "no MAC address: nodeboot finds nodes by MAC (give SMD's EthernetInterfaces or the \
             inventory's interfaces)",
        );
        return None;
    }
    if node.xname.is_empty() || !labels::is_valid_value(&node.xname) {
        refuse(
            report,
            "its name is not a valid node name (alphanumerics and -_. inside, at most 63)",
        );
        return None;
    }
    let mut macs = node.macs.clone();
    if macs.len() > 16 {
        report.unmapped(
            &source,
            format!("{object}: MACs after the 16th"),
            "a node has at most 16 MACs in nodeboot",
        );
        macs.truncate(16);
    }
    let hostname = node.hostname.clone().or_else(|| {
        cloud
            .defaults
            .as_ref()
            .and_then(|d| default_hostname(d, node.nid))
    });
    let hostname = match hostname {
        Some(h) if !labels::is_valid_hostname(&h) => {
            report.unmapped(
                &source,
                format!("{object} host name {}", labels::shown(&h)),
                "not an RFC 1123 host name; the node name is used instead",
            );
            None
        }
        other => other,
    };
    let mut node_labels = additions
        .labels
        .get(&node.xname)
        .cloned()
        .unwrap_or_default();
    if !node.sub_role.is_empty() {
        if labels::is_valid_value(&node.sub_role) {
            node_labels.insert(SUB_ROLE_LABEL.to_owned(), node.sub_role.clone());
        } else {
            report.unmapped(
                &source,
                format!("{object} SubRole"),
                "not a valid label value",
            );
        }
    }
    let mut meta = node.meta.clone();
    if let Some(extra) = additions.meta.get(&node.xname) {
        meta.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Some(NodeSpec {
        name: node.xname.clone(),
        macs: macs.iter().map(ToString::to_string).collect(),
        nid: node.nid,
        ip: node.ip.map(|ip| ip.to_string()),
        hostname,
        arch: node.arch,
        labels: node_labels,
        meta_data: meta.into_iter().collect(),
    })
}

/// Site-wide meta-data, with the meta-data of the groups the NodeGroup's nodes are in under
/// `instance_data.v1.vendor_data.groups`, where the cloud-init server puts it.
fn group_meta(site_meta: &MetaData, groups: &BTreeSet<String>, cloud: &CloudMapped) -> MetaData {
    let mut meta = site_meta.clone();
    let per_group: serde_json::Map<String, Value> = groups
        .iter()
        .filter_map(|g| {
            cloud
                .group_meta
                .get(g)
                .map(|m| (g.clone(), Value::Object(m.clone())))
        })
        .collect();
    if !per_group.is_empty() {
        let data = meta
            .entry("instance_data".to_owned())
            .or_insert_with(|| json!({}));
        if let Some(v1) = data
            .as_object_mut()
            .map(|d| d.entry("v1").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
        {
            v1.insert("vendor_data".into(), json!({ "groups": per_group }));
        }
    }
    meta
}

pub(super) fn map(
    site: &Site,
    additions: &NodeAdditions,
    cloud: &CloudMapped,
    options: &Options,
    names: &mut Names,
    report: &mut Report,
) -> Vec<NodeGroup> {
    // (role, groups) -> nodes.
    let mut partitions: BTreeMap<(String, BTreeSet<String>), Vec<&SiteNode>> = BTreeMap::new();
    for node in site.nodes.values() {
        let groups: BTreeSet<String> = node
            .groups
            .iter()
            .filter(|g| {
                let ok = labels::is_valid_key(&format!("{GROUP_LABEL_PREFIX}{g}"));
                if !ok && let Some((source, object)) = node.origins.first() {
                    report.unmapped(
                        source,
                        format!("{object} membership in group {g}"),
                        "the group name cannot be a label key",
                    );
                }
                ok
            })
            .cloned()
            .collect();
        let role = if labels::is_valid_value(&node.role) {
            node.role.clone()
        } else {
            if let Some((source, object)) = node.origins.first() {
                report.unmapped(source, format!("{object} Role"), "not a valid label value");
            }
            String::new()
        };
        partitions.entry((role, groups)).or_default().push(node);
    }
    let mut out = Vec::new();
    for ((role, groups), nodes) in partitions {
        let mut group_labels = BTreeMap::new();
        if !role.is_empty() {
            group_labels.insert(ROLE_LABEL.to_owned(), role.clone());
        }
        for g in &groups {
            group_labels.insert(format!("{GROUP_LABEL_PREFIX}{g}"), "true".to_owned());
        }
        let meta = group_meta(&additions.site_meta, &groups, cloud);
        let base = {
            let mut parts = vec![if role.is_empty() {
                "nodes".to_owned()
            } else {
                role.clone()
            }];
            parts.extend(groups.iter().cloned());
            parts.join("-")
        };
        let specs: Vec<NodeSpec> = nodes
            .iter()
            .filter_map(|n| node_spec(n, additions, cloud, report))
            .collect();
        for chunk in specs.chunks(NODES_PER_GROUP) {
            let name = names.take(&base);
            let spec = NodeGroupSpec {
                labels: group_labels.clone(),
                meta_data: meta.clone(),
                nodes: chunk.to_vec(),
            };
            if let Err(e) = validate_node_group(&spec) {
                report.unmapped(
                    "(import)",
                    format!("NodeGroup {name} ({} nodes)", chunk.len()),
                    format!("does not pass nodeboot's checks: {e}"),
                );
                continue;
            }
            let by_name: BTreeMap<&str, &SiteNode> =
                nodes.iter().map(|n| (n.xname.as_str(), *n)).collect();
            for n in chunk {
                for (source, object) in by_name
                    .get(n.name.as_str())
                    .map(|site_node| site_node.origins.as_slice())
                    .unwrap_or_default()
                {
                    report.mapped(
                        source,
                        object.clone(),
                        format!("node {} of NodeGroup {name}", n.name),
                    );
                }
            }
            let mut group = NodeGroup::new(&name, spec);
            group.metadata.namespace = Some(options.namespace.clone());
            out.push(group);
        }
    }
    out
}
