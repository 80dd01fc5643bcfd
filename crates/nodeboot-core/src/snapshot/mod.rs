//! The serving snapshot: every node's answers rendered ahead of time, found by MAC, name, NID
//! or IP with one hash lookup, and `answer()`, the one place that decides what a request gets.
//! A snapshot is immutable; a change builds a new one, which the runtime swaps in whole.

mod answer;
mod build;
mod openchami;
mod prepare;
mod unknown;

pub use answer::{Answer, Decision, DocumentError, Identity, Query, ReadyBoot, Subject};
pub use build::{Desired, build, rebuild};
pub use openchami::{
    BootParamsEntry, FoundNodes, ROLE_LABEL, SUB_ROLE_LABEL, SmdComponent, describe,
};
pub use unknown::UnknownNode;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::compile::CompiledBootConfig;
use crate::crd::{Arch, NodePhase};
use crate::mac::Mac;
use crate::render::RenderSettings;
use crate::render::ipxe::{Script, WaitReason};
use crate::resolve::ResolvedNode;

/// A node's boot answer for one of its MACs.
#[derive(Debug, Clone)]
pub struct PreparedBoot {
    pub mac: Mac,
    /// The rendered kernel parameters; for the default script, a slice of the script's bytes.
    pub params: Bytes,
    /// The leading bytes of `params` that the BootConfig's `params` gave, before autoParams.
    pub stored_len: usize,
    pub script: Script,
    /// This MAC's own GRUB config (`grubScript`); none for the default (`render::grub`).
    pub grub: Option<Box<Bytes>>,
}

impl PreparedBoot {
    pub fn params(&self) -> &str {
        std::str::from_utf8(&self.params).unwrap_or_default()
    }

    /// The params as stored, without what autoParams added: what BSS's bootparameters lists.
    pub fn stored_params(&self) -> &str {
        self.params().get(..self.stored_len).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default)]
pub struct PreparedCloudInit {
    pub meta_data: Bytes,
    pub user_data: Bytes,
    pub vendor_data: Bytes,
    pub network_config: Option<Bytes>,
}

/// What a known node boots, prepared.
#[derive(Debug, Clone)]
pub enum NodeBoot {
    /// One entry per MAC of the node, in the node's order.
    Boot {
        config: Arc<CompiledBootConfig>,
        per_mac: Vec<PreparedBoot>,
    },
    Wait(WaitReason),
}

#[derive(Debug, Clone)]
pub struct ServedNode {
    pub node: ResolvedNode,
    pub boot: NodeBoot,
    pub cloud_init: PreparedCloudInit,
    /// Why the node's BootConfig could not be rendered for it, when it could not.
    /// Boxed: rare, and every node would otherwise carry its size.
    pub render_error: Option<Box<RenderFailure>>,
}

#[derive(Debug, Clone)]
pub struct RenderFailure {
    pub config: String,
    pub error: String,
}

