//! What is known about one node's boot: when it last fetched its boot script (and which
//! BootConfig and generation that was), each cloud-init document, and when it phoned home.
//! Records from several replicas merge field by field, the latest time winning.

use k8s_openapi::jiff::Timestamp;
use nodeboot_core::render::cloud_init::Document;
use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch; 0 is "never".
pub type Epoch = u64;

pub fn now() -> Epoch {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339, as Kubernetes writes times.
pub fn rfc3339(time: Epoch) -> String {
    i64::try_from(time)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
        .map_or_else(String::new, |t| t.to_string())
}

/// Stored as `[time, config, generation]`: thousands of them share one object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(Epoch, String, i64)", into = "(Epoch, String, i64)")]
pub struct BootSeen {
    pub time: Epoch,
    pub config: String,
    pub generation: i64,
}

impl From<(Epoch, String, i64)> for BootSeen {
    fn from((time, config, generation): (Epoch, String, i64)) -> BootSeen {
        BootSeen {
            time,
            config,
            generation,
        }
    }
}

impl From<BootSeen> for (Epoch, String, i64) {
    fn from(b: BootSeen) -> Self {
        (b.time, b.config, b.generation)
    }
}

/// Stored as `[time, generation or null, named]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    from = "(Epoch, Option<i64>, bool)",
    into = "(Epoch, Option<i64>, bool)"
)]
pub struct PhoneSeen {
    pub time: Epoch,
    /// The generation booted: the one the node named (a per-generation instance-id), else the
    /// one of the last boot script the replica knew of when the node phoned home.
    pub generation: Option<i64>,
    /// The node named the generation: it stands, whatever the boot records say.
    pub named: bool,
}

impl From<(Epoch, Option<i64>, bool)> for PhoneSeen {
    fn from((time, generation, named): (Epoch, Option<i64>, bool)) -> PhoneSeen {
        PhoneSeen {
            time,
            generation,
            named,
        }
    }
}

impl From<PhoneSeen> for (Epoch, Option<i64>, bool) {
    fn from(p: PhoneSeen) -> Self {
        (p.time, p.generation, p.named)
    }
}

/// One node's record. Stored compactly (`b`, `d`, `p`): a replica's object holds a whole
/// NodeGroup's worth of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootSeen>,
    /// Last fetch of each document, in `Document::ALL` order.
    #[serde(rename = "d", default, skip_serializing_if = "no_documents")]
    pub documents: [Epoch; 4],
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub phone_home: Option<PhoneSeen>,
}

fn no_documents(d: &[Epoch; 4]) -> bool {
    d.iter().all(|t| *t == 0)
}

pub fn document_index(doc: Document) -> usize {
    Document::ALL.iter().position(|d| *d == doc).unwrap_or(0)
}

impl Record {
    pub fn is_empty(&self) -> bool {
        self.boot.is_none() && self.phone_home.is_none() && no_documents(&self.documents)
    }

    /// Keeps, field by field, the later of the two.
    pub fn merge(&mut self, other: &Record) {
        if let Some(b) = &other.boot
            && self.boot.as_ref().is_none_or(|mine| b.time > mine.time)
        {
            self.boot = Some(b.clone());
        }
        for (mine, theirs) in self.documents.iter_mut().zip(other.documents) {
            *mine = (*mine).max(theirs);
        }
        if let Some(p) = other.phone_home
            && self.phone_home.is_none_or(|mine| p.time > mine.time)
        {
            self.phone_home = Some(p);
        }
    }

    /// The generation the last phone-home confirms: the one the node named; else that of the
    /// last boot script it fetched before phoning home (the merged records know it even when
    /// the replica that took the phone-home did not yet); else what that replica knew.
    pub fn phoned_generation(&self) -> Option<i64> {
        let phone = self.phone_home?;
        match &self.boot {
            _ if phone.named => phone.generation,
            Some(boot) if boot.time <= phone.time => Some(boot.generation),
            _ => phone.generation,
        }
    }

