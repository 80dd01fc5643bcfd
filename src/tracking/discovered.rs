//! Unknown MACs that asked for a boot script: kept bounded (most recent first, at most
//! `CAPACITY`), since anyone on the boot network can invent MACs.

use std::net::IpAddr;
use std::num::NonZeroUsize;

use lru::LruCache;

use nodeboot_core::mac::Mac;
use serde::{Deserialize, Serialize};

use super::record::{Epoch, rfc3339};

/// MACs kept per replica; the least recently seen one makes room for a new one.
pub const CAPACITY: usize = 1024;

/// One unknown MAC as this replica saw it; stored compactly in the replica's object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(rename = "s")]
    pub source: String,
    #[serde(rename = "f")]
    pub first_seen: Epoch,
    #[serde(rename = "l")]
    pub last_seen: Epoch,
    #[serde(rename = "n")]
    pub count: u64,
    /// `namespace/name` of the discovery BootConfig that answered, if any.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub boot_config: Option<String>,
}

impl Sighting {
    /// Folds another replica's sighting of the same MAC into this one.
    pub fn merge(&mut self, other: &Sighting) {
        if other.last_seen > self.last_seen {
            self.arch.clone_from(&other.arch);
            self.source.clone_from(&other.source);
            self.boot_config.clone_from(&other.boot_config);
            self.last_seen = other.last_seen;
        }
        self.first_seen = self.first_seen.min(other.first_seen);
        self.count += other.count;
    }
}

/// `GET /discovered`: one element.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredReport {
    pub mac: String,
    pub arch: Option<String>,
    pub source: String,
    pub first_seen: String,
    pub last_seen: String,
    pub count: u64,
    pub boot_config: Option<String>,
}

impl DiscoveredReport {
    pub fn new(mac: Mac, s: &Sighting) -> DiscoveredReport {
        DiscoveredReport {
            mac: mac.to_string(),
            arch: s.arch.clone(),
            source: s.source.clone(),
            first_seen: rfc3339(s.first_seen),
            last_seen: rfc3339(s.last_seen),
            count: s.count,
            boot_config: s.boot_config.clone(),
        }
    }
}

/// Kept in order of their last sighting, so that making room is one step: a discovery storm
/// is every request a new MAC, and a scan for the oldest of the 1024 on each one (under the
/// tracker's lock) cost a third of the storm's throughput.
#[derive(Debug)]
pub struct Discovered {
    macs: LruCache<Mac, Sighting>,
    /// Changed since last published.
    dirty: bool,
}

impl Default for Discovered {
    fn default() -> Discovered {
        Discovered {
            macs: LruCache::new(NonZeroUsize::new(CAPACITY).unwrap_or(NonZeroUsize::MIN)),
            dirty: false,
        }
    }
}

impl Discovered {
    pub fn saw(
        &mut self,
        mac: Mac,
        arch: Option<&str>,
        source: IpAddr,
        boot_config: Option<String>,
        now: Epoch,
    ) {
        self.dirty = true;
        if let Some(s) = self.macs.get_mut(&mac) {
            s.last_seen = now;
            s.count += 1;
            if s.arch.as_deref() != arch {
                s.arch = arch.map(str::to_owned);
            }
            if s.boot_config != boot_config {
                s.boot_config = boot_config;
            }
            let source = source.to_string();
            if s.source != source {
                s.source = source;
            }
            return;
        }
        // At capacity, the least recently seen MAC makes room.
        self.macs.push(
            mac,
            Sighting {
                arch: arch.map(str::to_owned),
                source: source.to_string(),
                first_seen: now,
                last_seen: now,
                count: 1,
                boot_config,
            },
        );
    }

    /// Starts from what this replica published before a restart (same replica name).
    pub fn seed(&mut self, earlier: impl IntoIterator<Item = (Mac, Sighting)>) {
        // Oldest first, so that the most recent end up the last to make room.
        let mut earlier: Vec<_> = earlier.into_iter().collect();
        earlier.sort_by_key(|(_, s)| s.last_seen);
        for (mac, s) in earlier {
            if let Some(mine) = self.macs.peek_mut(&mac) {
                mine.first_seen = mine.first_seen.min(s.first_seen);
                mine.count += s.count;
            } else if self.macs.len() < CAPACITY {
                self.macs.put(mac, s);
            }
        }
    }

    pub fn changed(&mut self) {
        self.dirty = true;
    }

    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn all(&self) -> impl Iterator<Item = (&Mac, &Sighting)> {
        self.macs.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(i: u16) -> Mac {
        let [a, b] = i.to_be_bytes();
        Mac::new([2, 0, 0, 0, a, b])
    }

    #[test]
    fn strangers_are_bounded_and_the_least_recent_goes_first() {
        let mut d = Discovered::default();
        let from: IpAddr = "10.0.0.9".parse().unwrap();
        for i in 0..(CAPACITY as u16 + 10) {
            d.saw(mac(i), Some("x86_64"), from, None, 1000 + u64::from(i));
        }
        assert_eq!(d.all().count(), CAPACITY);
        assert!(d.all().all(|(m, _)| *m != mac(0) && *m != mac(9)));
        // Asking again counts and refreshes.
        d.saw(mac(20), None, from, Some("hpc/discovery".into()), 9999);
        let (_, s) = d.all().find(|(m, _)| **m == mac(20)).unwrap();
        assert_eq!((s.count, s.last_seen, s.first_seen), (2, 9999, 1020));
        assert_eq!(s.boot_config.as_deref(), Some("hpc/discovery"));
        assert!(d.take_dirty() && !d.take_dirty());
    }

    #[test]
    fn sightings_of_two_replicas_add_up() {
        let a = Sighting {
            arch: Some("x86_64".into()),
            source: "10.0.0.1".into(),
            first_seen: 10,
            last_seen: 20,
            count: 3,
            boot_config: None,
        };
        let mut b = Sighting {
            arch: None,
            source: "10.0.0.2".into(),
            first_seen: 5,
            last_seen: 15,
            count: 2,
            boot_config: None,
        };
        b.merge(&a);
        assert_eq!((b.first_seen, b.last_seen, b.count), (5, 20, 5));
        assert_eq!(b.source, "10.0.0.1");
    }
}