impl ServedNode {
    /// The prepared boot for `mac`, or the node's first MAC's when it asked by name or NID.
    pub fn boot_for(&self, mac: Option<Mac>) -> Option<(&Arc<CompiledBootConfig>, &PreparedBoot)> {
        match &self.boot {
            NodeBoot::Boot { config, per_mac } => {
                let chosen = mac
                    .and_then(|m| per_mac.iter().find(|p| p.mac == m))
                    .or_else(|| per_mac.first())?;
                Some((config, chosen))
            }
            NodeBoot::Wait(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    One(u32),
    /// Claimed by nodes in more than one place: never guess which.
    Ambiguous,
}

/// What a lookup found.
#[derive(Debug, Clone, Copy)]
pub enum Found<'a> {
    Node(&'a ServedNode),
    Ambiguous,
    Missing,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PhaseCounts {
    pub assigned: u64,
    pub unassigned: u64,
    pub conflict: u64,
}

/// Unknown MACs whose answers are kept per snapshot: a node that loops asking is rendered once.
const UNKNOWN_CACHE_ENTRIES: usize = 4096;
/// What the kept unknown nodes may weigh in all: their boot scripts and a fixed allowance for
/// their documents (`UnknownNode::DOCUMENTS_KEPT_BYTES`). Unknown MACs are anyone's to send,
/// and a discovery template may print up to a megabyte a document.
const UNKNOWN_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Weighs a kept unknown node by the bytes it holds or may hold.
#[derive(Debug, Clone, Copy)]
struct UnknownWeight;

impl quick_cache::Weighter<(Mac, Option<Arch>), Arc<UnknownNode>> for UnknownWeight {
    fn weight(&self, _: &(Mac, Option<Arch>), node: &Arc<UnknownNode>) -> u64 {
        node.weight()
    }
}

/// The indexes' hasher: seeded at random per map, and several times faster than SipHash on
/// these short keys. Their keys come from the inventory; a request only looks one up, which
/// cannot lengthen a chain, so the DoS resistance of SipHash buys nothing here.
type Index<K> = HashMap<K, Slot, foldhash::fast::RandomState>;

#[derive(Debug)]
pub struct Snapshot {
    nodes: Vec<ServedNode>,
    by_mac: Index<Mac>,
    by_name: Index<Box<str>>,
    by_nid: Index<i64>,
    by_ip: Index<IpAddr>,
    /// Served BootConfigs that may match unknown nodes.
    pub discovery: Vec<Arc<CompiledBootConfig>>,
    /// Served BootConfigs by namespace: what explain evaluates a node against.
    pub configs: std::collections::BTreeMap<String, Vec<Arc<CompiledBootConfig>>>,
    pub settings: RenderSettings,
    pub counts: PhaseCounts,
    /// Unknown nodes resolved and rendered so far, by MAC and arch.
    unknown: quick_cache::sync::Cache<(Mac, Option<Arch>), Arc<UnknownNode>, UnknownWeight>,
}

fn index_for<K>(nodes: usize) -> Index<K> {
    Index::with_capacity_and_hasher(nodes, Default::default())
}

fn insert<K: std::hash::Hash + Eq>(map: &mut Index<K>, key: K, index: u32) {
    map.entry(key)
        .and_modify(|slot| {
            if *slot != Slot::One(index) {
                *slot = Slot::Ambiguous;
            }
        })
        .or_insert(Slot::One(index));
}

impl Snapshot {
    pub(crate) fn new(
        nodes: Vec<ServedNode>,
        discovery: Vec<Arc<CompiledBootConfig>>,
        configs: std::collections::BTreeMap<String, Vec<Arc<CompiledBootConfig>>>,
        settings: RenderSettings,
    ) -> Snapshot {
        let mut by_mac: Index<Mac> = index_for(nodes.len());
        let mut by_name: Index<Box<str>> = index_for(nodes.len());
        let mut by_nid: Index<i64> = index_for(nodes.len());
        let mut by_ip: Index<IpAddr> = index_for(nodes.len());
        let mut counts = PhaseCounts::default();
        for (i, served) in nodes.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            let n = &served.node;
            for mac in &n.macs {
                insert(&mut by_mac, *mac, i);
            }
            insert(&mut by_name, Box::from(n.name()), i);
            if let Some(nid) = n.nid() {
                insert(&mut by_nid, nid, i);
            }
            if let Some(ip) = n.ip {
                insert(&mut by_ip, canonical_ip(ip), i);
            }
            match n.outcome.phase() {
                NodePhase::Assigned => counts.assigned += 1,
                NodePhase::Unassigned => counts.unassigned += 1,
                NodePhase::Conflict => counts.conflict += 1,
            }
        }
        Snapshot {
            nodes,
            by_mac,
            by_name,
            by_nid,
            by_ip,
            discovery,
            configs,
            settings,
            counts,
            unknown: quick_cache::sync::Cache::with_weighter(
                UNKNOWN_CACHE_ENTRIES,
                UNKNOWN_CACHE_BYTES,
                UnknownWeight,
            ),
        }
    }

    /// An unknown node, resolved against the discovery BootConfigs and rendered once per
    /// snapshot (and MAC and arch), however often it asks.
    pub fn unknown_node(&self, mac: Mac, arch: Option<Arch>) -> Arc<UnknownNode> {
        let resolved: Result<_, std::convert::Infallible> =
            self.unknown.get_or_insert_with(&(mac, arch), || {
                Ok(Arc::new(UnknownNode::resolve(self, mac, arch)))
            });
        match resolved {
            Ok(node) => node,
        }
    }

    /// A snapshot with no nodes: what is served before the first build.
    pub fn empty(settings: RenderSettings) -> Snapshot {
        Snapshot::new(Vec::new(), Vec::new(), Default::default(), settings)
    }

    fn found(&self, slot: Option<&Slot>) -> Found<'_> {
        match slot {
            Some(Slot::One(i)) => match self.nodes.get(*i as usize) {
                Some(n) => Found::Node(n),
                None => Found::Missing,
            },
            Some(Slot::Ambiguous) => Found::Ambiguous,
            None => Found::Missing,
        }
    }

    pub fn by_mac(&self, mac: Mac) -> Found<'_> {
        self.found(self.by_mac.get(&mac))
    }

    pub fn by_name(&self, name: &str) -> Found<'_> {
        self.found(self.by_name.get(name))
    }

