//! What a node gets and why: the answer of `nodeboot explain` and the admin `/nodes/{id}`.

use serde::Serialize;
use serde_json::Map;

use crate::crd::{Arch, NodePhase};
use crate::labels::Labels;
use crate::mac::Mac;
use crate::resolve::{Candidate, Outcome};
use crate::snapshot::{Decision, Identity, Query, Snapshot, Subject};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    pub known: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub macs: Vec<Mac>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub hostname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    /// Effective labels, the ones selectors see.
    pub labels: Labels,
    /// Matching BootConfigs, highest priority first.
    pub candidates: Vec<Candidate>,
    pub phase: NodePhase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_config: Option<String>,
    /// The BootConfig generation served: older than the current one when that one is broken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_generation: Option<i64>,
    pub why: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<String>,
    /// The iPXE script the node gets on its first request.
    pub script: String,
    pub meta_data: Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error("no node is named '{0}' and it is not a MAC address")]
    NotFound(String),
    #[error(
        "'{0}' is claimed by more than one node (in one namespace or several); it cannot be served until only one claims it"
    )]
    Ambiguous(String),
}

fn why(outcome: &Outcome, candidates: &[Candidate]) -> String {
    match outcome {
        Outcome::Assigned(c) if candidates.len() == 1 => {
            format!(
                "{} is the only BootConfig whose selector matches",
                c.id.name
            )
        }
        Outcome::Assigned(c) => format!(
            "{} has the highest priority ({}) of {} matching BootConfigs",
            c.id.name,
            c.priority,
            candidates.len()
        ),
        other => other.message().to_owned(),
    }
}

/// What node `id` (a name, or a MAC in any notation) gets and why: the same answer a request
/// gets, with the reasoning around it.
pub fn explain(snapshot: &Snapshot, id: &str) -> Result<NodeReport, ExplainError> {
    let query = Query::new(Identity::NameOrMac(id.to_owned()));
    let answer = snapshot.answer(&query);
    let decision = answer.decision();
    let script = String::from_utf8_lossy(&answer.script_for(&decision)).into_owned();
    let (kernel, initrd, params) = match &decision {
        Decision::Boot(boot) => (
            Some(boot.config.kernel.clone()),
            boot.config.initrd.clone(),
            Some(boot.params().to_owned()),
        ),
        Decision::Wait { .. } => (None, None, None),
    };
    match &answer.subject {
        Subject::Known(served) => {
            let node = &served.node;
            let configs = snapshot
                .configs
                .get(&*node.namespace)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let candidates = node.candidates(configs);
            Ok(NodeReport {
                known: true,
                namespace: Some(node.namespace.to_string()),
                group: Some(node.group_name().to_owned()),
                name: Some(node.name().to_owned()),
                macs: node.macs.clone(),
                nid: node.nid(),
                ip: node.ip.map(|ip| ip.to_string()),
                hostname: node.hostname().to_owned(),
                arch: node.arch(),
                labels: node.labels(),
                phase: node.outcome.phase(),
                boot_config: node.outcome.config().map(|c| c.id.name.clone()),
                served_generation: node.outcome.config().and_then(|c| c.generation),
                why: why(&node.outcome, &candidates),
                candidates,
                kernel,
                initrd,
                params,
                script,
                meta_data: node.meta(),
            })
        }
        Subject::Unknown(unknown) => {
            let outcome = &unknown.resolution.outcome;
            let why = match &unknown.boot {
                Some(Err(e)) => format!("discovery BootConfig failed to render: {e}"),
                _ => why(outcome, &unknown.resolution.candidates),
            };
            Ok(NodeReport {
                known: false,
                namespace: outcome.config().map(|c| c.id.namespace.clone()),
                group: None,
                name: None,
                macs: vec![unknown.mac],
                nid: None,
                ip: None,
                hostname: unknown.id.clone(),
                arch: None,
                labels: unknown.resolution.labels.clone(),
                candidates: unknown.resolution.candidates.clone(),
                phase: outcome.phase(),
                boot_config: outcome.config().map(|c| c.id.name.clone()),
                served_generation: outcome.config().and_then(|c| c.generation),
                why: format!("unknown node (its MAC is in no NodeGroup): {why}"),
                kernel,
                initrd,
                params,
                script,
                meta_data: unknown.meta.clone(),
            })
        }
        Subject::Ambiguous => Err(ExplainError::Ambiguous(id.into())),
        Subject::Missing => Err(ExplainError::NotFound(id.into())),
    }
}