    /// Whether this node booted generation `generation` of `config`: it fetched that script,
    /// and phoned home (confirming that generation) no earlier than the fetch.
    pub fn booted(&self, config: &str, generation: i64) -> bool {
        self.served(config, generation)
            && match (&self.boot, self.phone_home) {
                (Some(boot), Some(phone)) => {
                    phone.time >= boot.time && self.phoned_generation() == Some(generation)
                }
                _ => false,
            }
    }

    /// Whether the last boot script this node fetched is generation `generation` of `config`.
    pub fn served(&self, config: &str, generation: i64) -> bool {
        self.boot
            .as_ref()
            .is_some_and(|b| b.config == config && b.generation == generation)
    }

    /// The admin view (`lastBootScript`, `lastCloudInit`, `lastPhoneHome`).
    pub fn report(&self) -> RecordReport {
        RecordReport {
            last_boot_script: self.boot.as_ref().map(|b| LastBootScript {
                time: rfc3339(b.time),
                boot_config: b.config.clone(),
                generation: b.generation,
            }),
            last_cloud_init: Document::ALL
                .iter()
                .zip(self.documents)
                .filter(|(_, t)| *t > 0)
                .map(|(d, t)| (d.name().to_owned(), rfc3339(t)))
                .collect(),
            last_phone_home: self.phone_home.map(|p| LastPhoneHome {
                time: rfc3339(p.time),
                generation: self.phoned_generation(),
            }),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_boot_script: Option<LastBootScript>,
    pub last_cloud_init: std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_phone_home: Option<LastPhoneHome>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastBootScript {
    pub time: String,
    pub boot_config: String,
    pub generation: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastPhoneHome {
    pub time: String,
    pub generation: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(time: Epoch, generation: i64) -> Option<BootSeen> {
        Some(BootSeen {
            time,
            config: "rocky9".into(),
            generation,
        })
    }

    #[test]
    fn merge_keeps_the_latest_of_each_field() {
        let mut a = Record {
            boot: boot(10, 1),
            documents: [5, 0, 7, 0],
            phone_home: None,
        };
        let b = Record {
            boot: boot(20, 2),
            documents: [6, 3, 1, 0],
            phone_home: Some(PhoneSeen {
                time: 30,
                generation: None,
                named: false,
            }),
        };
        a.merge(&b);
        assert_eq!(a.boot, boot(20, 2));
        assert_eq!(a.documents, [6, 3, 7, 0]);
        assert_eq!(a.phone_home.unwrap().time, 30);
        // Merging an older record changes nothing.
        let before = a.clone();
        a.merge(&Record {
            boot: boot(1, 9),
            documents: [1, 1, 1, 1],
            phone_home: Some(PhoneSeen {
                time: 2,
                generation: Some(9),
                named: true,
            }),
        });
        assert_eq!(a.boot, before.boot);
        assert_eq!(a.phone_home, before.phone_home);
        assert_eq!(a.documents, [6, 3, 7, 1]);
    }

    #[test]
    fn booted_means_phoned_home_after_fetching_that_generation() {
        let mut r = Record {
            boot: boot(100, 7),
            ..Default::default()
        };
        assert!(r.served("rocky9", 7) && !r.booted("rocky9", 7));
        // A phone-home from before the fetch (the previous boot) does not count.
        r.phone_home = Some(PhoneSeen {
            time: 90,
            generation: None,
            named: false,
        });
        assert!(!r.booted("rocky9", 7));
        r.phone_home = Some(PhoneSeen {
            time: 130,
            generation: None,
            named: false,
        });
        assert!(r.booted("rocky9", 7));
        assert!(!r.booted("rocky9", 6) && !r.booted("other", 7));
        // A per-generation instance-id names the generation: an old one does not confirm 7.
        r.phone_home = Some(PhoneSeen {
            time: 130,
            generation: Some(6),
            named: true,
        });
        assert!(!r.booted("rocky9", 7));
    }

    #[test]
    fn records_round_trip_compactly() {
        let r = Record {
            boot: boot(1764143000, 7),
            documents: [1764143001, 0, 0, 0],
            phone_home: Some(PhoneSeen {
                time: 1764143100,
                generation: None,
                named: false,
            }),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.len() < 120, "{text}");
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), r);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