    pub fn by_nid(&self, nid: i64) -> Found<'_> {
        self.found(self.by_nid.get(&nid))
    }

    pub fn by_ip(&self, ip: IpAddr) -> Found<'_> {
        self.found(self.by_ip.get(&canonical_ip(ip)))
    }

    pub fn nodes(&self) -> &[ServedNode] {
        &self.nodes
    }

    /// The position in `nodes()` of a node this snapshot answered with: a dense index that
    /// per-node state (boot tracking) can use instead of a lookup by name.
    pub fn index_of(&self, node: &ServedNode) -> Option<usize> {
        let size = std::mem::size_of::<ServedNode>();
        let offset =
            (node as *const ServedNode as usize).checked_sub(self.nodes.as_ptr() as usize)?;
        let index = offset / size;
        (offset % size == 0 && index < self.nodes.len()).then_some(index)
    }
}

/// An IPv4 client may appear as an IPv4-mapped IPv6 address on a dual-stack socket, and an
/// inventory may write a node's address either way: both sides compare in IPv4 form.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::ConfigCompiler;
    use crate::crd::{BootConfig, BootConfigSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    /// Strangers are anyone's to invent: what is kept for them stays bounded, however large
    /// the discovery BootConfig's script.
    #[test]
    fn what_is_kept_for_unknown_macs_is_bounded() {
        let mut discovery = BootConfig::new(
            "discovery",
            BootConfigSpec {
                node_selector: Some(LabelSelector {
                    match_labels: Some([("nodeboot.io/known".into(), "false".into())].into()),
                    ..Default::default()
                }),
                kernel: "http://img/discovery/vmlinuz".into(),
                // About 200 KB of script for every unknown node.
                script: format!(
                    "#!ipxe\n{{% for i in range(200) %}}echo {}\n{{% endfor %}}",
                    "x".repeat(1000)
                ),
                ..Default::default()
            },
        );
        discovery.metadata.namespace = Some("hpc".into());
        let desired = Desired {
            boot_configs: vec![discovery],
            ..Default::default()
        };
        let settings = RenderSettings {
            server_url: "http://s".into(),
            retry_max_delay: 60,
        };
        let (snapshot, _) = build(&desired, &mut ConfigCompiler::default(), &settings);
        for i in 0..400u16 {
            let [a, b] = i.to_be_bytes();
            let node = snapshot.unknown_node(Mac::new([2, 0, 0, 0, a, b]), None);
            assert!(matches!(node.boot, Some(Ok(_))));
        }
        assert!(
            snapshot.unknown.weight() <= UNKNOWN_CACHE_BYTES,
            "{} bytes kept",
            snapshot.unknown.weight()
        );
        assert!(snapshot.unknown.len() < 400);
    }
}
