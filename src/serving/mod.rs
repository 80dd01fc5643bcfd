//! The serving index: every node's answers rendered ahead of time, found by MAC, name, NID or
//! IP with one hash lookup. A snapshot is immutable; a change builds a new one and swaps it in.

mod build;
mod unknown;

pub use build::{ConfigReport, Desired, GroupReport, ReadyCondition, StatusReport, build};
pub use unknown::UnknownNode;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::compile::CompiledBootConfig;
use crate::crd::NodePhase;
use crate::mac::Mac;
use crate::render::RenderSettings;
use crate::render::ipxe::WaitReason;
use crate::resolve::ResolvedNode;

/// A node's boot answer for one of its MACs.
#[derive(Debug, Clone)]
pub struct PreparedBoot {
    pub mac: Mac,
    /// The rendered kernel parameters; for the default script, a slice of `script`'s bytes.
    pub params: Bytes,
    /// The default script up to its `:boot_retry` tail, or a BootConfig's own whole script.
    /// The tail (a few lines naming the MAC and the retry count) is added per request: storing
    /// it for every node would cost a third of the scripts' memory.
    pub script: Bytes,
    /// Whether `script` is a BootConfig's own script, served as written.
    pub custom: bool,
}

impl PreparedBoot {
    pub fn params(&self) -> &str {
        std::str::from_utf8(&self.params).unwrap_or_default()
    }

    /// The script for request round `retry`.
    pub fn script_for(&self, retry: u32, settings: &RenderSettings) -> Bytes {
        if self.custom {
            return self.script.clone();
        }
        let head = std::str::from_utf8(&self.script).unwrap_or_default();
        Bytes::from(crate::render::with_retry_tail(
            head,
            crate::render::ipxe::Asker::Mac(self.mac),
            retry,
            settings,
        ))
    }
}

#[derive(Debug, Clone, Default)]
pub struct PreparedCloudInit {
    pub meta_data: Bytes,
    pub user_data: Bytes,
    pub vendor_data: Bytes,
    pub network_config: Option<Bytes>,
}

#[derive(Debug, Clone)]
pub enum BootAnswer {
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
    pub boot: BootAnswer,
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
            BootAnswer::Boot { config, per_mac } => {
                let chosen = mac
                    .and_then(|m| per_mac.iter().find(|p| p.mac == m))
                    .or_else(|| per_mac.first())?;
                Some((config, chosen))
            }
            BootAnswer::Wait(_) => None,
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

#[derive(Debug)]
pub struct Snapshot {
    nodes: Vec<ServedNode>,
    by_mac: HashMap<Mac, Slot>,
    by_name: HashMap<Box<str>, Slot>,
    by_nid: HashMap<i64, Slot>,
    by_ip: HashMap<IpAddr, Slot>,
    /// Served BootConfigs that may match unknown nodes.
    pub discovery: Vec<Arc<CompiledBootConfig>>,
    /// Served BootConfigs by namespace: what explain evaluates a node against.
    pub configs: std::collections::BTreeMap<String, Vec<Arc<CompiledBootConfig>>>,
    pub settings: RenderSettings,
    pub counts: PhaseCounts,
}

fn insert<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Slot>, key: K, index: u32) {
    map.entry(key)
        .and_modify(|slot| {
            if *slot != Slot::One(index) {
                *slot = Slot::Ambiguous;
            }
        })
        .or_insert(Slot::One(index));
}

impl Snapshot {
    fn new(
        nodes: Vec<ServedNode>,
        discovery: Vec<Arc<CompiledBootConfig>>,
        configs: std::collections::BTreeMap<String, Vec<Arc<CompiledBootConfig>>>,
        settings: RenderSettings,
    ) -> Snapshot {
        let mut by_mac = HashMap::with_capacity(nodes.len());
        let mut by_name = HashMap::with_capacity(nodes.len());
        let mut by_nid = HashMap::with_capacity(nodes.len());
        let mut by_ip = HashMap::with_capacity(nodes.len());
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
                insert(&mut by_ip, ip, i);
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
        // An IPv4 client may appear as an IPv4-mapped IPv6 address on a dual-stack socket.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.found(self.by_ip.get(&ip))
    }

    /// A node by name, or by MAC in any notation: the `{id}` of the cloud-init and admin paths.
    pub fn by_id(&self, id: &str) -> Found<'_> {
        match self.by_name(id) {
            Found::Missing => match id.parse::<Mac>() {
                Ok(mac) => self.by_mac(mac),
                Err(_) => Found::Missing,
            },
            found => found,
        }
    }

    pub fn nodes(&self) -> &[ServedNode] {
        &self.nodes
    }
}

/// The snapshot every request reads: swapped whole on change, read without a lock.
pub type SharedSnapshot = std::sync::Arc<arc_swap::ArcSwap<Snapshot>>;
