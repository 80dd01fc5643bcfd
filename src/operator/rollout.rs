//! Boot records across replicas, and the rollout status the leader writes from them.
//!
//! Every replica sees only the requests the Service sends it. Each one publishes what it
//! recorded into ConfigMaps of its own (one per NodeGroup and shard, `<group>.boots-<shard>.
//! <replica>`, in the NodeGroup's namespace, owned by the NodeGroup), changed records only, at
//! most once per object every `interval`. Every replica watches all of them and merges them
//! field by field, latest time winning (a node's last fetch is the latest any replica saw), so
//! every replica's admin view and metrics, and the leader's status, count every request once
//! however the Service spread them. The records outlive the process: a restarted operator starts
//! from them. Objects of replicas that stopped writing (a replaced pod) are folded by the
//! leader into `<group>.boots-<shard>` and deleted, so their number stays bounded.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use nodeboot_core::crd::{BootConfig, BootConfigStatus, DiscoveredMac, NodeGroup, Rollout};
use nodeboot_core::mac::Mac;
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::inventory::{Inventory, spawn_reflector};
use crate::http::SharedSnapshot;
use crate::tracking::discovered::Sighting;
use crate::tracking::record::{Record, now};
use crate::tracking::slots::NodeKey;
use crate::tracking::{Changed, Remote, Tracker};

/// Label on every record object; its value says which kind.
pub const RECORDS_LABEL: &str = "nodeboot.io/boot-records";
const REPLICA_LABEL: &str = "nodeboot.io/replica";
const GROUP_ANNOTATION: &str = "nodeboot.io/node-group";
const SHARD_ANNOTATION: &str = "nodeboot.io/shard";
const WRITTEN_ANNOTATION: &str = "nodeboot.io/written-at";
/// The field manager of `status.rollout` and `status.discovered`: the status writer's own
/// manager applies the rest of the status and leaves these alone.
const FIELD_MANAGER: &str = "nodeboot-rollout";
/// The replica label value of objects the leader folded stale replicas into.
const FOLDED: &str = "folded";
/// A replica object not written for this long belongs to a replica that is gone (or idle): the
/// leader folds it.
const STALE_SECS: u64 = 600;
/// NodeGroups larger than this spread their records over `SHARDS` objects per replica, so that
/// no object nears the 1 MiB limit (5,000 nodes at up to ~400 bytes each).
const SHARD_ABOVE: usize = 1000;
const SHARDS: u64 = 4;
/// Unknown MACs shown in a discovery BootConfig's status.
const STATUS_DISCOVERED: usize = 16;

#[derive(Debug, Clone)]
pub struct RolloutSettings {
    /// This replica's name in its objects (the Lease identity).
    pub replica: String,
    /// Where this replica's discovered-MAC object lives.
    pub home_namespace: String,
    /// The namespace watched (`--namespace`), else all.
    pub watch_namespace: Option<String>,
    /// How often records are published and status written.
    pub interval: Duration,
    /// Notified when the merged records changed: the status writer then updates the
    /// NodeGroups' per-node generations.
    pub changed: Arc<Notify>,
}

/// Turns any name into a DNS label part (lowercase alphanumerics and '-', at most 63).
fn dns_part(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.truncate(63);
    let s = s.trim_matches('-').to_owned();
    if s.is_empty() { "replica".into() } else { s }
}

