//! Boot tracking: what each node last fetched (boot script, cloud-init documents), when it
//! phoned home, and which unknown MACs asked. Recorded on the request path into per-node
//! atomic slots (`slots`), merged with what other replicas published (`Remote`, filled by the
//! operator's `rollout` loop), and read by the admin endpoints, metrics and the status writer.

pub mod discovered;
pub mod record;
pub mod slots;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use nodeboot_core::compile::CompiledBootConfig;
use nodeboot_core::mac::Mac;
use nodeboot_core::render::cloud_init::Document;
use nodeboot_core::snapshot::{ServedNode, Snapshot};

use discovered::{Discovered, DiscoveredReport, Sighting};
use record::{Record, document_index, now};
use slots::{NodeKey, Slots};

/// What the cluster holds: every replica's published records (this one's earlier lives
/// included), merged.
#[derive(Debug, Default)]
pub struct Remote {
    pub nodes: HashMap<NodeKey, Record>,
    pub discovered: HashMap<Mac, Sighting>,
}

/// A BootConfig's rollout as the records show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRollout {
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    pub served: u64,
    pub booted: u64,
}

/// A changed record to publish: the node, its NodeGroup, the record.
pub type Changed = (NodeKey, Arc<str>, Record);

#[derive(Default)]
pub struct Tracker {
    slots: ArcSwap<Slots>,
    /// Held while the slots are rebuilt (one rebuild at a time); never on the request path.
    rebuilding: Mutex<()>,
    /// Changed records of nodes that left the inventory before they were published.
    gone: Mutex<Vec<Changed>>,
    discovered: Mutex<Discovered>,
    remote: ArcSwap<Remote>,
}

fn generation_of(config: &CompiledBootConfig) -> i64 {
    config.generation.unwrap_or(0)
}

impl Tracker {
    pub fn new() -> Arc<Tracker> {
        Arc::default()
    }

    /// Node `node` of `snapshot` was served its boot script.
    pub fn boot_served(&self, snapshot: &Snapshot, node: &ServedNode, config: &CompiledBootConfig) {
        let Some(index) = snapshot.index_of(node) else {
            return;
        };
        let slots = self.slots.load();
        if let Some((slot, config_name)) = slots.slot(snapshot, index) {
            slot.boot(now(), config_name, generation_of(config));
        }
    }

    pub fn document_served(&self, snapshot: &Snapshot, node: &ServedNode, doc: Document) {
        let Some(index) = snapshot.index_of(node) else {
            return;
        };
        let slots = self.slots.load();
        if let Some((slot, _)) = slots.slot(snapshot, index) {
            slot.document(document_index(doc), now());
        }
    }

    /// Node `node` phoned home; `named` is the generation its instance-id names, if any. Else
    /// the generation is that of the last boot script known now (this replica's or, merged,
    /// another's); the merged records may still correct it (`Record::phoned_generation`).
    pub fn phoned_home(&self, snapshot: &Snapshot, node: &ServedNode, named: Option<i64>) {
        let Some(index) = snapshot.index_of(node) else {
            return;
        };
        let generation = named.or_else(|| self.record(snapshot, node).boot.map(|b| b.generation));
        let slots = self.slots.load();
        if let Some((slot, _)) = slots.slot(snapshot, index) {
            slot.phone_home(now(), generation, named.is_some());
        }
    }

