//! Writing what the resolution found into NodeGroup and BootConfig status, by server-side
//! apply under one field manager, and events when a resource turns unready or recovers.
//! Only statuses that differ from what the cluster already shows are written.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::future::Either;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource};
use serde_json::json;

use super::inventory::Inventory;
use crate::crd::{BootConfigStatus, NodeGroup, NodeGroupStatus, NodePhase, NodeStatus};
use crate::metrics::{Metrics, ReconcileLabels};
use crate::serving::{ReadyCondition, StatusReport};

pub const FIELD_MANAGER: &str = "nodeboot";
/// Status patches in flight at once: enough to catch up fast, few enough to be a polite client.
const CONCURRENT_PATCHES: usize = 16;

pub struct StatusWriter {
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
}

/// etcd refuses objects over 1.5 MiB. A 5000-node NodeGroup's spec and its server-side-apply
/// managedFields can take most of that, so the per-node list in status must fit what is left.
const OBJECT_BUDGET_BYTES: usize = 1_400_000;

/// The per-node status list that fits the object: every node when it fits; else the nodes that
/// are not Assigned (the ones someone must look at), as many as fit; the condition says so.
fn fit_node_list(
    current: &NodeGroup,
    nodes: &[NodeStatus],
    ready: &mut ReadyCondition,
) -> Vec<NodeStatus> {
    let mut without_status = current.clone();
    without_status.status = None;
    let rest = json_len(&without_status);
    // Room for the counts, the condition and the apply request's envelope.
    let room = OBJECT_BUDGET_BYTES.saturating_sub(rest + 4096);
    if json_len(&nodes) <= room {
        return nodes.to_vec();
    }
    let mut kept: Vec<NodeStatus> = Vec::new();
    let mut used = 2;
    for n in nodes.iter().filter(|n| n.phase != NodePhase::Assigned) {
        let len = json_len(n) + 1;
        if used + len > room {
            break;
        }
        used += len;
        kept.push(n.clone());
    }
    let not_assigned = nodes
        .iter()
        .filter(|n| n.phase != NodePhase::Assigned)
        .count();
    ready.message.push_str(&format!(
        "; status.nodes lists {} of the {not_assigned} nodes that are not Assigned, and no Assigned node: \
         the whole list would not fit the object size limit; `nodeboot explain` and the admin \
         endpoint /nodes/<name> show any node",
        kept.len()
    ));
    kept
}

/// JSON length of a value, for the size budget.
fn json_len(value: &impl serde::Serialize) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

/// Keeps the transition time when the condition's status did not change, as Kubernetes
/// conventions ask.
fn ready_condition(
    ready: &ReadyCondition,
    generation: Option<i64>,
    previous: &[Condition],
) -> Condition {
    let status = if ready.ready { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(Timestamp::now()));
    Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: ready.reason.into(),
        message: ready.message.clone(),
        observed_generation: generation,
        last_transition_time,
    }
}

fn previous_ready(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == "Ready")
}

/// An event is due when Ready turns False or its reason or message changes while False, and
/// when it turns True again.
fn event_for(previous: Option<&Condition>, next: &Condition) -> Option<Event> {
    let changed = previous.is_none_or(|p| {
        p.status != next.status || p.reason != next.reason || p.message != next.message
    });
    if !changed {
        return None;
    }
    let was_ready = previous.is_none_or(|p| p.status == "True");
    let (type_, reason) = match (next.status.as_str(), was_ready) {
        ("False", _) => (EventType::Warning, next.reason.clone()),
        ("True", false) => (EventType::Normal, "Resolved".to_owned()),
        _ => return None,
    };
    let mut note = next.message.clone();
    // The Events API takes at most 1 kB of message.
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    Some(Event {
        type_,
        reason,
        note: Some(note),
        action: "Resolve".into(),
        secondary: None,
    })
}

enum Written {
    Patched,
    Unchanged,
}

impl StatusWriter {
    pub fn new(client: Client, metrics: Arc<Metrics>, instance: String) -> StatusWriter {
        let reporter = Reporter {
            controller: "nodeboot".into(),
            instance: Some(instance),
        };
        StatusWriter {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
        }
    }