fn fnv(text: &str) -> u64 {
    // FNV-1a: a stable hash (std's is randomised per process, and shards must agree).
    text.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

fn object_name(group: &str, shard: u64, replica: Option<&str>) -> String {
    let name = match replica {
        Some(r) => format!("{group}.boots-{shard}.{r}"),
        None => format!("{group}.boots-{shard}"),
    };
    if name.len() <= 253 {
        return name;
    }
    let hashed = format!("nodeboot-boots-{:016x}-{shard}", fnv(group));
    match replica {
        Some(r) => format!("{hashed}.{r}"),
        None => hashed,
    }
}

fn discovered_name(replica: &str) -> String {
    format!("nodeboot-discovered.{replica}")
}

fn shard_of(node: &str, group_size: usize) -> u64 {
    if group_size > SHARD_ABOVE {
        fnv(node) % SHARDS
    } else {
        0
    }
}

/// Parsed contents of the record objects, kept per object version so that an unchanged
/// object is not parsed again every interval.
#[derive(Default)]
struct Parsed {
    by_object: HashMap<String, (String, Arc<ParsedObject>)>,
}

/// An object and what it holds.
type ObjectRecords = (Arc<ConfigMap>, Arc<ParsedObject>);

#[derive(Default)]
struct ParsedObject {
    nodes: Vec<(NodeKey, Record)>,
    discovered: Vec<(Mac, Sighting)>,
}

fn parse_object(cm: &ConfigMap) -> ParsedObject {
    let mut parsed = ParsedObject::default();
    let namespace: Arc<str> = Arc::from(cm.namespace().unwrap_or_default());
    let kind = cm.labels().get(RECORDS_LABEL).map(String::as_str);
    for (key, value) in cm.data.iter().flatten() {
        match kind {
            Some("nodes") => {
                if let Ok(record) = serde_json::from_str::<Record>(value) {
                    parsed.nodes.push((
                        NodeKey {
                            namespace: namespace.clone(),
                            name: key.as_str().into(),
                        },
                        record,
                    ));
                }
            }
            Some("discovered") => {
                if let (Ok(mac), Ok(s)) = (key.parse::<Mac>(), serde_json::from_str(value)) {
                    parsed.discovered.push((mac, s));
                }
            }
            _ => {}
        }
    }
    parsed
}

impl Parsed {
    /// Every object with its parsed records, and whether any object is new or changed (or gone).
    fn refresh(&mut self, objects: &[Arc<ConfigMap>]) -> (Vec<ObjectRecords>, bool) {
        let mut next = HashMap::new();
        let mut out = Vec::new();
        let mut changed = false;
        for cm in objects {
            let uid = cm.uid().unwrap_or_default();
            let version = cm.resource_version().unwrap_or_default();
            let parsed = match self.by_object.remove(&uid) {
                Some((v, p)) if v == version => p,
                _ => {
                    changed = true;
                    Arc::new(parse_object(cm))
                }
            };
            out.push((cm.clone(), parsed.clone()));
            next.insert(uid, (version, parsed));
        }
        changed |= !self.by_object.is_empty();
        self.by_object = next;
        (out, changed)
    }
}

/// A record object to write: where, what kind, and for which NodeGroup and shard.
#[derive(Clone, Copy)]
struct Target<'a> {
    namespace: &'a str,
    name: &'a str,
    kind: &'a str,
    group: &'a str,
    shard: u64,
    owner: Option<&'a NodeGroup>,
}

/// Changed records by the object they go to (namespace, name), with their NodeGroup.
type ByObject = BTreeMap<(Arc<str>, String), (Arc<str>, u64, Vec<Changed>)>;

struct Loop {
    client: Client,
    tracker: Arc<Tracker>,
    snapshot: SharedSnapshot,
    inventory: Inventory,
    records: Store<ConfigMap>,
    settings: RolloutSettings,
    replica: String,
    parsed: Parsed,
}

/// Publishes this replica's records, merges everyone's, and (when leader) writes rollout status
/// and folds stale objects; every `settings.interval` until `shutdown`.
pub async fn run(
    client: Client,
    tracker: Arc<Tracker>,
    snapshot: SharedSnapshot,
    inventory: Inventory,
    mut is_leader: watch::Receiver<bool>,
    settings: RolloutSettings,
    shutdown: CancellationToken,
) {
    let records = spawn_reflector(
        super::inventory::api::<ConfigMap>(&client, settings.watch_namespace.as_deref()),
        watcher::Config::default().labels(RECORDS_LABEL),
        Arc::new(Notify::new()),
        shutdown.clone(),
    );
    let replica = dns_part(&settings.replica);
    let mut this = Loop {
        client,
        tracker,
        snapshot,
        inventory,
        records,
        settings,
        replica,
        parsed: Parsed::default(),
    };
    tokio::select! {
        () = shutdown.cancelled() => return,
        ready = this.records.wait_until_ready() => if ready.is_err() { return },
    }
    this.seed_discovered();
    loop {
        let stop = tokio::select! {
            () = shutdown.cancelled() => true,
            () = tokio::time::sleep(this.settings.interval) => false,
            _ = is_leader.changed() => false,
        };
        let published = this.publish().await;
        if this.merge() || published {
            this.settings.changed.notify_one();
        }
        if stop {
            return;
        }
        let leading = *is_leader.borrow();
        if leading {
            this.write_status().await;
            this.fold_stale().await;
        }
    }
}

impl Loop {
    /// After a restart under the same name, the discovered counts go on from what was published.
    fn seed_discovered(&self) {
        let name = discovered_name(&self.replica);
        if let Some(cm) = self
            .records
            .get(&ObjectRef::new(&name).within(&self.settings.home_namespace))
        {
            self.tracker.seed_discovered(parse_object(&cm).discovered);
        }
    }