    /// The node of `snapshot` whose meta-data instance-id is `id`, when that is not its name
    /// (a node is found by name first).
    pub fn by_instance_id<'s>(&self, snapshot: &'s Snapshot, id: &str) -> Option<&'s ServedNode> {
        let slots = self.slots.load();
        if !slots.is_for(snapshot) {
            // The slots follow a swap within milliseconds; until then, look the slow way.
            return snapshot.nodes().iter().find(|n| n.node.instance_id() == id);
        }
        snapshot.nodes().get(slots.by_instance_id(id)?)
    }

    /// An unknown MAC asked for a boot script.
    pub fn unknown_asked(
        &self,
        mac: Mac,
        arch: Option<&str>,
        source: IpAddr,
        config: Option<&CompiledBootConfig>,
    ) {
        let config = config.map(|c| format!("{}/{}", c.id.namespace, c.id.name));
        if let Ok(mut d) = self.discovered.lock() {
            d.saw(mac, arch, source, config, now());
        }
    }

    /// Moves the records over to slots for `snapshot`, the one now served.
    pub fn follow(&self, snapshot: &Arc<Snapshot>) {
        let Ok(_one_at_a_time) = self.rebuilding.lock() else {
            return;
        };
        let old = self.slots.load_full();
        let next = Arc::new(Slots::new(Some(snapshot), Some(&old)));
        next.carry_over(&old);
        self.slots.store(next.clone());
        // Requests that loaded the old slots just before the swap wrote there: carried over
        // once more (only what is newer moves).
        let gone = next.carry_over(&old);
        if !gone.is_empty()
            && let Ok(mut g) = self.gone.lock()
        {
            g.extend(gone);
        }
    }

    /// What is known of node `node` of `snapshot`: this replica's record and the cluster's.
    pub fn record(&self, snapshot: &Snapshot, node: &ServedNode) -> Record {
        let key = NodeKey {
            namespace: node.node.namespace.clone(),
            name: node.node.name().into(),
        };
        let slots = self.slots.load();
        let local = if slots.is_for(snapshot) {
            snapshot.index_of(node).and_then(|i| slots.record(i))
        } else {
            slots.index_of(&key).and_then(|i| slots.record(i))
        };
        self.with_remote(&key, local)
    }

    /// What the other replicas published for `key`, merged with this replica's `local` record.
    fn with_remote(&self, key: &NodeKey, local: Option<Record>) -> Record {
        let mut record = self
            .remote
            .load()
            .nodes
            .get(key)
            .cloned()
            .unwrap_or_default();
        if let Some(local) = local {
            record.merge(&local);
        }
        record
    }

    /// The generations node `name` of `namespace` last fetched and confirmed (phone-home), for
    /// its NodeGroup's status.
    pub fn generations(&self, namespace: &str, name: &str) -> (Option<i64>, Option<i64>) {
        let key = NodeKey {
            namespace: Arc::from(namespace),
            name: name.into(),
        };
        let slots = self.slots.load();
        let record = self.with_remote(&key, slots.index_of(&key).and_then(|i| slots.record(i)));
        (
            record.boot.as_ref().map(|b| b.generation),
            record.phoned_generation(),
        )
    }

    /// Unknown MACs that asked (this replica's and the cluster's), most recent first, without
    /// those `snapshot` now knows (adopted).
    pub fn discovered(&self, snapshot: &Snapshot) -> Vec<DiscoveredReport> {
        let mut all = self.remote.load().discovered.clone();
        if let Ok(d) = self.discovered.lock() {
            for (mac, s) in d.all() {
                all.entry(*mac)
                    .and_modify(|theirs| {
                        // The remote copy includes what this replica published: keep the
                        // larger count rather than adding this replica's twice.
                        let count = theirs.count.max(s.count);
                        theirs.merge(s);
                        theirs.count = count;
                    })
                    .or_insert_with(|| s.clone());
            }
        }
        let mut list: Vec<_> = all
            .into_iter()
            .filter(|(mac, _)| {
                matches!(
                    snapshot.by_mac(*mac),
                    nodeboot_core::snapshot::Found::Missing
                )
            })
            .collect();
        list.sort_by(|a, b| b.1.last_seen.cmp(&a.1.last_seen).then(a.0.cmp(&b.0)));
        list.truncate(discovered::CAPACITY);
        list.iter()
            .map(|(mac, s)| DiscoveredReport::new(*mac, s))
            .collect()
    }

    /// Every node's merged record, by index into `snapshot.nodes()`.
    fn records<'a>(&'a self, snapshot: &'a Snapshot) -> impl Iterator<Item = Record> + 'a {
        let remote = self.remote.load_full();
        let slots = self.slots.load_full();
        snapshot.nodes().iter().enumerate().map(move |(i, served)| {
            let key = NodeKey {
                namespace: served.node.namespace.clone(),
                name: served.node.name().into(),
            };
            let mut record = remote.nodes.get(&key).cloned().unwrap_or_default();
            let local = if slots.is_for(snapshot) {
                slots.record(i)
            } else {
                slots.index_of(&key).and_then(|j| slots.record(j))
            };
            if let Some(local) = local {
                record.merge(&local);
            }
            record
        })
    }

    /// Every served BootConfig's rollout: of the nodes it boots, how many fetched its served
    /// generation, and how many phoned home after that.
    pub fn rollouts(&self, snapshot: &Snapshot) -> Vec<ConfigRollout> {
        let mut by_config: HashMap<(&str, &str), ConfigRollout> = HashMap::new();
        for configs in snapshot.configs.values() {
            for c in configs {
                by_config.insert(
                    (&c.id.namespace, &c.id.name),
                    ConfigRollout {
                        namespace: c.id.namespace.clone(),
                        name: c.id.name.clone(),
                        generation: generation_of(c),
                        served: 0,
                        booted: 0,
                    },
                );
            }
        }
        for (served, record) in snapshot.nodes().iter().zip(self.records(snapshot)) {
            let Some(config) = served.node.outcome.config() else {
                continue;
            };
            let Some(rollout) = by_config.get_mut(&(&config.id.namespace, &config.id.name)) else {
                continue;
            };
            if record.served(&config.id.name, rollout.generation) {
                rollout.served += 1;
                if record.booted(&config.id.name, rollout.generation) {
                    rollout.booted += 1;
                }
            }
        }
        let mut list: Vec<_> = by_config.into_values().collect();
        list.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        list
    }

    /// Records changed since the last call: what this replica publishes next.
    pub fn take_changed(&self) -> Vec<Changed> {
        let slots = self.slots.load_full();
        let mut changed: Vec<Changed> = slots
            .take_dirty()
            .into_iter()
            .filter_map(|(i, record)| {
                Some((slots.key(i)?.clone(), slots.group(i)?.clone(), record))
            })
            .collect();
        if let Ok(mut gone) = self.gone.lock() {
            changed.append(&mut gone);
        }
        changed
    }

    /// Marks records as changed again (their publication failed).
    pub fn put_back(&self, changed: Vec<Changed>) {
        if let Ok(mut gone) = self.gone.lock() {
            gone.extend(changed);
        }
    }

    /// This replica's unknown MACs, when they changed since the last call.
    pub fn take_discovered(&self) -> Option<Vec<(Mac, Sighting)>> {
        let mut d = self.discovered.lock().ok()?;
        d.take_dirty()
            .then(|| d.all().map(|(m, s)| (*m, s.clone())).collect())
    }

    /// The last publication of the unknown MACs failed: publish them again next time.
    pub fn discovered_unpublished(&self) {
        if let Ok(mut d) = self.discovered.lock() {
            d.changed();
        }
    }

    /// Starts this replica's unknown MACs from what it published before a restart.
    pub fn seed_discovered(&self, earlier: Vec<(Mac, Sighting)>) {
        if let Ok(mut d) = self.discovered.lock() {
            d.seed(earlier);
        }
    }

    pub fn set_remote(&self, remote: Remote) {
        self.remote.store(Arc::new(remote));
    }
}

