//! `Snapshot::answer`: the one place that decides what a request gets. The HTTP layer turns an
//! answer into a response, `explain` into a report; neither decides anything itself.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::{Found, NodeBoot, PreparedCloudInit, ServedNode, Snapshot, UnknownNode};
use crate::compile::CompiledBootConfig;
use crate::crd::Arch;
use crate::mac::Mac;
use crate::render::RenderError;
use crate::render::cloud_init::Document;
use crate::render::ipxe::{Asker, Script, WaitReason, wait_script};

/// How a request names the node it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Mac(Mac),
    Name(String),
    Nid(i64),
    /// The request's source address (cloud-init without an id).
    Ip(IpAddr),
    /// A node name, else a MAC in any notation: the `{id}` of the cloud-init and admin paths.
    NameOrMac(String),
}

/// A question about one node: who, on which architecture, in which round of its retry loop.
#[derive(Debug, Clone)]
pub struct Query {
    pub who: Identity,
    pub arch: Option<Arch>,
    pub retry: u32,
}

impl Query {
    pub fn new(who: Identity) -> Query {
        Query {
            who,
            arch: None,
            retry: 0,
        }
    }
}

/// Whom the query found.
#[derive(Debug)]
pub enum Subject<'s> {
    Known(&'s ServedNode),
    /// A MAC in no NodeGroup, resolved against the discovery BootConfigs.
    Unknown(Arc<UnknownNode>),
    /// Claimed by nodes in more than one place: never guess which.
    Ambiguous,
    /// A name, NID, address or id that no node has (and, for an id, not a MAC either).
    Missing,
}

/// What the node boots now. Borrowed from the snapshot (or the unknown node the answer
/// holds): the boot path takes no reference counts, which two threads answering nodes of the
/// same BootConfig would contend on.
#[derive(Debug, Clone, Copy)]
pub struct ReadyBoot<'a> {
    pub config: &'a CompiledBootConfig,
    /// The MAC the script is for: the asking one, or the node's first.
    pub mac: Mac,
    pub params: &'a [u8],
    pub script: &'a Script,
    /// The node's own GRUB config (`grubScript`), if any.
    pub grub: Option<&'a Bytes>,
}

impl ReadyBoot<'_> {
    pub fn params(&self) -> &str {
        std::str::from_utf8(self.params).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub enum Decision<'a> {
    Boot(ReadyBoot<'a>),
    /// The node loops, asking again, until it can boot; `why` may be shown to the client.
    Wait {
        reason: WaitReason,
        why: Cow<'a, str>,
    },
}

/// Why a cloud-init document cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("no network-config is set for this node")]
    NotSet,
    #[error("no node has this identifier")]
    Missing,
    #[error("several nodes claim this identifier")]
    Ambiguous,
    #[error("{0} is in no NodeGroup and no discovery BootConfig matches it")]
    NoDiscovery(Mac),
    #[error("the discovery BootConfig failed to render; see its status")]
    DiscoveryFailed(RenderError),
}

/// The answer to a query: whom it found, and (`decision`) what that node boots or why it waits.
#[derive(Debug)]
pub struct Answer<'s> {
    pub subject: Subject<'s>,
    snapshot: &'s Snapshot,
    /// Borrowed, not copied: a name would cost an allocation on every request.
    query: &'s Query,
}

const NOT_READY: &str = "this node has no boot configuration yet (unknown, unassigned or in conflict); see nodeboot explain";

impl Snapshot {
    /// Finds the node a query names and decides what it gets. Known nodes' answers were
    /// rendered when the snapshot was built; only an unknown MAC is rendered here.
    pub fn answer<'s>(&'s self, query: &'s Query) -> Answer<'s> {
        let found = match &query.who {
            Identity::Mac(mac) => self.by_mac(*mac),
            Identity::Name(name) => self.by_name(name),
            Identity::Nid(nid) => self.by_nid(*nid),
            Identity::Ip(ip) => self.by_ip(*ip),
            Identity::NameOrMac(id) => match self.by_name(id) {
                Found::Missing => id.parse().map_or(Found::Missing, |mac| self.by_mac(mac)),
                found => found,
            },
        };
        let subject = match found {
            Found::Node(node) => Subject::Known(node),
            Found::Ambiguous => Subject::Ambiguous,
            Found::Missing => match &query.who {
                Identity::Mac(mac) => Subject::Unknown(self.unknown_node(*mac, query.arch)),
                Identity::NameOrMac(id) => match id.parse::<Mac>() {
                    Ok(mac) => Subject::Unknown(self.unknown_node(mac, query.arch)),
                    Err(_) => Subject::Missing,
                },
                _ => Subject::Missing,
            },
        };
        Answer {
            subject,
            snapshot: self,
            query,
        }
    }
}

fn asked_mac(who: &Identity) -> Option<Mac> {
    match who {
        Identity::Mac(mac) => Some(*mac),
        Identity::NameOrMac(id) => id.parse().ok(),
        _ => None,
    }
}

fn wait<'a>(reason: WaitReason, why: impl Into<Cow<'a, str>>) -> Decision<'a> {
    Decision::Wait {
        reason,
        why: why.into(),
    }
}