    fn group_size(&self, namespace: &str, group: &str) -> Option<(usize, Arc<NodeGroup>)> {
        let g = self
            .inventory
            .node_groups
            .get(&ObjectRef::new(group).within(namespace))?;
        Some((g.spec.nodes.len(), g))
    }

    /// Whether anything was published.
    async fn publish(&self) -> bool {
        let changed = self.tracker.take_changed();
        let any = !changed.is_empty();
        let mut objects: ByObject = BTreeMap::new();
        for item in changed {
            let (key, group, _) = &item;
            let size = self.group_size(&key.namespace, group).map_or(0, |(n, _)| n);
            let shard = shard_of(&key.name, size);
            let name = object_name(group, shard, Some(&self.replica));
            objects
                .entry((key.namespace.clone(), name))
                .or_insert_with(|| (group.clone(), shard, Vec::new()))
                .2
                .push(item);
        }
        for ((namespace, name), (group, shard, items)) in objects {
            let data: BTreeMap<String, String> = items
                .iter()
                .filter_map(|(key, _, record)| {
                    Some((key.name.to_string(), serde_json::to_string(record).ok()?))
                })
                .collect();
            let owner = self.group_size(&namespace, &group).map(|(_, g)| g);
            if let Err(e) = self
                .write_object(
                    &Target {
                        namespace: &namespace,
                        name: &name,
                        kind: "nodes",
                        group: &group,
                        shard,
                        owner: owner.as_deref(),
                    },
                    data,
                )
                .await
            {
                tracing::warn!(%namespace, object = %name, error = %e, "boot records not published; will retry");
                self.tracker.put_back(items);
            }
        }
        if let Some(discovered) = self.tracker.take_discovered() {
            let data = discovered
                .iter()
                .filter_map(|(mac, s)| Some((mac.hyphenated(), serde_json::to_string(s).ok()?)))
                .collect();
            let name = discovered_name(&self.replica);
            if let Err(e) = self
                .write_object(
                    &Target {
                        namespace: &self.settings.home_namespace,
                        name: &name,
                        kind: "discovered",
                        group: "",
                        shard: 0,
                        owner: None,
                    },
                    data,
                )
                .await
            {
                tracing::warn!(object = %name, error = %e, "discovered MACs not published; will retry");
                self.tracker.discovered_unpublished();
            }
        }
        any
    }

