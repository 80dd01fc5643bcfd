//! What NodeGroup and BootConfig status should say: every reason, message and count, worded
//! here and nowhere else. The operator adds only what needs the cluster (timestamps of
//! transitions, the write itself); `nodeboot serve` logs the same words.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::compile::ConfigState;
use crate::crd::{
    BootConfigStatus, LastGood, NodeGroup, NodeGroupStatus, NodePhase, NodeStatus, ObjectId,
    SpecError,
};
use crate::resolve::{ConfigSummary, ResolvedNode};

/// A Ready condition in plain terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyCondition {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupReport {
    pub id: ObjectId,
    pub generation: Option<i64>,
    pub ready: ReadyCondition,
    /// Counts and per-node entries; the condition is `ready`.
    pub status: NodeGroupStatus,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigReport {
    pub id: ObjectId,
    pub generation: Option<i64>,
    pub ready: ReadyCondition,
    pub matched_nodes: u32,
    pub message: String,
    /// BootConfigs it ties with somewhere: worth an event.
    pub tied_with: Vec<String>,
    /// The served version, for status to keep across restarts.
    pub last_good: Option<LastGood>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusReport {
    pub node_groups: Vec<GroupReport>,
    pub boot_configs: Vec<ConfigReport>,
}

/// How many conflicting nodes a NodeGroup's condition names.
const NAMED_CONFLICTS: usize = 3;

/// The report of a valid NodeGroup whose resolved (and rendered) nodes are `nodes`.
pub fn group_report<'a>(
    group: &NodeGroup,
    nodes: impl Iterator<Item = &'a ResolvedNode>,
) -> GroupReport {
    let mut status = NodeGroupStatus {
        observed_generation: group.metadata.generation,
        ..Default::default()
    };
    for node in nodes {
        let phase = node.outcome.phase();
        status.node_count += 1;
        match phase {
            NodePhase::Assigned => status.assigned_count += 1,
            NodePhase::Conflict => status.conflict_count += 1,
            NodePhase::Unassigned => {}
        }
        status.nodes.push(NodeStatus {
            name: node.name().to_owned(),
            phase,
            boot_config: node.outcome.config().map(|c| c.id.name.clone()),
            message: node.outcome.message().to_owned(),
            ..Default::default()
        });
    }
    let ready = if status.conflict_count > 0 {
        // Name what conflicts, for a few nodes: the event says it without a look at status.
        let in_conflict: Vec<String> = status
            .nodes
            .iter()
            .filter(|n| n.phase == NodePhase::Conflict)
            .take(NAMED_CONFLICTS)
            .map(|n| format!("{}: {}", n.name, n.message))
            .collect();
        let more = status.conflict_count as usize - in_conflict.len();
        let more = if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        };
        ReadyCondition {
            ready: false,
            reason: "Conflict",
            message: format!(
                "{} of {} nodes are in conflict and get no boot config: {}{more}; see status.nodes",
                status.conflict_count,
                status.node_count,
                in_conflict.join("; ")
            ),
        }
    } else {
        ReadyCondition {
            ready: true,
            reason: "Resolved",
            message: format!(
                "{} of {} nodes assigned",
                status.assigned_count, status.node_count
            ),
        }
    };
    GroupReport {
        id: ObjectId::of(&group.metadata),
        generation: group.metadata.generation,
        ready,
        status,
    }
}

/// The report of a NodeGroup the schema refuses: none of its nodes is served.
pub fn invalid_group_report(group: &NodeGroup, error: &SpecError) -> GroupReport {
    GroupReport {
        id: ObjectId::of(&group.metadata),
        generation: group.metadata.generation,
        ready: ReadyCondition {
            ready: false,
            reason: "InvalidSpec",
            message: format!("{error}; none of this group's nodes are served"),
        },
        status: NodeGroupStatus::default(),
    }
}

