//! From the desired state (NodeGroups, BootConfigs, Secrets) to a serving snapshot and the
//! status every resource should show. Pure and synchronous: the runtime calls it, off the
//! threads that answer nodes, whenever its inputs change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::prepare::{intern_documents, prepare_nodes};
use super::{ServedNode, Snapshot};
use crate::compile::ConfigCompiler;
use crate::crd::{BootConfig, NodeGroup, validate_node_group};
use crate::render::RenderSettings;
use crate::report::{StatusReport, config_report, group_report, invalid_group_report};
use crate::resolve::{is_discovery, resolve_namespace};
use crate::secrets::Secrets;

/// The inputs of a build. NodeGroups are shared, not copied: the snapshot keeps them, and
/// derives a node's labels and meta-data from them when asked.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub node_groups: Vec<Arc<NodeGroup>>,
    pub boot_configs: Vec<BootConfig>,
    pub secrets: Secrets,
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
        namespaces.insert(st.id.namespace.as_str());
    }

    let mut served_nodes = Vec::new();
    let mut report = StatusReport::default();
    let mut discovery = Vec::new();
    let mut configs_by_namespace = BTreeMap::new();

    for ns in namespaces {
        let ns_states: Vec<_> = states.iter().filter(|s| s.id.namespace == ns).collect();
        let served: Vec<_> = ns_states.iter().filter_map(|s| s.served.clone()).collect();
        discovery.extend(served.iter().filter(|c| is_discovery(c)).cloned());
        let groups = valid_groups.get(ns).map(Vec::as_slice).unwrap_or_default();
        let resolution = resolve_namespace(ns, groups, &served);
        let first = served_nodes.len();
        served_nodes.extend(prepare_nodes(resolution.nodes, settings));
        let ns_nodes = &served_nodes[first..];
        report.node_groups.extend(group_reports(groups, ns_nodes));
        let mut render_failures = render_failures(ns_nodes);
        for st in ns_states {
            let summary = resolution
                .configs
                .get(&st.id.name)
                .cloned()
                .unwrap_or_default();
            let failures = render_failures.remove(st.id.name.as_str());
            report.boot_configs.push(config_report(
                st,
                &summary,
                failures.as_deref().unwrap_or_default(),
            ));
        }
        configs_by_namespace.insert(ns.to_owned(), served);
    }
    for (group, err) in invalid_groups {
        report.node_groups.push(invalid_group_report(group, &err));
    }
    discovery.sort_by(|a, b| a.id.cmp(&b.id));
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

/// The nodes each BootConfig of a namespace failed to render for, as `"node: error"`.
fn render_failures(nodes: &[ServedNode]) -> HashMap<&str, Vec<String>> {
    let mut failures: HashMap<&str, Vec<String>> = HashMap::new();
    for n in nodes {
        if let Some(failure) = &n.render_error {
            failures
                .entry(failure.config.as_str())
                .or_default()
                .push(format!("{}: {}", n.node.name(), failure.error));
        }
    }
    failures
}

fn group_reports<'a>(
    groups: &'a [Arc<NodeGroup>],
    served: &'a [ServedNode],
) -> impl Iterator<Item = crate::report::GroupReport> + 'a {
    // Served nodes come grouped by NodeGroup: index each group's run once.
    let mut runs: HashMap<*const NodeGroup, std::ops::Range<usize>> = HashMap::new();
    for (i, s) in served.iter().enumerate() {
        runs.entry(Arc::as_ptr(&s.node.group))
            .and_modify(|r| r.end = i + 1)
            .or_insert(i..i + 1);
    }
    groups.iter().map(move |group| {
        let run = runs.get(&Arc::as_ptr(group)).cloned().unwrap_or(0..0);
        group_report(group, served[run].iter().map(|s| &s.node))
    })
}
