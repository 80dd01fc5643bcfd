use std::collections::HashMap;

use nodeboot_core::crd::ObjectId;
use nodeboot_core::report::StatusReport;

use super::Reports;

/// Logs what a status report says, once per change: `nodeboot serve` has no status to write,
/// so its log is where an operator reads what the cluster would show.
#[derive(Default)]
pub struct ReportLog {
    reported: HashMap<(&'static str, ObjectId), String>,
}

impl ReportLog {
    /// Logs every report `reports` carries until the runtime stops.
    pub async fn follow(mut self, mut reports: Reports) {
        while reports.changed().await.is_ok() {
            let report = reports.borrow_and_update().clone();
            if let Some(report) = report {
                self.log(&report);
            }
        }
    }

    fn log(&mut self, report: &StatusReport) {
        let mut now = HashMap::new();
        for g in &report.node_groups {
            let line = format!("{}: {}", g.ready.reason, g.ready.message);
            let key = ("NodeGroup", g.id.clone());
            if self.reported.get(&key) != Some(&line) {
                let (namespace, nodegroup) = (&g.id.namespace, &g.id.name);
                if g.ready.ready {
                    tracing::info!(%namespace, %nodegroup, nodes = g.status.node_count, assigned = g.status.assigned_count, "{}", g.ready.message);
                } else {
                    tracing::warn!(%namespace, %nodegroup, reason = g.ready.reason, "{}", g.ready.message);
                    for n in g
                        .status
                        .nodes
                        .iter()
                        .filter(|n| !n.message.is_empty())
                        .take(20)
                    {
                        tracing::warn!(%namespace, %nodegroup, node = %n.name, phase = n.phase.as_str(), "{}", n.message);
                    }
                }
            }
            now.insert(key, line);
        }
        for c in &report.boot_configs {
            let line = format!("{}: {}", c.ready.reason, c.ready.message);
            let key = ("BootConfig", c.id.clone());
            if self.reported.get(&key) != Some(&line) {
                let (namespace, bootconfig) = (&c.id.namespace, &c.id.name);
                if c.ready.ready {
                    tracing::info!(%namespace, %bootconfig, matched = c.matched_nodes, "{}", c.ready.message);
                } else {
                    tracing::warn!(%namespace, %bootconfig, reason = c.ready.reason, "{}", c.ready.message);
                }
            }
            now.insert(key, line);
        }
        self.reported = now;
    }
}
