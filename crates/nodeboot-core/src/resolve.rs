//! The resolution: for every node, which BootConfig applies and why. Pure: plain data in,
//! plain data out, shared by the operator and `nodeboot serve`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::compile::CompiledBootConfig;
use crate::crd::{Arch, NodeGroup, NodePhase, NodeSpec};
use crate::labels::{self, Labels};
use crate::mac::Mac;
use crate::meta::merge_meta;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub config: String,
    pub priority: i32,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Assigned(Arc<CompiledBootConfig>),
    Unassigned(String),
    Conflict(String),
}

impl Outcome {
    pub fn phase(&self) -> NodePhase {
        match self {
            Outcome::Assigned(_) => NodePhase::Assigned,
            Outcome::Unassigned(_) => NodePhase::Unassigned,
            Outcome::Conflict(_) => NodePhase::Conflict,
        }
    }

    pub fn config(&self) -> Option<&Arc<CompiledBootConfig>> {
        match self {
            Outcome::Assigned(c) => Some(c),
            _ => None,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Outcome::Assigned(_) => "",
            Outcome::Unassigned(m) | Outcome::Conflict(m) => m,
        }
    }
}

/// One node and its outcome. Compact on purpose: a snapshot holds 100,000 of these. Labels,
/// candidates and meta-data are derived from the NodeGroup on demand (explain, rendering).
#[derive(Debug, Clone)]
pub struct ResolvedNode {
    pub namespace: Arc<str>,
    pub group: Arc<NodeGroup>,
    /// Position of the node in `group.spec.nodes`.
    pub index: usize,
    pub macs: Vec<Mac>,
    pub ip: Option<IpAddr>,
    pub outcome: Outcome,
}

impl ResolvedNode {
    pub fn spec(&self) -> &NodeSpec {
        &self.group.spec.nodes[self.index]
    }

    pub fn name(&self) -> &str {
        &self.spec().name
    }

    pub fn hostname(&self) -> &str {
        self.spec().hostname.as_deref().unwrap_or(&self.spec().name)
    }

    pub fn nid(&self) -> Option<i64> {
        self.spec().nid
    }

    pub fn arch(&self) -> Option<Arch> {
        self.spec().arch
    }

    pub fn group_name(&self) -> &str {
        self.group.metadata.name.as_deref().unwrap_or_default()
    }

    /// One effective label, without building the label map: the well-known labels, then the
    /// node's, then the group's.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.group.effective_label(self.spec(), key)
    }

    /// The effective labels, as selectors see them.
    pub fn labels(&self) -> Labels {
        self.group.effective_labels(self.spec())
    }

    /// Merged meta-data (the BootConfig layer included when assigned).
    pub fn meta(&self) -> Map<String, Value> {
        let spec = self.spec();
        let bc_meta = self.outcome.config().map(|c| &c.meta_data);
        let mut meta = merge_meta(
            &[
                bc_meta,
                Some(&self.group.spec.meta_data),
                Some(&spec.meta_data),
            ],
            &spec.name,
            self.hostname(),
        );
        if let Some(config) = self.outcome.config() {
            per_generation_instance_id(&mut meta, config);
        }
        meta
    }

    /// The node's cloud-init instance-id: a meta-data layer's `instance-id`, else its name
    /// (with the generation suffix when its BootConfig asks for one). Cheaper than `meta()`.
    pub fn instance_id(&self) -> String {
        let spec = self.spec();
        let config = self.outcome.config();
        let set = [
            Some(&spec.meta_data),
            Some(&self.group.spec.meta_data),
            config.map(|c| &c.meta_data),
        ]
        .into_iter()
        .flatten()
        .find_map(|layer| layer.get("instance-id"));
        let base = match set {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => spec.name.clone(),
        };
        match config.and_then(|c| per_generation_suffix(c)) {
            Some(generation) => format!("{base}.g{generation}"),
            None => base,
        }
    }

    /// Every BootConfig among `configs` whose selector matches, highest priority first.
    pub fn candidates(&self, configs: &[Arc<CompiledBootConfig>]) -> Vec<Candidate> {
        let mut matching: Vec<&Arc<CompiledBootConfig>> = configs
            .iter()
            .filter(|c| c.selector.matches(|k| self.label(k)))
            .collect();
        matching.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
        matching
            .iter()
            .map(|c| Candidate {
                config: c.id.name.clone(),
                priority: c.priority,
            })
            .collect()
    }
}