    /// Writes `data` into the object, creating it when missing.
    async fn write_object(
        &self,
        target: &Target<'_>,
        data: BTreeMap<String, String>,
    ) -> Result<(), kube::Error> {
        let Target {
            namespace,
            name,
            kind,
            group,
            shard,
            owner,
        } = *target;
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let replica = if name.ends_with(&format!(".{}", self.replica)) || kind == "discovered" {
            self.replica.as_str()
        } else {
            FOLDED
        };
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                labels: Some(
                    [
                        (RECORDS_LABEL.to_owned(), kind.to_owned()),
                        (REPLICA_LABEL.to_owned(), replica.to_owned()),
                    ]
                    .into(),
                ),
                annotations: Some(
                    [
                        (GROUP_ANNOTATION.to_owned(), group.to_owned()),
                        (SHARD_ANNOTATION.to_owned(), shard.to_string()),
                        (WRITTEN_ANNOTATION.to_owned(), now().to_string()),
                    ]
                    .into(),
                ),
                owner_references: owner.and_then(owner_reference).map(|o| vec![o]),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        if kind == "discovered" {
            // Replaced whole (server-side apply: keys this replica no longer holds go), so
            // that the object holds at most what the replica keeps.
            let params = PatchParams::apply(&format!("nodeboot-{}", self.replica)).force();
            let mut applied = serde_json::to_value(&cm).unwrap_or_default();
            applied["apiVersion"] = "v1".into();
            applied["kind"] = "ConfigMap".into();
            return api
                .patch(name, &params, &Patch::Apply(&applied))
                .await
                .map(|_| ());
        }
        // Node records: only the changed keys (a JSON merge patch; the other keys stay).
        let patch = json!({
            "metadata": {"annotations": {WRITTEN_ANNOTATION: now().to_string()}},
            "data": cm.data,
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 404 => {
                api.create(&PostParams::default(), &cm).await.map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    /// Every replica's records, merged, become the tracker's view of the cluster. Whether an
    /// object changed since the last merge.
    fn merge(&mut self) -> bool {
        let objects = self.records.state();
        let own_discovered = discovered_name(&self.replica);
        let mut remote = Remote::default();
        let (refreshed, changed) = self.parsed.refresh(&objects);
        for (cm, parsed) in refreshed {
            for (key, record) in &parsed.nodes {
                remote
                    .nodes
                    .entry(key.clone())
                    .and_modify(|r| r.merge(record))
                    .or_insert_with(|| record.clone());
            }
            // This replica's own counts are in the tracker already (fresher).
            if cm.name_any() == own_discovered {
                continue;
            }
            for (mac, s) in &parsed.discovered {
                remote
                    .discovered
                    .entry(*mac)
                    .and_modify(|mine| mine.merge(s))
                    .or_insert_with(|| s.clone());
            }
        }
        self.tracker.set_remote(remote);
        changed
    }

    /// `status.rollout` (and `status.discovered`) of every BootConfig whose status shows
    /// other counts: at most one patch per BootConfig per interval.
    async fn write_status(&self) {
        let snapshot = self.snapshot.load_full();
        let rollouts = self.tracker.rollouts(&snapshot);
        let discovered = self.tracker.discovered(&snapshot);
        for r in rollouts {
            let Some(current) = self
                .inventory
                .boot_configs
                .get(&ObjectRef::new(&r.name).within(&r.namespace))
            else {
                continue;
            };
            let full_name = format!("{}/{}", r.namespace, r.name);
            let desired = BootConfigStatus {
                rollout: Some(Rollout {
                    generation: r.generation,
                    served: i32::try_from(r.served).unwrap_or(i32::MAX),
                    booted: i32::try_from(r.booted).unwrap_or(i32::MAX),
                }),
                discovered: discovered
                    .iter()
                    .filter(|d| d.boot_config.as_deref() == Some(full_name.as_str()))
                    .take(STATUS_DISCOVERED)
                    .map(|d| DiscoveredMac {
                        mac: d.mac.clone(),
                        arch: d.arch.clone(),
                        last_seen: d.last_seen.clone(),
                        count: i64::try_from(d.count).unwrap_or(i64::MAX),
                    })
                    .collect(),
                ..Default::default()
            };
            let shown = current.status.clone().unwrap_or_default();
            if (&shown.rollout, &shown.discovered) == (&desired.rollout, &desired.discovered) {
                continue;
            }
            let api: Api<BootConfig> = Api::namespaced(self.client.clone(), &r.namespace);
            let patch = json!({
                "apiVersion": BootConfig::api_version(&()),
                "kind": BootConfig::kind(&()),
                "status": {"rollout": desired.rollout, "discovered": desired.discovered},
            });
            if let Err(e) = api
                .patch_status(
                    &r.name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
            {
                tracing::warn!(namespace = %r.namespace, name = %r.name, error = %e, "rollout status not written; will retry");
            }
        }
    }

    /// Objects of replicas that stopped writing: their node records go into the folded object
    /// of the same group and shard, then they are deleted (only if unchanged meanwhile).
    async fn fold_stale(&self) {
        let cutoff = now().saturating_sub(STALE_SECS);
        for cm in self.records.state() {
            let labels = cm.labels();
            let replica = labels.get(REPLICA_LABEL).map(String::as_str);
            if replica == Some(FOLDED) || replica == Some(self.replica.as_str()) {
                continue;
            }
            let written = cm
                .annotations()
                .get(WRITTEN_ANNOTATION)
                .and_then(|w| w.parse::<u64>().ok())
                .unwrap_or(0);
            if written > cutoff {
                continue;
            }
            let namespace = cm.namespace().unwrap_or_default();
            let name = cm.name_any();
            if labels.get(RECORDS_LABEL).map(String::as_str) == Some("nodes") {
                let group = cm
                    .annotations()
                    .get(GROUP_ANNOTATION)
                    .cloned()
                    .unwrap_or_default();
                let shard = cm
                    .annotations()
                    .get(SHARD_ANNOTATION)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let folded = object_name(&group, shard, None);
                let data: BTreeMap<String, String> = self.fold_into(&namespace, &folded, &cm);
                let owner = self.group_size(&namespace, &group).map(|(_, g)| g);
                if !data.is_empty()
                    && let Err(e) = self
                        .write_object(
                            &Target {
                                namespace: &namespace,
                                name: &folded,
                                kind: "nodes",
                                group: &group,
                                shard,
                                owner: owner.as_deref(),
                            },
                            data,
                        )
                        .await
                {
                    tracing::warn!(%namespace, object = %folded, error = %e, "stale boot records not folded; will retry");
                    continue;
                }
            }
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &namespace);
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: cm.resource_version(),
                    uid: cm.uid(),
                }),
                ..Default::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {
                    tracing::info!(%namespace, object = %name, "folded the records of a replica that stopped writing")
                }
                Err(e) => {
                    tracing::debug!(%namespace, object = %name, error = %e, "stale record object not deleted")
                }
            }
        }
    }

    /// The entries of `stale` that are newer than what `folded` holds, merged.
    fn fold_into(
        &self,
        namespace: &str,
        folded: &str,
        stale: &ConfigMap,
    ) -> BTreeMap<String, String> {
        let existing = self
            .records
            .get(&ObjectRef::new(folded).within(namespace))
            .map(|cm| parse_object(&cm).nodes)
            .unwrap_or_default();
        newer_entries(&existing, &parse_object(stale).nodes)
    }
}

/// The entries of `stale` that add something to `existing`, merged with what it holds: what a
/// folded object must be patched with.
fn newer_entries(
    existing: &[(NodeKey, Record)],
    stale: &[(NodeKey, Record)],
) -> BTreeMap<String, String> {
    let existing: HashMap<&str, &Record> = existing.iter().map(|(k, r)| (&*k.name, r)).collect();
    let mut out = BTreeMap::new();
    for (key, record) in stale {
        let mut merged = existing
            .get(&*key.name)
            .map(|r| (*r).clone())
            .unwrap_or_default();
        let before = merged.clone();
        merged.merge(record);
        if merged != before
            && let Ok(text) = serde_json::to_string(&merged)
        {
            out.insert(key.name.to_string(), text);
        }
    }
    out
}

fn owner_reference(group: &NodeGroup) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: NodeGroup::api_version(&()).into_owned(),
        kind: NodeGroup::kind(&()).into_owned(),
        name: group.metadata.name.clone()?,
        uid: group.metadata.uid.clone()?,
        ..Default::default()
    })
}