/// A node's explanation and, for a known node, what it fetched and when: the admin
/// `/nodes/{id}` and `nodeboot explain`.
#[derive(serde::Serialize)]
pub struct TrackedReport {
    #[serde(flatten)]
    pub report: nodeboot_core::explain::NodeReport,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub record: Option<record::RecordReport>,
}

impl TrackedReport {
    pub fn new(
        report: nodeboot_core::explain::NodeReport,
        snapshot: &Snapshot,
        tracker: &Tracker,
        id: &str,
    ) -> TrackedReport {
        use nodeboot_core::snapshot::{Identity, Query, Subject};
        let query = Query::new(Identity::NameOrMac(id.to_owned()));
        let record = match snapshot.answer(&query).subject {
            Subject::Known(node) => Some(tracker.record(snapshot, node).report()),
            _ => None,
        };
        TrackedReport { report, record }
    }
}

/// `report` with each listed node's served and booted generation filled in.
pub fn with_generations(
    report: &nodeboot_core::report::GroupReport,
    tracker: &Tracker,
) -> nodeboot_core::report::GroupReport {
    let mut report = report.clone();
    for node in &mut report.status.nodes {
        (node.served_generation, node.booted_generation) =
            tracker.generations(&report.id.namespace, &node.name);
    }
    report
}

/// Moves the tracker to each new snapshot as it is swapped in (the runtime sends a report
/// right after every swap).
pub async fn follow_snapshots(
    tracker: Arc<Tracker>,
    snapshot: crate::http::SharedSnapshot,
    mut reports: crate::runtime::Reports,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = reports.changed() => if changed.is_err() { return },
        }
        let current = snapshot.load_full();
        let tracker = tracker.clone();
        // Building slots for 100k nodes is CPU work: off the reactor.
        let _ = tokio::task::spawn_blocking(move || tracker.follow(&current)).await;
    }
}

#[cfg(test)]
mod tests {
    use nodeboot_core::compile::ConfigCompiler;
    use nodeboot_core::render::RenderSettings;
    use nodeboot_core::snapshot::{Desired, Found, build};

    use super::*;

    fn site() -> Desired {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        crate::manifests::ManifestFolder::open(dir)
            .unwrap()
            .read()
            .unwrap()
    }

    fn snapshot_of(desired: &Desired) -> Arc<Snapshot> {
        let settings = RenderSettings {
            server_url: "http://s".into(),
            retry_max_delay: 60,
        };
        Arc::new(build(desired, &mut ConfigCompiler::default(), &settings).0)
    }

