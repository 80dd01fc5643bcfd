//! From the desired state (NodeGroups, BootConfigs, Secrets) to a serving snapshot and the
//! status every resource should show. Pure and synchronous: the runtime calls it, off the
//! threads that answer nodes, whenever its inputs change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::prepare::{Rendered, intern_documents, prepare_nodes};
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
    build_from(desired, compiler, settings, &Rendered::default())
}

/// As `build`, keeping what `previous` rendered for every node whose inputs did not change.
pub fn rebuild(
    desired: &Desired,
    compiler: &mut ConfigCompiler,
    settings: &RenderSettings,
    previous: &Snapshot,
) -> (Snapshot, StatusReport) {
    build_from(
        desired,
        compiler,
        settings,
        &Rendered::of(previous, settings),
    )
}

fn build_from(
    desired: &Desired,
    compiler: &mut ConfigCompiler,
    settings: &RenderSettings,
    previous: &Rendered<'_>,
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
        served_nodes.extend(prepare_nodes(resolution.nodes, settings, previous));
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

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    use super::*;
    use crate::crd::{BootConfigSpec, CloudInit, NodeGroupSpec, NodeSpec};
    use crate::snapshot::{Found, NodeBoot};

    fn group(name: &str, role: &str, ntp: &str, first_mac: u8) -> Arc<NodeGroup> {
        let nodes = (0..3u8)
            .map(|i| NodeSpec {
                name: format!("{name}n{i}"),
                macs: vec![format!("02:00:00:00:{first_mac:02x}:{i:02x}")],
                ..Default::default()
            })
            .collect();
        let mut g = NodeGroup::new(
            name,
            NodeGroupSpec {
                labels: [("role".to_owned(), role.to_owned())].into(),
                meta_data: serde_json::from_value(serde_json::json!({ "ntp": ntp })).unwrap(),
                nodes,
            },
        );
        g.metadata.namespace = Some("hpc".into());
        Arc::new(g)
    }

    fn config(name: &str, role: &str, kernel: &str) -> BootConfig {
        let mut bc = BootConfig::new(
            name,
            BootConfigSpec {
                node_selector: Some(LabelSelector {
                    match_labels: Some([("role".to_owned(), role.to_owned())].into()),
                    ..Default::default()
                }),
                kernel: kernel.into(),
                params: "console=ttyS0 ntp={{ meta.ntp }}".into(),
                auto_params: true,
                cloud_init: Some(CloudInit {
                    user_data: Some("#cloud-config\nhostname: {{ node.hostname }}\n".into()),
                    vendor_data: Some("#cloud-config\nntp:\n  servers: [{{ meta.ntp }}]\n".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        bc.metadata.namespace = Some("hpc".into());
        bc
    }

    fn settings() -> RenderSettings {
        RenderSettings {
            server_url: "http://10.0.0.1:8080".into(),
            retry_max_delay: 60,
        }
    }

    /// Everything a node is served, as text, by name.
    fn served(snapshot: &Snapshot) -> Vec<(String, String, String, String, String)> {
        snapshot
            .nodes()
            .iter()
            .map(|n| {
                let script = match n.boot_for(None) {
                    Some((_, boot)) => String::from_utf8_lossy(boot.script.stored()).into_owned(),
                    None => String::new(),
                };
                let doc = |b: &bytes::Bytes| String::from_utf8_lossy(b).into_owned();
                (
                    n.node.name().to_owned(),
                    script,
                    doc(&n.cloud_init.meta_data),
                    doc(&n.cloud_init.user_data),
                    doc(&n.cloud_init.vendor_data),
                )
            })
            .collect()
    }

    fn script_bytes(snapshot: &Snapshot, name: &str) -> bytes::Bytes {
        match snapshot.by_name(name) {
            Found::Node(n) => match &n.boot {
                NodeBoot::Boot { per_mac, .. } => per_mac[0].script.stored().clone(),
                NodeBoot::Wait(_) => panic!("{name} waits"),
            },
            _ => panic!("{name} not found"),
        }
    }

    /// A rebuild after a change serves exactly what a fresh build would, and renders only the
    /// nodes whose NodeGroup or BootConfig changed.
    #[test]
    fn a_rebuild_renders_only_what_changed_and_serves_what_a_fresh_build_would() {
        let mut desired = Desired {
            node_groups: vec![
                group("a", "compute", "10.0.0.5", 1),
                group("b", "compute", "10.0.0.6", 2),
                group("c", "login", "10.0.0.7", 3),
            ],
            boot_configs: vec![
                config("compute", "compute", "http://img/compute/v1"),
                config("login", "login", "http://img/login/v1"),
            ],
            ..Default::default()
        };
        let mut compiler = ConfigCompiler::default();
        let (first, _) = build(&desired, &mut compiler, &settings());

        // One BootConfig changes: its nodes are rendered again, the others keep their bytes.
        desired.boot_configs[0] = config("compute", "compute", "http://img/compute/v2");
        let (second, _) = rebuild(&desired, &mut compiler, &settings(), &first);
        let (fresh, _) = build(&desired, &mut ConfigCompiler::default(), &settings());
        assert_eq!(served(&second), served(&fresh));
        assert!(
            script_bytes(&second, "an0")
                .starts_with(b"#!ipxe\nkernel --name kernel http://img/compute/v2")
        );
        assert_ne!(
            script_bytes(&second, "an0").as_ptr(),
            script_bytes(&first, "an0").as_ptr()
        );
        assert_eq!(
            script_bytes(&second, "cn0").as_ptr(),
            script_bytes(&first, "cn0").as_ptr()
        );

        // One NodeGroup changes (a new object, as a watch or a file reload makes it): its
        // nodes see the new meta-data.
        desired.node_groups[1] = group("b", "compute", "10.0.0.9", 2);
        let (third, _) = rebuild(&desired, &mut compiler, &settings(), &second);
        let (fresh, _) = build(&desired, &mut ConfigCompiler::default(), &settings());
        assert_eq!(served(&third), served(&fresh));
        assert!(
            served(&third)
                .iter()
                .any(|n| n.0 == "bn1" && n.4.contains("10.0.0.9"))
        );
        assert_eq!(
            script_bytes(&third, "an0").as_ptr(),
            script_bytes(&second, "an0").as_ptr()
        );
        assert_ne!(
            script_bytes(&third, "bn0").as_ptr(),
            script_bytes(&second, "bn0").as_ptr()
        );

        // Other settings (another advertised URL) render everything again.
        let elsewhere = RenderSettings {
            server_url: "http://10.0.0.2:8080".into(),
            retry_max_delay: 60,
        };
        let (fourth, _) = rebuild(&desired, &mut compiler, &elsewhere, &third);
        let (fresh, _) = build(&desired, &mut ConfigCompiler::default(), &elsewhere);
        assert_eq!(served(&fourth), served(&fresh));
    }
}
