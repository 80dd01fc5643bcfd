//! Writing the runtime's status reports into NodeGroup and BootConfig status, by server-side
//! apply under one field manager, and events when a resource turns unready or recovers. The
//! words and the decisions (what status, which event) are the core's `report` module's; this
//! is only the I/O. Only statuses that differ from what the cluster already shows are written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use futures::future::Either;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource};
use nodeboot_core::crd::{BootConfigStatus, NodeGroupStatus};
use nodeboot_core::report::{
    StatusReport, boot_config_status, event_for, node_group_status, ready_of,
};
use serde_json::json;

use super::inventory::Inventory;
use crate::metrics::{Metrics, ReconcileLabels};
use crate::tracking::Tracker;

pub const FIELD_MANAGER: &str = "nodeboot";
/// Status patches in flight at once: enough to catch up fast, few enough to be a polite client.
const CONCURRENT_PATCHES: usize = 16;

pub struct StatusWriter {
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    /// Boot records: each node's served and booted generation in its NodeGroup's status.
    tracker: Arc<Tracker>,
    /// What this writer last applied to each object. The inventory's watch may not have
    /// delivered that write yet, and applying the same status again is not free: for a
    /// NodeGroup of 5,000 nodes the API server spends about a second on each status write.
    applied: Mutex<HashMap<ObjectKey, Applied>>,
}

/// Kind, namespace, name.
type ObjectKey = (&'static str, String, String);

struct Applied {
    /// The status as sent.
    status: serde_json::Value,
    /// The object's resourceVersion before the write: while the inventory still shows it, the
    /// inventory has not seen the write, and the status the object has is `status`.
    before: Option<String>,
}

enum Written {
    Patched,
    Unchanged,
}

impl StatusWriter {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        tracker: Arc<Tracker>,
        instance: String,
    ) -> StatusWriter {
        let reporter = Reporter {
            controller: "nodeboot".into(),
            instance: Some(instance),
        };
        StatusWriter {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            tracker,
            applied: Mutex::new(HashMap::new()),
        }
    }

    /// Drops what was applied to objects the report no longer has (deleted ones).
    fn forget_deleted(&self, report: &StatusReport) {
        let current: std::collections::HashSet<ObjectKey> = report
            .node_groups
            .iter()
            .map(|g| ("NodeGroup", g.id.namespace.clone(), g.id.name.clone()))
            .chain(
                report
                    .boot_configs
                    .iter()
                    .map(|c| ("BootConfig", c.id.namespace.clone(), c.id.name.clone())),
            )
            .collect();
        self.applied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|key, _| current.contains(key));
    }

    /// The status this writer applied to `key`, while the inventory's copy (at `version`) is
    /// still from before that write.
    fn own_write_not_yet_seen<S: serde::de::DeserializeOwned>(
        &self,
        key: &ObjectKey,
        version: Option<&String>,
    ) -> Option<S> {
        let applied = self
            .applied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let last = applied.get(key)?;
        if version.is_none() || version != last.before.as_ref() {
            return None;
        }
        serde_json::from_value(last.status.clone()).ok()
    }

    /// Writes every status that differs from `report`; returns how many writes failed.
    pub async fn write_all(&self, report: &StatusReport, inventory: &Inventory) -> usize {
        let started = Instant::now();
        let now = Time(Timestamp::now());
        self.forget_deleted(report);
        let mut writes = Vec::new();
        for g in &report.node_groups {
            let Some(current) = inventory
                .node_groups
                .get(&ObjectRef::new(&g.id.name).within(&g.id.namespace))
            else {
                continue;
            };
            let key = ("NodeGroup", g.id.namespace.clone(), g.id.name.clone());
            let previous = self
                .own_write_not_yet_seen(&key, current.metadata.resource_version.as_ref())
                .or_else(|| current.status.clone())
                .unwrap_or_default();
            let g = &crate::tracking::with_generations(g, &self.tracker);
            let desired = node_group_status(g, &current, Some(&previous), &now);
            writes.push(Either::Left(self.write(
                key,
                current,
                previous,
                desired,
                "NodeGroup",
            )));
        }
        for c in &report.boot_configs {
            let Some(current) = inventory
                .boot_configs
                .get(&ObjectRef::new(&c.id.name).within(&c.id.namespace))
            else {
                continue;
            };
            let key = ("BootConfig", c.id.namespace.clone(), c.id.name.clone());
            let mut previous = self
                .own_write_not_yet_seen(&key, current.metadata.resource_version.as_ref())
                .or_else(|| current.status.clone())
                .unwrap_or_default();
            // The rollout writer's fields (its own field manager): not this apply's to compare.
            previous.rollout = None;
            previous.discovered.clear();
            let desired = boot_config_status(c, Some(&previous), &now);
            writes.push(Either::Right(self.write(
                key,
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
        key: ObjectKey,
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
        let sent = serde_json::to_value(&desired).unwrap_or_default();
        if let Err(e) = api
            .patch_status(&name, &params, &Patch::Apply(&patch))
            .await
        {
            tracing::warn!(kind, %namespace, %name, error = %e, "status write failed; will retry");
            return (kind, Err(()));
        }
        self.applied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(
                key,
                Applied {
                    status: sent,
                    before: meta.resource_version.clone(),
                },
            );
        if let Some(next) = desired.ready()
            && let Some(event) = event_for(previous.ready(), next)
        {
            let event = Event {
                type_: if event.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: event.reason,
                note: Some(event.note),
                action: "Resolve".into(),
                secondary: None,
            };
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
        ready_of(&self.conditions)
    }
}

impl StatusConditions for BootConfigStatus {
    fn ready(&self) -> Option<&Condition> {
        ready_of(&self.conditions)
    }
}
