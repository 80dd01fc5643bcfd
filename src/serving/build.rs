//! From the desired state (NodeGroups, BootConfigs, Secrets) to a serving snapshot and the
//! status every resource should show. Pure and synchronous: the operator and `serve` both call
//! it, on a blocking thread, whenever their inputs change.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use super::{BootAnswer, PreparedBoot, PreparedCloudInit, RenderFailure, ServedNode, Snapshot};
use crate::compile::{ConfigCompiler, ConfigState};
use crate::crd::{
    BootConfig, NodeGroup, NodeGroupStatus, NodePhase, NodeStatus, validate_node_group,
};
use crate::render::ipxe::WaitReason;
use crate::render::template::{LabelsRef, NodeView, node_vars};
use crate::render::{RenderError, RenderSettings, render_boot, render_cloud_init};
use crate::resolve::{Outcome, ResolvedNode, is_discovery, resolve_namespace};
use crate::secrets::Secrets;

/// The inputs of a build. NodeGroups are shared, not copied: the snapshot keeps them, and
/// derives a node's labels and meta-data from them when asked.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub node_groups: Vec<Arc<NodeGroup>>,
    pub boot_configs: Vec<BootConfig>,
    pub secrets: Secrets,
}

/// A Ready condition in plain terms; the operator adds timestamps when it writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyCondition {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupReport {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub ready: ReadyCondition,
    pub status: NodeGroupStatus,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigReport {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub ready: ReadyCondition,
    pub matched_nodes: u32,
    pub message: String,
    /// BootConfigs it ties with somewhere: worth an event.
    pub tied_with: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusReport {
    pub node_groups: Vec<GroupReport>,
    pub boot_configs: Vec<ConfigReport>,
}

/// Builds the snapshot to serve and the status to show. `compiler` keeps each BootConfig's
/// last good version across calls.
pub fn build(
    desired: &Desired,
    compiler: &mut ConfigCompiler,
    settings: &RenderSettings,
) -> (Snapshot, StatusReport) {
    let states = compiler.compile_all(&desired.boot_configs, &desired.secrets);

    let mut namespaces: BTreeSet<&str> = BTreeSet::new();
    let mut invalid_groups = Vec::new();
    let mut valid_groups: BTreeMap<&str, Vec<Arc<NodeGroup>>> = BTreeMap::new();
    for group in &desired.node_groups {
        let ns = group.metadata.namespace.as_deref().unwrap_or_default();
        namespaces.insert(ns);
        match validate_node_group(&group.spec) {
            Ok(()) => valid_groups.entry(ns).or_default().push(group.clone()),
            Err(e) => invalid_groups.push((group, e)),
        }
    }
    for st in &states {
        namespaces.insert(st.namespace.as_str());
    }

    let mut served_nodes = Vec::new();
    let mut report = StatusReport::default();
    let mut render_failures: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut discovery = Vec::new();
    let mut configs_by_namespace = BTreeMap::new();

    for ns in namespaces {
        let served: Vec<_> = states
            .iter()
            .filter(|s| s.namespace == ns)
            .filter_map(|s| s.served.clone())
            .collect();
        discovery.extend(served.iter().filter(|c| is_discovery(c)).cloned());
        let groups = valid_groups.get(ns).map(Vec::as_slice).unwrap_or_default();
        let resolution = resolve_namespace(ns, groups, &served);
        let first_served = served_nodes.len();
        for served_node in prepare_nodes(resolution.nodes, settings) {
            if let Some(failure) = &served_node.render_error {
                render_failures
                    .entry((ns.to_owned(), failure.config.clone()))
                    .or_default()
                    .push(format!("{}: {}", served_node.node.name(), failure.error));
            }
            served_nodes.push(served_node);
        }
        report
            .node_groups
            .extend(group_reports(groups, &served_nodes[first_served..]));
        configs_by_namespace.insert(ns.to_owned(), served);
        for st in states.iter().filter(|s| s.namespace == ns) {
            let summary = resolution
                .configs
                .get(&st.name)
                .cloned()
                .unwrap_or_default();
            let failures = render_failures.remove(&(ns.to_owned(), st.name.clone()));
            report
                .boot_configs
                .push(config_report(st, &summary, failures));
        }
    }
    for (group, err) in invalid_groups {
        report.node_groups.push(GroupReport {
            namespace: group.metadata.namespace.clone().unwrap_or_default(),
            name: group.metadata.name.clone().unwrap_or_default(),
            generation: group.metadata.generation,
            ready: ReadyCondition {
                ready: false,
                reason: "InvalidSpec",
                message: format!("{err}; none of this group's nodes are served"),
            },
            status: NodeGroupStatus::default(),
        });
    }
    discovery.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    intern_documents(&mut served_nodes);
    (
        Snapshot::new(
            served_nodes,
            discovery,
            configs_by_namespace,
            settings.clone(),
        ),
        report,
    )
}

fn view<'a>(
    node: &'a ResolvedNode,
    mac: Option<crate::mac::Mac>,
    meta: &'a serde_json::Map<String, serde_json::Value>,
) -> NodeView<'a> {
    NodeView {
        name: node.name(),
        hostname: node.hostname(),
        nid: node.nid(),
        ip: node.ip,
        mac,
        macs: &node.macs,
        arch: node.arch(),
        group: node.group_name(),
        namespace: &node.namespace,
        labels: LabelsRef::Group {
            group: &node.group,
            index: node.index,
        },
        meta,
    }
}

