//! What a node gets and why: the answer of `nodeboot explain` and the admin `/nodes/{id}`.

use serde::Serialize;
use serde_json::Map;

use crate::crd::{Arch, NodePhase};
use crate::labels::Labels;
use crate::mac::Mac;
use crate::render::ipxe::{Asker, WaitReason};
use crate::render::wait_script;
use crate::resolve::{Candidate, Outcome};
use crate::serving::{BootAnswer, Found, Snapshot, UnknownNode};

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
        "'{0}' is claimed by nodes in more than one namespace; it cannot be served until only one claims it"
    )]
    Ambiguous(String),
}

fn why(outcome: &Outcome, candidates: &[Candidate]) -> String {
    match outcome {
        Outcome::Assigned(c) if candidates.len() == 1 => {
            format!("{} is the only BootConfig whose selector matches", c.name)
        }
        Outcome::Assigned(c) => format!(
            "{} has the highest priority ({}) of {} matching BootConfigs",
            c.name,
            c.priority,
            candidates.len()
        ),
        other => other.message().to_owned(),
    }
}

pub fn explain(snapshot: &Snapshot, id: &str) -> Result<NodeReport, ExplainError> {
    let served = match snapshot.by_id(id) {
        Found::Node(n) => n,
        Found::Ambiguous => return Err(ExplainError::Ambiguous(id.into())),
        Found::Missing => {
            let mac: Mac = id.parse().map_err(|_| ExplainError::NotFound(id.into()))?;
            return Ok(explain_unknown(snapshot, mac));
        }
    };
    let node = &served.node;
    let first = node.macs.first().copied();
    let asker = first.map(Asker::Mac).unwrap_or(Asker::Name(node.name()));
    let (kernel, initrd, params, script) = match (&served.boot, served.boot_for(first)) {
        (BootAnswer::Boot { .. }, Some((config, prepared))) => (
            Some(config.kernel.clone()),
            config.initrd.clone(),
            Some(prepared.params().to_owned()),
            String::from_utf8_lossy(&prepared.script_for(0, &snapshot.settings)).into_owned(),
        ),
        (BootAnswer::Wait(reason), _) => (
            None,
            None,
            None,
            wait_script(*reason, asker, 0, &snapshot.settings),
        ),
        (BootAnswer::Boot { .. }, None) => (
            None,
            None,
            None,
            wait_script(WaitReason::Unassigned, asker, 0, &snapshot.settings),
        ),
    };
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
        boot_config: node.outcome.config().map(|c| c.name.clone()),
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

fn explain_unknown(snapshot: &Snapshot, mac: Mac) -> NodeReport {
    let unknown = UnknownNode::resolve(snapshot, mac, None);
    let outcome = &unknown.resolution.outcome;
    let (kernel, initrd, params, script, render_error) = match unknown.boot(snapshot) {
        Some(Ok(b)) => (Some(b.kernel), b.initrd, Some(b.params), b.script, None),
        Some(Err(e)) => (
            None,
            None,
            None,
            wait_script(
                WaitReason::UnknownNode,
                Asker::Mac(mac),
                0,
                &snapshot.settings,
            ),
            Some(e.to_string()),
        ),
        None => (
            None,
            None,
            None,
            wait_script(
                WaitReason::UnknownNode,
                Asker::Mac(mac),
                0,
                &snapshot.settings,
            ),
            None,
        ),
    };
    let mut why = why(outcome, &unknown.resolution.candidates);
    if let Some(e) = render_error {
        why = format!("discovery BootConfig failed to render: {e}");
    }
    NodeReport {
        known: false,
        namespace: outcome.config().map(|c| c.namespace.clone()),
        group: None,
        name: None,
        macs: vec![mac],
        nid: None,
        ip: None,
        hostname: unknown.id.clone(),
        arch: None,
        labels: unknown.resolution.labels.clone(),
        candidates: unknown.resolution.candidates.clone(),
        phase: outcome.phase(),
        boot_config: outcome.config().map(|c| c.name.clone()),
        served_generation: outcome.config().and_then(|c| c.generation),
        why: format!("unknown node (its MAC is in no NodeGroup): {why}"),
        kernel,
        initrd,
        params,
        script,
        meta_data: unknown.meta.clone(),
    }
}