/// The report of a BootConfig: how it compiled, what the resolution gave it, and the nodes it
/// failed to render for (`"node: error"` each).
pub fn config_report(
    state: &ConfigState,
    summary: &ConfigSummary,
    render_failures: &[String],
) -> ConfigReport {
    let mut notes = Vec::new();
    if summary.outranked > 0 {
        notes.push(format!(
            "outranked by a higher priority on {} nodes",
            summary.outranked
        ));
    }
    if !summary.tied_with.is_empty() {
        notes.push(format!(
            "ties with {} on {} nodes, which boot nothing until the tie is broken",
            summary.tied_with.join(", "),
            summary.tied_nodes
        ));
    }
    let ready = match (&state.error, &state.served) {
        (Some(err), Some(served)) => ReadyCondition {
            ready: false,
            reason: "InvalidSpec",
            message: format!(
                "{err}; still serving generation {}",
                served
                    .generation
                    .map_or_else(|| "unknown".to_owned(), |g| g.to_string())
            ),
        },
        (Some(err), None) => ReadyCondition {
            ready: false,
            reason: "InvalidSpec",
            message: format!(
                "{err}; no earlier version to serve, so this BootConfig matches no node"
            ),
        },
        (None, _) if !render_failures.is_empty() => ReadyCondition {
            ready: false,
            reason: "RenderFailed",
            message: format!(
                "failed to render for {} nodes, which boot nothing: {}",
                render_failures.len(),
                render_failures
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        },
        (None, _) if !summary.tied_with.is_empty() => ReadyCondition {
            ready: false,
            reason: "Conflict",
            message: notes.join("; "),
        },
        (None, _) => ReadyCondition {
            ready: true,
            reason: "Resolved",
            message: format!("boots {} nodes", summary.assigned),
        },
    };
    ConfigReport {
        id: state.id.clone(),
        generation: state.generation,
        ready,
        // Nodes it failed to render for boot nothing: not counted as booted by it.
        matched_nodes: summary
            .assigned
            .saturating_sub(u32::try_from(render_failures.len()).unwrap_or(u32::MAX)),
        message: notes.join("; "),
        tied_with: summary.tied_with.clone(),
        last_good: state.served.as_ref().and_then(|c| last_good(c)),
    }
}

/// A spec this large is not copied into status: with the object's own spec it would near
/// etcd's object limit. Such a BootConfig is served at its last good version only until the
/// process restarts.
const MAX_LAST_GOOD_BYTES: usize = 512 * 1024;

fn last_good(served: &crate::compile::CompiledBootConfig) -> Option<LastGood> {
    let spec = serde_json::to_value(&served.spec).ok()?;
    (json_len(&spec) <= MAX_LAST_GOOD_BYTES).then_some(LastGood {
        generation: served.generation?,
        spec,
    })
}

/// etcd refuses objects over 1.5 MiB. A 5000-node NodeGroup's spec and its server-side-apply
/// managedFields can take most of that, so the per-node list in status must fit what is left.
const OBJECT_BUDGET_BYTES: usize = 1_400_000;

/// JSON length of a value, for the size budget.
fn json_len(value: &impl serde::Serialize) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

/// The per-node status list that fits the object `current`: every node when it fits; else the
/// nodes that are not Assigned (the ones someone must look at), as many as fit, and the
/// condition says so.
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

/// The Ready condition to write, keeping the transition time when its status did not change,
/// as Kubernetes conventions ask.
fn ready_condition(
    ready: &ReadyCondition,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Condition {
    let status = if ready.ready { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: ready.reason.into(),
        message: ready.message.clone(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// The whole status `current` should show, as of `now`.
/// The whole status a NodeGroup should show, as of `now`, given its `previous` status.
pub fn node_group_status(
    report: &GroupReport,
    current: &NodeGroup,
    previous: Option<&NodeGroupStatus>,
    now: &Time,
) -> NodeGroupStatus {
    let previous = previous.map(|s| s.conditions.as_slice());
    let mut ready = report.ready.clone();
    let nodes = fit_node_list(current, &report.status.nodes, &mut ready);
    NodeGroupStatus {
        observed_generation: report.generation,
        conditions: vec![ready_condition(
            &ready,
            report.generation,
            previous.unwrap_or_default(),
            now,
        )],
        nodes,
        ..report.status.clone()
    }
}

/// The whole status a BootConfig should show, as of `now`, given its `previous` status.
pub fn boot_config_status(
    report: &ConfigReport,
    previous: Option<&BootConfigStatus>,
    now: &Time,
) -> BootConfigStatus {
    let conditions = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    BootConfigStatus {
        observed_generation: report.generation,
        conditions: vec![ready_condition(
            &report.ready,
            report.generation,
            conditions,
            now,
        )],
        matched_nodes: i32::try_from(report.matched_nodes).unwrap_or(i32::MAX),
        message: report.message.clone(),
        last_good: report.last_good.clone(),
        // Another field manager (the rollout writer) owns these; left out of this apply.
        rollout: None,
        discovered: Vec::new(),
    }
}

/// The Ready condition among `conditions`.
pub fn ready_of(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == "Ready")
}

/// An event worth publishing about a status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// The Events API takes at most 1 kB of note.
const MAX_EVENT_NOTE_BYTES: usize = 1000;

/// An event is due when Ready turns False or its reason or message changes while False, and
/// when it turns True again.
pub fn event_for(previous: Option<&Condition>, next: &Condition) -> Option<StatusEvent> {
    let changed = previous.is_none_or(|p| {
        p.status != next.status || p.reason != next.reason || p.message != next.message
    });
    if !changed {
        return None;
    }
    let was_ready = previous.is_none_or(|p| p.status == "True");
    let (warning, reason) = match (next.status.as_str(), was_ready) {
        ("False", _) => (true, next.reason.clone()),
        ("True", false) => (false, "Resolved".to_owned()),
        _ => return None,
    };
    let mut note = next.message.clone();
    if note.len() > MAX_EVENT_NOTE_BYTES {
        let mut cut = MAX_EVENT_NOTE_BYTES;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    Some(StatusEvent {
        warning,
        reason,
        note,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::compile::CompiledBootConfig;
    use crate::crd::{BootConfigSpec, NodeGroupSpec, NodeSpec};
    use crate::secrets::Secrets;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn state(error: Option<&str>, served_generation: Option<i64>) -> ConfigState {
        let id = ObjectId {
            namespace: "hpc".into(),
            name: "compute".into(),
        };
        let spec = BootConfigSpec {
            kernel: "http://i/k".into(),
            ..Default::default()
        };
        let served = served_generation.map(|g| {
            Arc::new(CompiledBootConfig::compile(&id, Some(g), &spec, &Secrets::default()).unwrap())
        });
        ConfigState {
            id,
            generation: Some(3),
            served,
            error: error.map(|e| {
                crate::compile::CompileError::Spec(SpecError {
                    field: "spec.kernel".into(),
                    message: e.into(),
                })
            }),
        }
    }

    #[test]
    fn boot_config_wording() {
        let summary = ConfigSummary {
            assigned: 4,
            outranked: 2,
            ..Default::default()
        };
        let r = config_report(&state(None, Some(3)), &summary, &[]);
        assert_eq!(
            r.ready,
            ReadyCondition {
                ready: true,
                reason: "Resolved",
                message: "boots 4 nodes".into()
            }
        );
        assert_eq!(r.message, "outranked by a higher priority on 2 nodes");

        let r = config_report(&state(Some("bad"), Some(2)), &summary, &[]);
        assert_eq!(r.ready.reason, "InvalidSpec");
        assert_eq!(
            r.ready.message,
            "spec.kernel: bad; still serving generation 2"
        );
        let r = config_report(&state(Some("bad"), None), &summary, &[]);
        assert!(
            r.ready
                .message
                .ends_with("so this BootConfig matches no node")
        );

        let failures: Vec<String> = (0..5).map(|i| format!("n{i}: oops")).collect();
        let r = config_report(&state(None, Some(3)), &summary, &failures);
        assert_eq!(r.ready.reason, "RenderFailed");
        assert_eq!(
            r.ready.message,
            "failed to render for 5 nodes, which boot nothing: n0: oops; n1: oops; n2: oops"
        );

        let tie = ConfigSummary {
            tied_nodes: 7,
            tied_with: vec!["gpu".into()],
            ..Default::default()
        };
        let r = config_report(&state(None, Some(3)), &tie, &[]);
        assert_eq!(r.ready.reason, "Conflict");
        assert_eq!(
            r.ready.message,
            "ties with gpu on 7 nodes, which boot nothing until the tie is broken"
        );
    }

    fn group(nodes: usize) -> NodeGroup {
        let mut g = NodeGroup::new(
            "cab",
            NodeGroupSpec {
                nodes: (0..nodes)
                    .map(|i| NodeSpec {
                        name: format!("x1000c0s{i}b0n0"),
                        macs: vec![format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256)],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        );
        g.metadata.namespace = Some("hpc".into());
        g.metadata.generation = Some(1);
        g
    }

    #[test]
    fn transition_time_is_kept_while_status_holds() {
        let then = time("2026-01-01T00:00:00Z");
        let now = time("2026-02-02T00:00:00Z");
        let report = ConfigReport {
            id: ObjectId::default(),
            generation: Some(1),
            ready: ReadyCondition {
                ready: true,
                reason: "Resolved",
                message: "boots 1 nodes".into(),
            },
            matched_nodes: 1,
            message: String::new(),
            tied_with: vec![],
            last_good: None,
        };
        let first = boot_config_status(&report, None, &then);
        assert_eq!(first.conditions[0].last_transition_time, then);
        let again = boot_config_status(&report, Some(&first), &now);
        assert_eq!(again.conditions[0].last_transition_time, then);
        let mut broken = report.clone();
        broken.ready.ready = false;
        let flipped = boot_config_status(&broken, Some(&again), &now);
        assert_eq!(flipped.conditions[0].last_transition_time, now);
        assert_eq!(flipped.conditions[0].status, "False");
    }

    #[test]
    fn a_group_too_large_for_etcd_lists_only_nodes_that_need_a_look() {
        let g = group(5000);
        let nodes: Vec<NodeStatus> = g
            .spec
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeStatus {
                name: n.name.clone(),
                phase: if i % 1000 == 0 {
                    NodePhase::Conflict
                } else {
                    NodePhase::Assigned
                },
                boot_config: Some("compute".into()),
                message: "x".repeat(300),
                ..Default::default()
            })
            .collect();
        let report = GroupReport {
            id: ObjectId::of(&g.metadata),
            generation: Some(1),
            ready: ReadyCondition {
                ready: false,
                reason: "Conflict",
                message: "5 of 5000 nodes are in conflict".into(),
            },
            status: NodeGroupStatus {
                nodes,
                ..Default::default()
            },
        };
        let status = node_group_status(
            &report,
            &g,
            g.status.as_ref(),
            &time("2026-01-01T00:00:00Z"),
        );
        assert_eq!(status.nodes.len(), 5);
        assert!(status.nodes.iter().all(|n| n.phase == NodePhase::Conflict));
        assert!(
            status.conditions[0]
                .message
                .contains("status.nodes lists 5 of the 5 nodes that are not Assigned"),
            "{}",
            status.conditions[0].message
        );
        // A small group lists every node, and the message is left alone.
        let small = group(3);
        let mut report = report;
        report.status.nodes.truncate(3);
        let status = node_group_status(
            &report,
            &small,
            small.status.as_ref(),
            &time("2026-01-01T00:00:00Z"),
        );
        assert_eq!(status.nodes.len(), 3);
        assert_eq!(
            status.conditions[0].message,
            "5 of 5000 nodes are in conflict"
        );
    }

    #[test]
    fn events_on_turning_unready_changing_while_unready_and_recovering() {
        let cond = |status: &str, reason: &str, message: &str| Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: None,
            last_transition_time: time("2026-01-01T00:00:00Z"),
        };
        let ok = cond("True", "Resolved", "boots 1 nodes");
        let bad = cond("False", "Conflict", "tie");
        assert_eq!(event_for(Some(&ok), &ok), None);
        assert_eq!(event_for(None, &ok), None);
        let e = event_for(Some(&ok), &bad).unwrap();
        assert!(e.warning);
        assert_eq!(e.reason, "Conflict");
        assert_eq!(e.note, "tie");
        assert_eq!(event_for(Some(&bad), &bad), None);
        assert!(event_for(Some(&bad), &cond("False", "Conflict", "other tie")).is_some());
        let back = event_for(Some(&bad), &ok).unwrap();
        assert!(!back.warning);
        assert_eq!(back.reason, "Resolved");
        let long = cond("False", "Conflict", &"é".repeat(800));
        assert!(event_for(Some(&ok), &long).unwrap().note.len() <= MAX_EVENT_NOTE_BYTES);
    }
}