/// What the resolution says about one BootConfig.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSummary {
    /// Nodes this BootConfig boots.
    pub assigned: u32,
    /// Nodes it matches but where a higher priority wins.
    pub outranked: u32,
    /// Nodes where it ties at the top, and the BootConfigs it ties with.
    pub tied_nodes: u32,
    pub tied_with: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Resolution {
    /// Every node of every NodeGroup of the namespace, grouped by NodeGroup in name order.
    pub nodes: Vec<ResolvedNode>,
    pub configs: BTreeMap<String, ConfigSummary>,
}

/// Resolves one namespace. `configs` are the BootConfigs that are served (compiled now or at
/// their last good version); `groups` are valid NodeGroups.
pub fn resolve_namespace(
    namespace: &str,
    groups: &[Arc<NodeGroup>],
    configs: &[Arc<CompiledBootConfig>],
) -> Resolution {
    let namespace: Arc<str> = Arc::from(namespace);
    let mut groups: Vec<&Arc<NodeGroup>> = groups.iter().collect();
    groups.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let mut nodes = Vec::with_capacity(groups.iter().map(|g| g.spec.nodes.len()).sum());
    for group in &groups {
        for (index, node) in group.spec.nodes.iter().enumerate() {
            nodes.push(ResolvedNode {
                namespace: namespace.clone(),
                group: Arc::clone(group),
                index,
                macs: node.macs.iter().filter_map(|m| m.parse().ok()).collect(),
                ip: node.ip.as_deref().and_then(|ip| ip.parse().ok()),
                outcome: Outcome::Unassigned(String::new()),
            });
        }
    }

    let duplicates = find_duplicates(&nodes);

    let mut configs_sorted: Vec<&Arc<CompiledBootConfig>> = configs.iter().collect();
    configs_sorted.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
    let mut summaries: BTreeMap<String, ConfigSummary> = configs
        .iter()
        .map(|c| (c.id.name.clone(), ConfigSummary::default()))
        .collect();

    let mut matching: Vec<&Arc<CompiledBootConfig>> = Vec::with_capacity(configs_sorted.len());
    for (i, node) in nodes.iter_mut().enumerate() {
        matching.clear();
        let spec = &node.group.spec.nodes[node.index];
        matching.extend(
            configs_sorted
                .iter()
                .copied()
                .filter(|c| c.selector.matches(|k| node.group.effective_label(spec, k))),
        );
        node.outcome = match duplicates.get(&i) {
            Some(message) => Outcome::Conflict(message.clone()),
            None => decide(&matching, &mut summaries),
        };
    }

    for summary in summaries.values_mut() {
        summary.tied_with.sort();
        summary.tied_with.dedup();
    }
    Resolution {
        nodes,
        configs: summaries,
    }
}

/// Picks the winner among matching BootConfigs (sorted by priority, highest first).
fn decide(
    matching: &[&Arc<CompiledBootConfig>],
    summaries: &mut BTreeMap<String, ConfigSummary>,
) -> Outcome {
    let Some(top) = matching.first() else {
        return Outcome::Unassigned("no BootConfig selector matches this node".into());
    };
    let tied: Vec<&Arc<CompiledBootConfig>> = matching
        .iter()
        .copied()
        .take_while(|c| c.priority == top.priority)
        .collect();
    for loser in matching.iter().skip(tied.len()) {
        if let Some(s) = summaries.get_mut(&loser.id.name) {
            s.outranked += 1;
        }
    }
    if tied.len() > 1 {
        let names: Vec<&str> = tied.iter().map(|c| c.id.name.as_str()).collect();
        for c in &tied {
            if let Some(s) = summaries.get_mut(&c.id.name) {
                s.tied_nodes += 1;
                s.tied_with.extend(
                    names
                        .iter()
                        .filter(|n| **n != c.id.name)
                        .map(|n| n.to_string()),
                );
            }
        }
        return Outcome::Conflict(format!(
            "BootConfigs {} tie at priority {}; give one a higher priority or narrow a selector",
            names.join(", "),
            top.priority
        ));
    }
    if let Some(s) = summaries.get_mut(&top.id.name) {
        s.assigned += 1;
    }
    Outcome::Assigned((*top).clone())
}

/// How many other claimants a conflict message names.
const NAMED_CLAIMANTS: usize = 3;