    fn node<'s>(snapshot: &'s Snapshot, name: &str) -> &'s ServedNode {
        match snapshot.by_name(name) {
            Found::Node(n) => n,
            _ => panic!("{name} not found"),
        }
    }

    fn boot(tracker: &Tracker, snapshot: &Snapshot, name: &str) {
        let n = node(snapshot, name);
        let config = n.node.outcome.config().unwrap();
        tracker.boot_served(snapshot, n, config);
    }

    #[test]
    fn records_follow_the_snapshot_and_count_per_generation() {
        let tracker = Tracker::new();
        let first = snapshot_of(&site());
        tracker.follow(&first);
        boot(&tracker, &first, "x1000c0s0b0n0");
        boot(&tracker, &first, "x1000c0s0b0n1");
        tracker.phoned_home(&first, node(&first, "x1000c0s0b0n0"), None);
        let compute = |t: &Tracker, s: &Snapshot| {
            t.rollouts(s)
                .into_iter()
                .find(|r| r.name == "compute-rocky9")
                .unwrap()
        };
        let r = compute(&tracker, &first);
        assert_eq!((r.served, r.booted), (2, 1));

        // Only what changed is published, once.
        let changed = tracker.take_changed();
        assert_eq!(changed.len(), 2);
        assert!(
            changed
                .iter()
                .all(|(_, group, _)| &**group == "cabinet-x1000")
        );
        assert!(tracker.take_changed().is_empty());

        // A new snapshot without one of the nodes: the other's record carries over (and is not
        // published again); the removed node's later change is still published.
        let mut smaller = site();
        let group = Arc::make_mut(&mut smaller.node_groups[0]);
        group.spec.nodes.retain(|n| n.name != "x1000c0s0b0n1");
        tracker.phoned_home(&first, node(&first, "x1000c0s0b0n1"), None);
        let second = snapshot_of(&smaller);
        tracker.follow(&second);
        let record = tracker.record(&second, node(&second, "x1000c0s0b0n0"));
        assert!(record.booted("compute-rocky9", r.generation), "{record:?}");
        let changed = tracker.take_changed();
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert_eq!(&*changed[0].0.name, "x1000c0s0b0n1");
        assert_eq!(compute(&tracker, &second).served, 1);

        // A request that still holds the old snapshot is recorded by name.
        boot(&tracker, &first, "x1000c0s1b0n0");
        let record = tracker.record(&second, node(&second, "x1000c0s1b0n0"));
        assert!(record.served("compute-rocky9", r.generation));
    }

    #[test]
    fn the_cluster_s_records_merge_with_this_replica_s() {
        let tracker = Tracker::new();
        let snapshot = snapshot_of(&site());
        tracker.follow(&snapshot);
        let n = node(&snapshot, "x1000c0s0b0n0");
        let generation = n.node.outcome.config().unwrap().generation.unwrap_or(0);
        // Another replica served the script; this one gets the phone-home.
        let key = NodeKey {
            namespace: n.node.namespace.clone(),
            name: n.node.name().into(),
        };
        let mut remote = Remote::default();
        remote.nodes.insert(
            key,
            Record {
                boot: Some(record::BootSeen {
                    time: now() - 60,
                    config: "compute-rocky9".into(),
                    generation,
                }),
                ..Default::default()
            },
        );
        tracker.set_remote(remote);
        tracker.phoned_home(&snapshot, n, None);
        let r = tracker
            .rollouts(&snapshot)
            .into_iter()
            .find(|r| r.name == "compute-rocky9")
            .unwrap();
        assert_eq!((r.served, r.booted), (1, 1));
    }

    #[test]
    fn instance_ids_set_in_meta_data_find_nodes() {
        let mut desired = site();
        let group = Arc::make_mut(&mut desired.node_groups[1]);
        group.spec.nodes[0]
            .meta_data
            .insert("instance-id".into(), "i-0101".into());
        let tracker = Tracker::new();
        let snapshot = snapshot_of(&desired);
        tracker.follow(&snapshot);
        let found = tracker.by_instance_id(&snapshot, "i-0101").unwrap();
        assert_eq!(found.node.name(), "x1001c0s0b0n0");
        assert!(tracker.by_instance_id(&snapshot, "nope").is_none());
        // Before the slots follow a new snapshot, the same answer the slow way.
        let next = snapshot_of(&desired);
        let found = tracker.by_instance_id(&next, "i-0101").unwrap();
        assert_eq!(found.node.name(), "x1001c0s0b0n0");
    }
}
