//! What OpenCHAMI's read clients (`ochami`, scripts written for BSS) are answered from a
//! snapshot: the nodes a list of identifiers names, each once; a node's boot parameters in
//! BSS's `BootParams` shape (the stored params, without what autoParams adds, as BSS lists
//! them); a node as SMD describes a component. The HTTP edge parses queries and streams JSON.

use std::collections::HashSet;

use serde::Serialize;

use super::answer::{Answer, Identity, Subject};
use super::{Found, NodeBoot, ServedNode, Snapshot};
use crate::crd::Arch;
use crate::mac::Mac;
use crate::render::cloud_init::Document;

/// The nodes a list of identifiers names, each once, in the order first named.
#[derive(Debug, Default)]
pub struct FoundNodes<'s, 'q> {
    pub nodes: Vec<&'s ServedNode>,
    /// Identifiers no node has.
    pub missing: Vec<&'q Identity>,
    /// Identifiers several nodes claim: never guess which.
    pub ambiguous: Vec<&'q Identity>,
}

impl Snapshot {
    /// Looks every identifier up (index hits only: unknown MACs are not resolved against
    /// discovery here, since BSS lists only nodes it stores parameters for).
    pub fn find_nodes<'s, 'q>(&'s self, ids: &'q [Identity]) -> FoundNodes<'s, 'q> {
        let mut found = FoundNodes::default();
        let mut seen = HashSet::with_capacity(ids.len());
        for id in ids {
            let lookup = match id {
                Identity::Mac(mac) => self.by_mac(*mac),
                Identity::Name(name) => self.by_name(name),
                Identity::Nid(nid) => self.by_nid(*nid),
                Identity::Ip(ip) => self.by_ip(*ip),
                Identity::NameOrMac(id) => match self.by_name(id) {
                    Found::Missing => id.parse().map_or(Found::Missing, |mac| self.by_mac(mac)),
                    other => other,
                },
            };
            match lookup {
                Found::Node(node) => {
                    if seen.insert(std::ptr::from_ref(node)) {
                        found.nodes.push(node);
                    }
                }
                Found::Ambiguous => found.ambiguous.push(id),
                Found::Missing => found.missing.push(id),
            }
        }
        found
    }
}

/// An identifier as a person reads it, for error messages (values cut to a safe length).
pub fn describe(id: &Identity) -> String {
    match id {
        Identity::Mac(mac) => format!("MAC {mac}"),
        Identity::Name(name) => format!("name '{}'", crate::labels::shown(name)),
        Identity::Nid(nid) => format!("NID {nid}"),
        Identity::Ip(ip) => format!("address {ip}"),
        Identity::NameOrMac(id) => format!("'{}'", crate::labels::shown(id)),
    }
}

/// One element of BSS's `GET /boot/v1/bootparameters` answer.
#[derive(Debug, Serialize)]
pub struct BootParamsEntry<'s> {
    pub hosts: [&'s str; 1],
    pub macs: &'s [Mac],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nids: Option<[i64; 1]>,
    pub kernel: &'s str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd: Option<&'s str>,
    pub params: &'s str,
}

impl<'s> BootParamsEntry<'s> {
    /// The node's entry, when it boots: BSS keeps parameters only for nodes that have them.
    /// `params` are the first MAC's, as the BootConfig's `params` rendered them.
    pub fn of(node: &'s ServedNode) -> Option<BootParamsEntry<'s>> {
        let NodeBoot::Boot { config, per_mac } = &node.boot else {
            return None;
        };
        let first = per_mac.first()?;
        Some(BootParamsEntry {
            hosts: [node.node.name()],
            macs: &node.node.macs,
            nids: node.node.nid().map(|n| [n]),
            kernel: &config.kernel,
            initrd: config.initrd.as_deref(),
            params: first.stored_params(),
        })
    }
}

/// A node as SMD's `State/Components` (and BSS's `/hosts`) describe a component.
#[derive(Debug, Serialize)]
pub struct SmdComponent<'s> {
    #[serde(rename = "ID")]
    pub id: &'s str,
    #[serde(rename = "Type")]
    pub kind: &'static str,
    #[serde(rename = "Enabled")]
    pub enabled: bool,
    #[serde(rename = "Role", skip_serializing_if = "Option::is_none")]
    pub role: Option<&'s str>,
    #[serde(rename = "SubRole", skip_serializing_if = "Option::is_none")]
    pub sub_role: Option<&'s str>,
    #[serde(rename = "NID", skip_serializing_if = "Option::is_none")]
    pub nid: Option<i64>,
    #[serde(rename = "Arch", skip_serializing_if = "Option::is_none")]
    pub arch: Option<&'static str>,
    #[serde(rename = "FQDN")]
    pub fqdn: &'s str,
    #[serde(rename = "MAC")]
    pub mac: &'s [Mac],
    /// BSS treats a component whose endpoint is disabled as unknown; every node a NodeGroup
    /// lists is known.
    #[serde(rename = "EndpointEnabled")]
    pub endpoint_enabled: bool,
}

/// The labels `nodeboot import` gives SMD's Role and SubRole, read back for `/hosts`.
pub const ROLE_LABEL: &str = "role";
pub const SUB_ROLE_LABEL: &str = "subrole";

impl<'s> SmdComponent<'s> {
    pub fn of(node: &'s ServedNode) -> SmdComponent<'s> {
        let n = &node.node;
        SmdComponent {
            id: n.name(),
            kind: "Node",
            enabled: true,
            role: n.label(ROLE_LABEL),
            sub_role: n.label(SUB_ROLE_LABEL),
            nid: n.nid(),
            arch: n.arch().map(|a| match a {
                Arch::X86_64 => "X86",
                Arch::Arm64 => "ARM",
            }),
            fqdn: n.hostname(),
            mac: &n.macs,
            endpoint_enabled: true,
        }
    }
}

impl Answer<'_> {
    /// Whether `doc` of this answer's node is a Secret's text, which a listener without
    /// authentication must not show.
    pub fn document_from_secret(&self, doc: Document) -> bool {
        if doc != Document::UserData {
            return false;
        }
        let config = match &self.subject {
            Subject::Known(node) => match &node.boot {
                NodeBoot::Boot { config, .. } => Some(config),
                NodeBoot::Wait(_) => None,
            },
            Subject::Unknown(unknown) => unknown.resolution.outcome.config(),
            Subject::Ambiguous | Subject::Missing => None,
        };
        config.is_some_and(|c| c.secret_user_data.is_some())
    }
}