/// Nodes whose MAC, name or NID another node of the namespace also claims, with a message
/// naming the other parties.
fn find_duplicates(nodes: &[ResolvedNode]) -> HashMap<usize, String> {
    let macs = collisions(
        nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.macs.iter().map(move |m| (*m, i))),
        nodes.len(),
    );
    let names = collisions(
        nodes.iter().enumerate().map(|(i, n)| (n.name(), i)),
        nodes.len(),
    );
    let nids = collisions(
        nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.nid().map(|nid| (nid, i))),
        nodes.len(),
    );
    let mut messages: HashMap<usize, Vec<String>> = HashMap::new();
    let mut report = |what: String, claimants: &[usize]| {
        // Every claimant names a few of the others, not all: one MAC on thousands of nodes
        // must not cost a message the size of the inventory for each of them.
        let named: Vec<String> = claimants
            .iter()
            .take(NAMED_CLAIMANTS + 1)
            .map(|&j| format!("{} (NodeGroup {})", nodes[j].name(), nodes[j].group_name()))
            .collect();
        for &i in claimants {
            let mut others: Vec<&str> = claimants
                .iter()
                .take(NAMED_CLAIMANTS + 1)
                .zip(&named)
                .filter(|(j, _)| **j != i)
                .map(|(_, n)| n.as_str())
                .take(NAMED_CLAIMANTS)
                .collect();
            let unnamed = claimants.len() - 1 - others.len();
            let more = (unnamed > 0).then(|| format!("and {unnamed} more"));
            others.extend(more.as_deref());
            messages
                .entry(i)
                .or_default()
                .push(format!("{what} is also claimed by {}", others.join(", ")));
        }
    };
    for (mac, claimants) in macs {
        report(format!("MAC {mac}"), &claimants);
    }
    for (name, claimants) in names {
        report(format!("name {name}"), &claimants);
    }
    for (nid, claimants) in nids {
        report(format!("NID {nid}"), &claimants);
    }
    messages
        .into_iter()
        .map(|(i, m)| (i, m.join("; ")))
        .collect()
}

/// Keys claimed by more than one node, with their claimants, in key order. One map entry per
/// key and no allocation unless a key repeats: the common case at 100,000 nodes is none.
fn collisions<K: std::hash::Hash + Ord + Copy>(
    claims: impl Iterator<Item = (K, usize)>,
    capacity: usize,
) -> BTreeMap<K, Vec<usize>> {
    let mut first: HashMap<K, usize> = HashMap::with_capacity(capacity);
    let mut repeated: BTreeMap<K, Vec<usize>> = BTreeMap::new();
    for (key, i) in claims {
        match first.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let claimants = repeated.entry(key).or_insert_with(|| vec![*e.get()]);
                if !claimants.contains(&i) {
                    claimants.push(i);
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(i);
            }
        }
    }
    repeated
}

/// How an unknown node (a MAC in no NodeGroup) is resolved.
#[derive(Debug, Clone)]
pub struct UnknownResolution {
    pub labels: Labels,
    pub candidates: Vec<Candidate>,
    pub outcome: Outcome,
}

/// Labels of an unknown node: nothing but what the request says.
pub fn unknown_labels(mac: Mac, arch: Option<Arch>) -> Labels {
    let mut labels = Labels::new();
    labels.insert(labels::KNOWN.into(), "false".into());
    labels.insert(labels::MAC.into(), mac.hyphenated());
    if let Some(arch) = arch {
        labels.insert(labels::ARCH.into(), arch.as_str().into());
    }
    labels
}

/// Resolves an unknown node against `discovery`: the served BootConfigs (of every namespace)
/// whose selector names `nodeboot.io/known`, the only ones that may boot a stranger.
pub fn resolve_unknown(
    discovery: &[Arc<CompiledBootConfig>],
    mac: Mac,
    arch: Option<Arch>,
) -> UnknownResolution {
    let labels = unknown_labels(mac, arch);
    let mut matching: Vec<&Arc<CompiledBootConfig>> = discovery
        .iter()
        .filter(|c| c.selector.matches(|k| labels.get(k).map(String::as_str)))
        .collect();
    matching.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
    let candidates = matching
        .iter()
        .map(|c| Candidate {
            config: c.id.to_string(),
            priority: c.priority,
        })
        .collect();
    let outcome = match matching.as_slice() {
        [] => Outcome::Unassigned("unknown node and no discovery BootConfig matches it".into()),
        [one, rest @ ..] if rest.first().is_none_or(|r| r.priority < one.priority) => {
            Outcome::Assigned((*one).clone())
        }
        [one, ..] => {
            let tied: Vec<String> = matching
                .iter()
                .take_while(|c| c.priority == one.priority)
                .map(|c| c.id.to_string())
                .collect();
            Outcome::Conflict(format!(
                "discovery BootConfigs {} tie at priority {}",
                tied.join(", "),
                one.priority
            ))
        }
    };
    UnknownResolution {
        labels,
        candidates,
        outcome,
    }
}