fn decide<'a>(subject: &'a Subject<'_>, asked_mac: Option<Mac>) -> Decision<'a> {
    match subject {
        Subject::Known(node) => match (&node.boot, node.boot_for(asked_mac)) {
            (NodeBoot::Boot { .. }, Some((config, prepared))) => Decision::Boot(ReadyBoot {
                config,
                mac: prepared.mac,
                params: &prepared.params,
                script: &prepared.script,
                grub: prepared.grub.as_deref(),
            }),
            (NodeBoot::Wait(reason), _) => wait(
                *reason,
                format!(
                    "node {} has no boot configuration: {}",
                    node.node.name(),
                    node.node.outcome.message()
                ),
            ),
            (NodeBoot::Boot { .. }, None) => wait(WaitReason::Unassigned, NOT_READY),
        },
        Subject::Unknown(unknown) => match (&unknown.boot, unknown.resolution.outcome.config()) {
            (Some(Ok(boot)), Some(config)) => Decision::Boot(ReadyBoot {
                config,
                mac: unknown.mac,
                params: boot.params.as_bytes(),
                script: &boot.script,
                grub: boot.grub.as_deref(),
            }),
            _ => wait(WaitReason::UnknownNode, NOT_READY),
        },
        Subject::Ambiguous => wait(WaitReason::Conflict, NOT_READY),
        Subject::Missing => wait(WaitReason::UnknownNode, NOT_READY),
    }
}

impl Answer<'_> {
    /// What the node boots, or why it waits.
    pub fn decision(&self) -> Decision<'_> {
        decide(&self.subject, asked_mac(&self.query.who))
    }

    /// The iPXE script for this request: the boot with its retry tail, or the wait loop.
    pub fn script(&self) -> Bytes {
        self.script_for(&self.decision())
    }

    /// The iPXE script for `decision` (this answer's), when the caller has it already.
    pub fn script_for(&self, decision: &Decision<'_>) -> Bytes {
        let settings = &self.snapshot.settings;
        match decision {
            Decision::Boot(boot) => {
                boot.script
                    .for_round(Asker::Mac(boot.mac), self.query.retry, settings)
            }
            Decision::Wait { reason, .. } => Bytes::from(wait_script(
                *reason,
                self.asker(),
                self.query.retry,
                settings,
            )),
        }
    }

    /// The GRUB config for this request: the node's, or one that makes it wait a round
    /// (`render::grub`).
    pub fn grub_config(&self) -> Bytes {
        self.grub_config_for(&self.decision())
    }

    /// The GRUB config for `decision` (this answer's), when the caller has it already.
    pub fn grub_config_for(&self, decision: &Decision<'_>) -> Bytes {
        match decision {
            Decision::Boot(boot) => match boot.grub {
                Some(custom) => custom.clone(),
                None => Bytes::from(boot.config.grub_default.render(boot.params())),
            },
            Decision::Wait { reason, .. } => Bytes::from(crate::render::grub::wait_config(
                *reason,
                self.query.retry,
                &self.snapshot.settings,
            )),
        }
    }

    /// A waiting node asks again the way it asked: by the same MAC, name or NID.
    fn asker(&self) -> Asker<'_> {
        match (&self.query.who, &self.subject) {
            (Identity::Mac(mac), _) => Asker::Mac(*mac),
            (Identity::Name(name), _) => Asker::Name(name),
            (Identity::Nid(nid), _) => Asker::Nid(*nid),
            (_, Subject::Known(node)) => match node.node.macs.first() {
                Some(mac) => Asker::Mac(*mac),
                None => Asker::Name(node.node.name()),
            },
            (_, Subject::Unknown(unknown)) => Asker::Mac(unknown.mac),
            (Identity::NameOrMac(id), _) => Asker::Name(id),
            (Identity::Ip(_), _) => Asker::Name(""),
        }
    }

    /// The known node's address, when its cloud-init data is tied to one.
    pub fn node_ip(&self) -> Option<IpAddr> {
        match &self.subject {
            Subject::Known(node) => node.node.ip.map(super::canonical_ip),
            _ => None,
        }
    }

    /// A cloud-init document of the node.
    pub fn document(&self, doc: Document) -> Result<Bytes, DocumentError> {
        let rendered;
        let docs: &PreparedCloudInit = match &self.subject {
            Subject::Known(node) => &node.cloud_init,
            Subject::Ambiguous => return Err(DocumentError::Ambiguous),
            Subject::Missing => return Err(DocumentError::Missing),
            Subject::Unknown(unknown) => {
                if unknown.resolution.outcome.config().is_none() {
                    return Err(DocumentError::NoDiscovery(unknown.mac));
                }
                rendered = unknown
                    .documents(self.snapshot)
                    .map_err(DocumentError::DiscoveryFailed)?;
                &rendered
            }
        };
        match doc {
            Document::MetaData => Ok(docs.meta_data.clone()),
            Document::UserData => Ok(docs.user_data.clone()),
            Document::VendorData => Ok(docs.vendor_data.clone()),
            Document::NetworkConfig => docs.network_config.clone().ok_or(DocumentError::NotSet),
        }
    }
}