/// The merged records of the cluster, read once: what `nodeboot explain` shows.
pub async fn records_from_cluster(client: &Client, namespace: Option<&str>) -> Remote {
    let api = super::inventory::api::<ConfigMap>(client, namespace);
    let lp = kube::api::ListParams::default().labels(RECORDS_LABEL);
    let mut remote = Remote::default();
    let Ok(list) = api.list(&lp).await else {
        return remote;
    };
    for cm in &list.items {
        let parsed = parse_object(cm);
        for (key, record) in parsed.nodes {
            remote
                .nodes
                .entry(key)
                .and_modify(|r| r.merge(&record))
                .or_insert(record);
        }
    }
    remote
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_valid_and_bounded() {
        assert_eq!(
            object_name("cab-x1000", 0, Some("nodeboot-7f9c")),
            "cab-x1000.boots-0.nodeboot-7f9c"
        );
        assert_eq!(object_name("cab-x1000", 2, None), "cab-x1000.boots-2");
        let long = "g".repeat(250);
        let name = object_name(&long, 1, Some(&"r".repeat(63)));
        assert!(name.len() <= 253, "{}", name.len());
        assert_eq!(dns_part("Host_Name:1234"), "host-name-1234");
        assert_eq!(dns_part("---"), "replica");
    }

    #[test]
    fn folding_keeps_the_newest_of_both() {
        use crate::tracking::record::BootSeen;
        let key = |n: &str| NodeKey {
            namespace: Arc::from("hpc"),
            name: n.into(),
        };
        let boot = |time, generation| Record {
            boot: Some(BootSeen {
                time,
                config: "c".into(),
                generation,
            }),
            ..Default::default()
        };
        let folded = [(key("a"), boot(100, 2)), (key("b"), boot(50, 1))];
        let stale = [
            (key("a"), boot(90, 1)),
            (key("b"), boot(60, 2)),
            (key("c"), boot(10, 1)),
        ];
        let patch = newer_entries(&folded, &stale);
        // `a` is newer in the folded object already: not rewritten.
        assert_eq!(patch.keys().collect::<Vec<_>>(), ["b", "c"]);
        let b: Record = serde_json::from_str(&patch["b"]).unwrap();
        assert_eq!(b, boot(60, 2));
    }

    #[test]
    fn large_groups_spread_over_shards_small_ones_do_not() {
        assert_eq!(shard_of("n1", 10), 0);
        let shards: std::collections::HashSet<u64> =
            (0..100).map(|i| shard_of(&format!("n{i}"), 5000)).collect();
        assert_eq!(shards.len(), SHARDS as usize);
    }
}
