//! Per-node record slots for one snapshot: a fixed array of atomics indexed by the snapshot's
//! dense node index, so recording a request is a few atomic stores on the node's own slot (no
//! lock, no allocation, no map lookup). Built again, carrying the records over by node name,
//! whenever a new snapshot is swapped in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use nodeboot_core::snapshot::Snapshot;

use super::record::{BootSeen, Epoch, PhoneSeen, Record};

/// A node's identity across snapshots: its namespace and name (unique in a namespace).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey {
    pub namespace: Arc<str>,
    pub name: Box<str>,
}

/// No generation named by the node.
const NO_GENERATION: i64 = i64::MIN;

#[derive(Debug, Default)]
pub struct NodeSlot {
    boot_time: AtomicU64,
    boot_generation: AtomicI64,
    /// Index into `Slots::configs`.
    boot_config: AtomicU32,
    documents: [AtomicU64; 4],
    phone_time: AtomicU64,
    phone_generation: AtomicI64,
    phone_named: AtomicBool,
    /// Changed since last published.
    dirty: AtomicBool,
}

impl NodeSlot {
    pub fn boot(&self, time: Epoch, config: u32, generation: i64) {
        // Generation and config first: a reader that sees the new time sees them too (a
        // concurrent publish may still pair an old time with them; the next publish fixes it).
        self.boot_generation.store(generation, Ordering::Relaxed);
        self.boot_config.store(config, Ordering::Relaxed);
        self.boot_time.store(time, Ordering::Release);
        self.mark();
    }

    pub fn document(&self, index: usize, time: Epoch) {
        if let Some(d) = self.documents.get(index) {
            d.store(time, Ordering::Relaxed);
            self.mark();
        }
    }

    pub fn phone_home(&self, time: Epoch, generation: Option<i64>, named: bool) {
        self.phone_generation
            .store(generation.unwrap_or(NO_GENERATION), Ordering::Relaxed);
        self.phone_named.store(named, Ordering::Relaxed);
        self.phone_time.store(time, Ordering::Release);
        self.mark();
    }

    fn mark(&self) {
        // A load first: a node asking again within a publish interval does not write the line.
        if !self.dirty.load(Ordering::Relaxed) {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Clears the changed flag; whether it was set.
    pub fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::AcqRel)
    }

    fn read(&self, configs: &[Arc<str>]) -> Record {
        let boot_time = self.boot_time.load(Ordering::Acquire);
        let phone_time = self.phone_time.load(Ordering::Acquire);
        let generation = self.phone_generation.load(Ordering::Relaxed);
        Record {
            boot: (boot_time > 0).then(|| BootSeen {
                time: boot_time,
                config: configs
                    .get(self.boot_config.load(Ordering::Relaxed) as usize)
                    .map_or_else(String::new, |c| c.to_string()),
                generation: self.boot_generation.load(Ordering::Relaxed),
            }),
            documents: std::array::from_fn(|i| self.documents[i].load(Ordering::Relaxed)),
            phone_home: (phone_time > 0).then_some(PhoneSeen {
                time: phone_time,
                generation: (generation != NO_GENERATION).then_some(generation),
                named: self.phone_named.load(Ordering::Relaxed),
            }),
        }
    }
}

/// The slots of one snapshot's nodes.
pub struct Slots {
    /// The snapshot whose node indexes these are. A `Weak` keeps its allocation (not the
    /// snapshot) alive, so no later snapshot can have the same address.
    snapshot: Weak<Snapshot>,
    slots: Box<[NodeSlot]>,
    keys: Vec<NodeKey>,
    /// NodeGroup of each node (namespace from the key): what a replica publishes per object.
    groups: Vec<Arc<str>>,
    by_key: HashMap<NodeKey, u32>,
    /// Instance-ids that differ from the node's name (set in meta-data, or per generation).
    by_instance_id: HashMap<String, u32>,
    /// BootConfig names, interned; `node_config[i]` is node i's in this snapshot.
    configs: Vec<Arc<str>>,
    config_index: HashMap<Arc<str>, u32>,
    node_config: Vec<u32>,
}

impl Default for Slots {
    fn default() -> Slots {
        Slots::empty()
    }
}

impl Slots {
    pub fn empty() -> Slots {
        Slots::new(None, None)
    }

