//! `nodeboot adopt`: adds a discovered (unknown) MAC to a NodeGroup as a new node.
//!
//! The change is one update of the NodeGroup carrying the `resourceVersion` it was read at: if
//! anyone changed the NodeGroup since (a `kubectl edit`, another adopt), the API server refuses
//! it (409 Conflict) and adopt reads again, checks again, and retries. No
//! concurrent edit is lost, and the uniqueness check is made against the version patched. (A
//! server-side apply owning only the new entry would also keep other edits, but it could not
//! make the MAC and NID checks against the version it changes.) Uniqueness across NodeGroups
//! cannot be one atomic step; a clash that slips in between is reported as a Conflict in status,
//! as for any duplicate.

use std::net::IpAddr;

use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use nodeboot_core::crd::{NodeGroup, NodeSpec, validate_node_group};
use nodeboot_core::mac::Mac;
use serde_json::json;

/// Attempts before giving up when the NodeGroup keeps changing under us.
const ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG): {0}")]
    Client(#[source] kube::Error),
    #[error(
        "'{0}' is not a MAC address (give it as aa:bb:cc:dd:ee:ff, aa-bb-.., aabb.ccdd.eeff or bare hex)"
    )]
    Mac(String),
    #[error(
        "NodeGroup {namespace}/{name} does not exist; create it first or pick another with --group"
    )]
    NoGroup { namespace: String, name: String },
    #[error("{what} is already claimed by node {node} in NodeGroup {group}; nothing was changed")]
    Claimed {
        what: String,
        node: String,
        group: String,
    },
    #[error("the new node would make NodeGroup {group} invalid: {reason}")]
    Invalid { group: String, reason: String },
    #[error("NodeGroup {0} kept changing while adopting ({ATTEMPTS} attempts); try again")]
    Contention(String),
    #[error("the API server refused the change: {0}")]
    Refused(#[source] kube::Error),
}

#[derive(Debug, Clone)]
pub struct Adoption {
    pub mac: String,
    pub group: String,
    pub namespace: Option<String>,
    pub name: String,
    pub nid: Option<i64>,
    pub ip: Option<IpAddr>,
    pub hostname: Option<String>,
    pub dry_run: bool,
}

/// Who already has the MAC, name or NID among `groups`.
fn claimant(groups: &[NodeGroup], node: &NodeSpec, mac: Mac) -> Option<AdoptError> {
    for g in groups {
        let group = g.metadata.name.clone().unwrap_or_default();
        for n in &g.spec.nodes {
            let claimed = |what: String| AdoptError::Claimed {
                what,
                node: n.name.clone(),
                group: group.clone(),
            };
            if n.macs.iter().any(|m| m.parse::<Mac>().ok() == Some(mac)) {
                return Some(claimed(format!("MAC {mac}")));
            }
            if n.name == node.name {
                return Some(claimed(format!("name {}", node.name)));
            }
            if let (Some(a), Some(b)) = (n.nid, node.nid)
                && a == b
            {
                return Some(claimed(format!("NID {a}")));
            }
        }
    }
    None
}

/// Adds the node; returns what was (or, with `dry_run`, would be) added, as YAML.
pub async fn adopt(a: &Adoption) -> Result<String, AdoptError> {
    let mac: Mac = a.mac.parse().map_err(|_| AdoptError::Mac(a.mac.clone()))?;
    let client = Client::try_default().await.map_err(AdoptError::Client)?;
    let namespace = a
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let api: Api<NodeGroup> = Api::namespaced(client, &namespace);
    let node = NodeSpec {
        name: a.name.clone(),
        macs: vec![mac.to_string()],
        nid: a.nid,
        ip: a.ip.map(|ip| ip.to_string()),
        hostname: a.hostname.clone(),
        ..Default::default()
    };
    for _ in 0..ATTEMPTS {
        let groups = api
            .list(&ListParams::default())
            .await
            .map_err(AdoptError::Client)?
            .items;
        let Some(target) = groups
            .iter()
            .find(|g| g.metadata.name.as_deref() == Some(a.group.as_str()))
        else {
            return Err(AdoptError::NoGroup {
                namespace,
                name: a.group.clone(),
            });
        };
        if let Some(clash) = claimant(&groups, &node, mac) {
            return Err(clash);
        }
        let mut spec = target.spec.clone();
        spec.nodes.push(node.clone());
        validate_node_group(&spec).map_err(|e| AdoptError::Invalid {
            group: a.group.clone(),
            reason: e.to_string(),
        })?;
        let mut updated = target.clone();
        updated.spec = spec;
        updated.status = None;
        let params = PostParams {
            dry_run: a.dry_run,
            ..Default::default()
        };
        // `updated` keeps the resourceVersion it was read at: the precondition.
        match api.replace(&a.group, &params, &updated).await {
            Ok(_) => {
                let yaml = serde_yaml_ng::to_string(&json!({
                    "nodeGroup": format!("{namespace}/{}", a.group),
                    "add": {"spec": {"nodes": [node]}},
                }))
                .unwrap_or_default();
                return Ok(yaml);
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(AdoptError::Refused(e)),
        }
    }
    Err(AdoptError::Contention(a.group.clone()))
}