    /// Writes every status that differs from `report`; returns how many writes failed.
    pub async fn write_all(&self, report: &StatusReport, inventory: &Inventory) -> usize {
        let started = Instant::now();
        let mut writes = Vec::new();
        for g in &report.node_groups {
            let Some(current) = inventory
                .node_groups
                .get(&ObjectRef::new(&g.name).within(&g.namespace))
            else {
                continue;
            };
            let previous = current.status.clone().unwrap_or_default();
            let mut ready = g.ready.clone();
            let nodes = fit_node_list(&current, &g.status.nodes, &mut ready);
            let condition = ready_condition(&ready, g.generation, &previous.conditions);
            let desired = NodeGroupStatus {
                observed_generation: g.generation,
                conditions: vec![condition],
                nodes,
                ..g.status.clone()
            };
            writes.push(Either::Left(self.write(
                current,
                previous,
                desired,
                "NodeGroup",
            )));
        }
        for c in &report.boot_configs {
            let Some(current) = inventory
                .boot_configs
                .get(&ObjectRef::new(&c.name).within(&c.namespace))
            else {
                continue;
            };
            let previous = current.status.clone().unwrap_or_default();
            let condition = ready_condition(&c.ready, c.generation, &previous.conditions);
            let desired = BootConfigStatus {
                observed_generation: c.generation,
                conditions: vec![condition],
                matched_nodes: i32::try_from(c.matched_nodes).unwrap_or(i32::MAX),
                message: c.message.clone(),
            };
            writes.push(Either::Right(self.write(
                current,
                previous,
                desired,
                "BootConfig",
            )));
        }
        let mut failures = 0;
        let mut patched = 0;
        let mut results = futures::stream::iter(writes).buffer_unordered(CONCURRENT_PATCHES);
        while let Some((kind, result)) = results.next().await {
            let outcome = match result {
                Ok(Written::Patched) => {
                    patched += 1;
                    "patched"
                }
                Ok(Written::Unchanged) => "unchanged",
                Err(()) => {
                    failures += 1;
                    "error"
                }
            };
            self.metrics
                .reconciles
                .get_or_create(&ReconcileLabels { kind, outcome })
                .inc();
        }
        self.metrics
            .reconcile_seconds
            .observe(started.elapsed().as_secs_f64());
        if patched > 0 || failures > 0 {
            tracing::info!(
                patched,
                failures,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "status written"
            );
        }
        failures
    }

    async fn write<K, S>(
        &self,
        current: Arc<K>,
        previous: S,
        desired: S,
        kind: &'static str,
    ) -> (&'static str, Result<Written, ()>)
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
        S: StatusConditions + PartialEq + serde::Serialize,
    {
        if previous == desired {
            return (kind, Ok(Written::Unchanged));
        }
        let meta = current.meta();
        let name = meta.name.clone().unwrap_or_default();
        let namespace = meta.namespace.clone().unwrap_or_default();
        let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        let patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": desired,
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        if let Err(e) = api
            .patch_status(&name, &params, &Patch::Apply(&patch))
            .await
        {
            tracing::warn!(kind, %namespace, %name, error = %e, "status write failed; will retry");
            return (kind, Err(()));
        }
        if let Some(next) = desired.ready()
            && let Some(event) = event_for(previous.ready(), next)
        {
            let reference = current.object_ref(&());
            if let Err(e) = self.recorder.publish(&event, &reference).await {
                tracing::warn!(kind, %namespace, %name, error = %e, "event could not be published");
            }
        }
        (kind, Ok(Written::Patched))
    }
}

/// The statuses that carry a Ready condition.
pub trait StatusConditions {
    fn ready(&self) -> Option<&Condition>;
}

impl StatusConditions for NodeGroupStatus {
    fn ready(&self) -> Option<&Condition> {
        previous_ready(&self.conditions)
    }
}

impl StatusConditions for BootConfigStatus {
    fn ready(&self) -> Option<&Condition> {
        previous_ready(&self.conditions)
    }
}