/// Renders every node, spread over the machine's cores: rendering is the bulk of a rebuild and
/// each node's is independent. Order is kept.
fn prepare_nodes(nodes: Vec<ResolvedNode>, settings: &RenderSettings) -> Vec<ServedNode> {
    crate::parallel::map_in_order(nodes, 2048, |n| prepare_node(n, settings))
}

/// Renders everything a node can be asked, once, now.
fn prepare_node(mut node: ResolvedNode, settings: &RenderSettings) -> ServedNode {
    let meta = node.meta();
    let rendered: Result<(BootAnswer, PreparedCloudInit), RenderError> = match &node.outcome {
        Outcome::Assigned(config) => (|| {
            let mut per_mac = Vec::with_capacity(node.macs.len());
            // The first MAC's variables serve its boot script and the cloud-init documents.
            let first_view = view(&node, node.macs.first().copied(), &meta);
            let first_vars = node_vars(&first_view);
            for (i, mac) in node.macs.iter().enumerate() {
                let r = if i == 0 {
                    render_boot(config, &first_view, &first_vars, node.name(), settings)?
                } else {
                    let v = view(&node, Some(*mac), &meta);
                    render_boot(config, &v, &node_vars(&v), node.name(), settings)?
                };
                let custom = r.head_len.is_none();
                let mut script = r.script;
                if let Some(head_len) = r.head_len {
                    script.truncate(head_len);
                }
                let script = exact(script);
                // The params are a stretch of the default script's kernel line: share its bytes.
                let params = match r.head_len.and_then(|_| find(&script, r.params.as_bytes())) {
                    Some(at) => script.slice(at..at + r.params.len()),
                    None => exact(r.params),
                };
                per_mac.push(PreparedBoot {
                    mac: *mac,
                    params,
                    script,
                    custom,
                });
            }
            let params = per_mac.first().map(|p| p.params());
            let docs = render_cloud_init(Some((config, &first_vars)), &meta, params, settings)?;
            Ok((
                BootAnswer::Boot {
                    config: config.clone(),
                    per_mac,
                },
                prepared_docs(docs),
            ))
        })(),
        Outcome::Unassigned(_) | Outcome::Conflict(_) => {
            let reason = if node.outcome.phase() == NodePhase::Conflict {
                WaitReason::Conflict
            } else {
                WaitReason::Unassigned
            };
            render_cloud_init(None, &meta, None, settings)
                .map(|docs| (BootAnswer::Wait(reason), prepared_docs(docs)))
        }
    };
    match rendered {
        Ok((boot, cloud_init)) => ServedNode {
            node,
            boot,
            cloud_init,
            render_error: None,
        },
        Err(err) => {
            let config = node
                .outcome
                .config()
                .map(|c| c.name.clone())
                .unwrap_or_default();
            let message = format!("BootConfig {config} failed to render for this node: {err}");
            node.outcome = Outcome::Unassigned(message);
            ServedNode {
                node,
                boot: BootAnswer::Wait(WaitReason::Unassigned),
                cloud_init: PreparedCloudInit::default(),
                render_error: Some(Box::new(RenderFailure {
                    config,
                    error: err.to_string(),
                })),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Documents that come out the same for many nodes (vendor-data without per-node variables,
/// say) share one allocation.
fn intern_documents(nodes: &mut [ServedNode]) {
    let mut seen: HashSet<Bytes> = HashSet::new();
    let mut intern = |doc: &mut Bytes| {
        if doc.is_empty() {
            return;
        }
        match seen.get(doc) {
            Some(existing) => *doc = existing.clone(),
            None => {
                seen.insert(doc.clone());
            }
        }
    };
    for n in nodes {
        intern(&mut n.cloud_init.user_data);
        intern(&mut n.cloud_init.vendor_data);
        if let Some(doc) = n.cloud_init.network_config.as_mut() {
            intern(doc);
        }
    }
}

/// Bytes that hold no spare capacity: rendered strings grow by doubling, and with 100,000
/// nodes the slack would be a third of the snapshot.
fn exact(s: String) -> Bytes {
    Bytes::from(s.into_boxed_str().into_boxed_bytes())
}

fn prepared_docs(docs: crate::render::CloudInitDocs) -> PreparedCloudInit {
    PreparedCloudInit {
        meta_data: exact(docs.meta_data),
        user_data: exact(docs.user_data),
        vendor_data: exact(docs.vendor_data),
        network_config: docs.network_config.map(exact),
    }
}

fn group_reports<'a>(
    groups: &'a [Arc<NodeGroup>],
    served: &'a [ServedNode],
) -> impl Iterator<Item = GroupReport> + 'a {
    // Served nodes come grouped by NodeGroup: index each group's run once.
    let mut runs: std::collections::HashMap<*const NodeGroup, std::ops::Range<usize>> =
        std::collections::HashMap::new();
    for (i, s) in served.iter().enumerate() {
        runs.entry(Arc::as_ptr(&s.node.group))
            .and_modify(|r| r.end = i + 1)
            .or_insert(i..i + 1);
    }
    groups.iter().map(move |group| {
        let name = group.metadata.name.as_deref().unwrap_or_default();
        let mut status = NodeGroupStatus {
            observed_generation: group.metadata.generation,
            ..Default::default()
        };
        let run = runs.get(&Arc::as_ptr(group)).cloned().unwrap_or(0..0);
        for s in &served[run] {
            let phase = s.node.outcome.phase();
            status.node_count += 1;
            match phase {
                NodePhase::Assigned => status.assigned_count += 1,
                NodePhase::Conflict => status.conflict_count += 1,
                NodePhase::Unassigned => {}
            }
            status.nodes.push(NodeStatus {
                name: s.node.name().to_owned(),
                phase,
                boot_config: s.node.outcome.config().map(|c| c.name.clone()),
                message: s.node.outcome.message().to_owned(),
            });
        }
        let ready = if status.conflict_count > 0 {
            ReadyCondition {
                ready: false,
                reason: "Conflict",
                message: format!(
                    "{} of {} nodes are in conflict and get no boot config; see status.nodes",
                    status.conflict_count, status.node_count
                ),
            }
        } else {
            ReadyCondition {
                ready: true,
                reason: "Resolved",
                message: format!(
                    "{} of {} nodes assigned",
                    status.assigned_count, status.node_count
                ),
            }
        };
        GroupReport {
            namespace: group.metadata.namespace.clone().unwrap_or_default(),
            name: name.to_owned(),
            generation: group.metadata.generation,
            ready,
            status,
        }
    })
}

fn config_report(
    st: &ConfigState,
    summary: &crate::resolve::ConfigSummary,
    render_failures: Option<Vec<String>>,
) -> ConfigReport {
    let mut notes = Vec::new();
    if summary.outranked > 0 {
        notes.push(format!(
            "outranked by a higher priority on {} nodes",
            summary.outranked
        ));
    }
    if !summary.tied_with.is_empty() {
        notes.push(format!(
            "ties with {} on {} nodes, which boot nothing until the tie is broken",
            summary.tied_with.join(", "),
            summary.tied_nodes
        ));
    }
    let ready = match (&st.error, &st.served, &render_failures) {
        (Some(err), Some(served), _) => ReadyCondition {
            ready: false,
            reason: "InvalidSpec",
            message: format!(
                "{err}; still serving generation {}",
                served
                    .generation
                    .map(|g| g.to_string())
                    .unwrap_or_else(|| "unknown".into())
            ),
        },
        (Some(err), None, _) => ReadyCondition {
            ready: false,
            reason: "InvalidSpec",
            message: format!(
                "{err}; no earlier version to serve, so this BootConfig matches no node"
            ),
        },
        (None, _, Some(failures)) => ReadyCondition {
            ready: false,
            reason: "RenderFailed",
            message: format!(
                "failed to render for {} nodes, which boot nothing: {}",
                failures.len(),
                failures
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        },
        (None, _, None) if !summary.tied_with.is_empty() => ReadyCondition {
            ready: false,
            reason: "Conflict",
            message: notes.join("; "),
        },
        (None, _, None) => ReadyCondition {
            ready: true,
            reason: "Resolved",
            message: format!("boots {} nodes", summary.assigned),
        },
    };
    ConfigReport {
        namespace: st.namespace.clone(),
        name: st.name.clone(),
        generation: st.generation,
        ready,
        matched_nodes: summary.assigned,
        message: notes.join("; "),
        tied_with: summary.tied_with.clone(),
    }
}