    /// Slots for `snapshot`'s nodes, all empty; they know the BootConfig names `previous`
    /// records use, so that those records can be carried over.
    pub fn new(snapshot: Option<&Arc<Snapshot>>, previous: Option<&Slots>) -> Slots {
        let mut slots = Slots {
            snapshot: snapshot.map_or_else(Weak::new, Arc::downgrade),
            slots: Box::new([]),
            keys: Vec::new(),
            groups: Vec::new(),
            by_key: HashMap::new(),
            by_instance_id: HashMap::new(),
            configs: vec![Arc::from("")],
            config_index: HashMap::new(),
            node_config: Vec::new(),
        };
        for name in previous.map(|p| p.configs.as_slice()).unwrap_or_default() {
            slots.intern(name);
        }
        let Some(snapshot) = snapshot else {
            return slots;
        };
        let nodes = snapshot.nodes();
        slots.slots = nodes.iter().map(|_| NodeSlot::default()).collect();
        for (i, served) in nodes.iter().enumerate() {
            let node = &served.node;
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            let key = NodeKey {
                namespace: node.namespace.clone(),
                name: node.name().into(),
            };
            slots.by_key.insert(key.clone(), index);
            slots.keys.push(key);
            slots.groups.push(Arc::from(node.group_name()));
            // Only ids that are not the node's name: names are found by name already, and a
            // copy of every name would cost some 60 bytes a node.
            let instance_id = node.instance_id();
            if instance_id != node.name() {
                slots.by_instance_id.insert(instance_id, index);
            }
            let config = node
                .outcome
                .config()
                .map_or(0, |c| slots.intern(&c.id.name));
            slots.node_config.push(config);
        }
        slots
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(i) = self.config_index.get(name) {
            return *i;
        }
        let i = u32::try_from(self.configs.len()).unwrap_or(0);
        let name: Arc<str> = Arc::from(name);
        self.configs.push(name.clone());
        self.config_index.insert(name, i);
        i
    }

    pub fn is_for(&self, snapshot: &Snapshot) -> bool {
        std::ptr::eq(self.snapshot.as_ptr(), snapshot)
    }

    /// The slot of node `index` of `snapshot`, and its BootConfig's interned name. When these
    /// slots are another snapshot's (a request raced a swap), the node is found by name.
    pub fn slot(&self, snapshot: &Snapshot, index: usize) -> Option<(&NodeSlot, u32)> {
        let index = if self.is_for(snapshot) {
            index
        } else {
            let node = &snapshot.nodes().get(index)?.node;
            let key = NodeKey {
                namespace: node.namespace.clone(),
                name: node.name().into(),
            };
            *self.by_key.get(&key)? as usize
        };
        Some((self.slots.get(index)?, *self.node_config.get(index)?))
    }

    /// The node index of an instance-id (as the node's meta-data says it) that is not the
    /// node's name.
    pub fn by_instance_id(&self, id: &str) -> Option<usize> {
        self.by_instance_id.get(id).map(|i| *i as usize)
    }

    pub fn index_of(&self, key: &NodeKey) -> Option<usize> {
        self.by_key.get(key).map(|i| *i as usize)
    }

    pub fn record(&self, index: usize) -> Option<Record> {
        Some(self.slots.get(index)?.read(&self.configs))
    }

    pub fn key(&self, index: usize) -> Option<&NodeKey> {
        self.keys.get(index)
    }

    pub fn group(&self, index: usize) -> Option<&Arc<str>> {
        self.groups.get(index)
    }

    /// Records changed since the last call, with each node's key and NodeGroup.
    pub fn take_dirty(&self) -> Vec<(usize, Record)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.take_dirty())
            .map(|(i, s)| (i, s.read(&self.configs)))
            .collect()
    }

    /// Carries `old`'s records over to these slots, by node name, where they are newer.
    /// Returns the changed records of nodes these slots do not have (removed from the
    /// inventory), so that they are still published.
    pub fn carry_over(&self, old: &Slots) -> Vec<(NodeKey, Arc<str>, Record)> {
        let mut gone = Vec::new();
        for (i, slot) in old.slots.iter().enumerate() {
            let record = slot.read(&old.configs);
            if record.is_empty() {
                continue;
            }
            let dirty = slot.dirty.load(Ordering::Acquire);
            let key = &old.keys[i];
            let Some(target) = self
                .by_key
                .get(key)
                .and_then(|j| self.slots.get(*j as usize))
            else {
                if dirty {
                    gone.push((key.clone(), old.groups[i].clone(), record));
                }
                continue;
            };
            let mut copied = false;
            if let Some(boot) = &record.boot
                && boot.time > target.boot_time.load(Ordering::Relaxed)
                && let Some(config) = self.config_index.get(boot.config.as_str())
            {
                target
                    .boot_generation
                    .store(boot.generation, Ordering::Relaxed);
                target.boot_config.store(*config, Ordering::Relaxed);
                target.boot_time.store(boot.time, Ordering::Release);
                copied = true;
            }
            for (d, t) in record.documents.iter().enumerate() {
                copied |= target.documents[d].fetch_max(*t, Ordering::Relaxed) < *t;
            }
            if let Some(p) = record.phone_home
                && p.time > target.phone_time.load(Ordering::Relaxed)
            {
                target
                    .phone_generation
                    .store(p.generation.unwrap_or(NO_GENERATION), Ordering::Relaxed);
                target.phone_named.store(p.named, Ordering::Relaxed);
                target.phone_time.store(p.time, Ordering::Release);
                copied = true;
            }
            if copied && dirty {
                target.mark();
            }
        }
        gone
    }
}