/// Is this BootConfig one that may match unknown nodes?
pub fn is_discovery(config: &CompiledBootConfig) -> bool {
    config.selector.names_key(labels::KNOWN)
}

/// The generation an instance-id carries, when `config` asks for per-generation instance-ids.
fn per_generation_suffix(config: &CompiledBootConfig) -> Option<i64> {
    let per_generation = config
        .spec
        .cloud_init
        .as_ref()
        .is_some_and(|c| c.instance_id_per_generation);
    if per_generation {
        config.generation
    } else {
        None
    }
}

/// `instance-id` becomes `<instance-id>.g<generation>` when the BootConfig asks for it:
/// cloud-init runs once-per-instance modules (`phone_home`) again after each rollout.
pub fn per_generation_instance_id(meta: &mut Map<String, Value>, config: &CompiledBootConfig) {
    if let Some(generation) = per_generation_suffix(config)
        && let Some(Value::String(id)) = meta.get_mut("instance-id")
    {
        id.push_str(&format!(".g{generation}"));
    }
}

/// Splits a per-generation instance-id (`<id>.g<generation>`) into its parts.
pub fn split_generation(instance_id: &str) -> Option<(&str, i64)> {
    let (base, generation) = instance_id.rsplit_once(".g")?;
    let generation = generation.parse::<i64>().ok().filter(|g| *g >= 0)?;
    (!base.is_empty() && generation.to_string().len() == instance_id.len() - base.len() - 2)
        .then_some((base, generation))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{BootConfigSpec, NodeGroupSpec, NodeSpec};
    use crate::secrets::Secrets;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    fn group(name: &str, labels: &[(&str, &str)], nodes: Vec<NodeSpec>) -> Arc<NodeGroup> {
        let mut g = NodeGroup::new(
            name,
            NodeGroupSpec {
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                nodes,
                ..Default::default()
            },
        );
        g.metadata.namespace = Some("hpc".into());
        Arc::new(g)
    }

    fn node(name: &str, mac: &str, nid: Option<i64>) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            macs: vec![mac.into()],
            nid,
            ..Default::default()
        }
    }

    fn config(
        name: &str,
        priority: i32,
        selector: Option<LabelSelector>,
    ) -> Arc<CompiledBootConfig> {
        let spec = BootConfigSpec {
            kernel: format!("http://img/{name}/vmlinuz"),
            priority,
            node_selector: selector,
            auto_params: true,
            ..Default::default()
        };
        Arc::new(
            CompiledBootConfig::compile(
                &crate::crd::ObjectId {
                    namespace: "hpc".into(),
                    name: name.into(),
                },
                Some(1),
                &spec,
                &Secrets::default(),
            )
            .unwrap(),
        )
    }

    fn labels(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn priority_wins_and_ties_conflict() {
        let mut gpu = node("n2", "02:00:00:00:00:02", Some(2));
        gpu.labels.insert("gpu".into(), "a100".into());
        let g = group(
            "cab",
            &[("role", "compute")],
            vec![node("n1", "02:00:00:00:00:01", Some(1)), gpu],
        );
        let configs = vec![
            config("compute", 0, Some(labels(&[("role", "compute")]))),
            config("gpu", 10, Some(labels(&[("gpu", "a100")]))),
        ];
        let r = resolve_namespace("hpc", std::slice::from_ref(&g), &configs);
        assert_eq!(r.nodes[0].outcome.config().unwrap().id.name, "compute");
        assert_eq!(r.nodes[1].outcome.config().unwrap().id.name, "gpu");
        assert_eq!(r.nodes[1].candidates(&configs).len(), 2);
        assert_eq!(r.configs["compute"].assigned, 1);
        assert_eq!(r.configs["compute"].outranked, 1);

        let tie = vec![
            config("a", 5, Some(labels(&[("role", "compute")]))),
            config("b", 5, Some(LabelSelector::default())),
        ];
        let r = resolve_namespace("hpc", std::slice::from_ref(&g), &tie);
        for n in &r.nodes {
            assert_eq!(n.outcome.phase(), NodePhase::Conflict);
            assert!(
                n.outcome.message().contains("a, b tie at priority 5"),
                "{}",
                n.outcome.message()
            );
        }
        assert_eq!(r.configs["a"].tied_with, vec!["b".to_string()]);
        assert_eq!(r.configs["b"].tied_nodes, 2);
    }

    #[test]
    fn duplicates_are_conflicts_naming_both_parties() {
        let g1 = group("g1", &[], vec![node("n1", "02:00:00:00:00:01", Some(1))]);
        let g2 = group(
            "g2",
            &[],
            vec![
                node("n2", "02-00-00-00-00-01", Some(1)),
                node("n3", "02:00:00:00:00:03", None),
            ],
        );
        let configs = vec![config("all", 0, Some(LabelSelector::default()))];
        let r = resolve_namespace("hpc", &[g1, g2], &configs);
        let n1 = &r.nodes[0];
        assert_eq!(n1.outcome.phase(), NodePhase::Conflict);
        assert!(
            n1.outcome
                .message()
                .contains("MAC 02:00:00:00:00:01 is also claimed by n2 (NodeGroup g2)")
        );
        assert!(n1.outcome.message().contains("NID 1 is also claimed by n2"));
        assert_eq!(r.nodes[1].outcome.phase(), NodePhase::Conflict);
        assert_eq!(r.nodes[2].outcome.phase(), NodePhase::Assigned);
    }

    #[test]
    fn a_mac_on_thousands_of_nodes_costs_bounded_messages() {
        let nodes: Vec<NodeSpec> = (0..4000)
            .map(|i| node(&format!("n{i}"), "02:00:00:00:00:01", None))
            .collect();
        let g = group("g", &[], nodes);
        let r = resolve_namespace("hpc", &[g], &[]);
        assert_eq!(
            r.nodes[0].outcome.message(),
            "MAC 02:00:00:00:00:01 is also claimed by n1 (NodeGroup g), n2 (NodeGroup g), n3 (NodeGroup g), and 3996 more"
        );
        assert_eq!(
            r.nodes[2].outcome.message(),
            "MAC 02:00:00:00:00:01 is also claimed by n0 (NodeGroup g), n1 (NodeGroup g), n3 (NodeGroup g), and 3996 more"
        );
        assert!(r.nodes.iter().all(|n| n.outcome.message().len() < 200));
    }

    #[test]
    fn absent_selector_matches_nothing_and_labels_layer() {
        let mut n = node("n1", "02:00:00:00:00:01", None);
        n.labels.insert("role".into(), "login".into());
        n.arch = Some(Arch::Arm64);
        let g = group("g", &[("role", "compute"), ("cabinet", "x1000")], vec![n]);
        let r = resolve_namespace("hpc", &[g], &[config("none", 0, None)]);
        let n = &r.nodes[0];
        assert_eq!(n.outcome.phase(), NodePhase::Unassigned);
        let labels = n.labels();
        assert_eq!(labels["role"], "login");
        assert_eq!(labels["cabinet"], "x1000");
        assert_eq!(labels["nodeboot.io/group"], "g");
        assert_eq!(labels["nodeboot.io/arch"], "arm64");
        assert_eq!(labels["nodeboot.io/known"], "true");
        // The allocation-free lookup agrees with the materialized map.
        for (k, v) in &labels {
            assert_eq!(n.label(k), Some(v.as_str()), "{k}");
        }
        assert_eq!(n.label("gpu"), None);
    }

    #[test]
    fn unknown_nodes_need_an_explicit_selector() {
        let catch_all = config("all", 100, Some(LabelSelector::default()));
        let discovery = config(
            "discovery",
            0,
            Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "nodeboot.io/known".into(),
                    operator: "In".into(),
                    values: Some(vec!["false".into()]),
                }]),
                ..Default::default()
            }),
        );
        let served = [catch_all, discovery];
        let discovery: Vec<_> = served.iter().filter(|c| is_discovery(c)).cloned().collect();
        assert_eq!(discovery.len(), 1);
        let mac = Mac::new([2, 0, 0, 0, 0, 9]);
        let r = resolve_unknown(&discovery, mac, Some(Arch::X86_64));
        assert_eq!(r.outcome.config().unwrap().id.name, "discovery");
        assert_eq!(r.labels["nodeboot.io/mac"], "02-00-00-00-00-09");
        let r = resolve_unknown(&[], mac, None);
        assert_eq!(r.outcome.phase(), NodePhase::Unassigned);
    }

    #[test]
    fn per_generation_instance_ids_split_back() {
        assert_eq!(
            split_generation("x1000c0s0b0n0.g7"),
            Some(("x1000c0s0b0n0", 7))
        );
        assert_eq!(split_generation("a.b.g12"), Some(("a.b", 12)));
        for plain in ["x1000c0s0b0n0", "n.g", ".g3", "n.g-1", "n.g+3", "n.g03"] {
            assert_eq!(split_generation(plain), None, "{plain}");
        }
    }
}
