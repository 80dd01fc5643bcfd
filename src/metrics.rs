//! Prometheus metrics, all named `nodeboot_*`. Handles for the request path are created once,
//! so counting a request is an atomic add, not a map lookup.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use nodeboot_core::snapshot::PhaseCounts;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Endpoint {
    bootstrap,
    bootscript,
    bootparameters,
    cloud_init,
    phone_home,
    endpoint_history,
    other,
    /// `/grub.cfg`
    grub_bootstrap,
    /// `/boot/v1/grub.cfg`
    grub_config,
    /// `/firmware/{file}` (`--firmware-dir`)
    firmware,
}

impl Endpoint {
    const ALL: [Endpoint; 10] = [
        Endpoint::bootstrap,
        Endpoint::bootscript,
        Endpoint::bootparameters,
        Endpoint::cloud_init,
        Endpoint::phone_home,
        Endpoint::endpoint_history,
        Endpoint::other,
        Endpoint::grub_bootstrap,
        Endpoint::grub_config,
        Endpoint::firmware,
    ];
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// A boot script or document was served.
    ok,
    /// The node was told to wait and retry (unknown, unassigned, conflict).
    wait,
    bad_request,
    forbidden,
    not_found,
    error,
}

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::ok,
        Outcome::wait,
        Outcome::bad_request,
        Outcome::forbidden,
        Outcome::not_found,
        Outcome::error,
    ];
}

/// The kind of object an admission review was about (`other` only if the webhook
/// configuration's rules name more than nodeboot checks).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum AdmissionKind {
    BootConfig,
    NodeGroup,
    other,
}

impl AdmissionKind {
    const ALL: [AdmissionKind; 3] = [
        AdmissionKind::BootConfig,
        AdmissionKind::NodeGroup,
        AdmissionKind::other,
    ];

    /// Bounded to three values whatever the request names.
    pub fn of(kind: &str) -> AdmissionKind {
        match kind {
            "BootConfig" => AdmissionKind::BootConfig,
            "NodeGroup" => AdmissionKind::NodeGroup,
            _ => AdmissionKind::other,
        }
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum AdmissionResult {
    allowed,
    /// The object is broken: refused with what to fix.
    refused,
    /// The webhook could not judge (no AdmissionReview, object unreadable, inventory not
    /// loaded yet); the API server was told no, or got a 400.
    error,
}

impl AdmissionResult {
    const ALL: [AdmissionResult; 3] = [
        AdmissionResult::allowed,
        AdmissionResult::refused,
        AdmissionResult::error,
    ];
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdmissionLabels {
    kind: AdmissionKind,
    result: AdmissionResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: Endpoint,
    outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: Endpoint,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

/// A BootConfig generation's rollout, one gauge per state (`served`, `booted`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabels {
    pub namespace: String,
    pub bootconfig: String,
    pub generation: String,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Vec<Counter>,
    latency: Vec<Histogram>,
    nodes: Family<PhaseLabels, Gauge>,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_seconds: Histogram,
    pub rebuilds: Counter,
    pub rebuild_seconds: Histogram,
    pub rebuild_failures: Counter,
    pub connections_open: Gauge,
    pub connections_refused: Counter,
    pub accept_errors: Counter,
    pub logs_suppressed: Counter,
    /// Nodes that fetched (`served`) and confirmed (`booted`) a BootConfig generation.
    pub rollout_nodes: Family<RolloutLabels, Gauge>,
    admission_reviews: Family<AdmissionLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("nodeboot");
        let requests_family = Family::<RequestLabels, Counter>::default();
        let latency_family = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            // 25 µs to ~3 s: boot answers are expected in well under a millisecond.
            Histogram::new(exponential_buckets(0.000_025, 2.5, 14))
        });
        let nodes = Family::<PhaseLabels, Gauge>::default();
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let rebuilds = Counter::default();
        let rebuild_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let rebuild_failures = Counter::default();
        let connections_open = Gauge::default();
        let connections_refused = Counter::default();
        let accept_errors = Counter::default();
        let logs_suppressed = Counter::default();
        let rollout_nodes = Family::<RolloutLabels, Gauge>::default();
        let admission_reviews = Family::<AdmissionLabels, Counter>::default();
        // Every series from the start, at 0: a rate over a series that appears late is wrong.
        for kind in AdmissionKind::ALL {
            for result in AdmissionResult::ALL {
                let _ = admission_reviews.get_or_create(&AdmissionLabels { kind, result });
            }
        }

        let mut requests = Vec::new();
        for e in Endpoint::ALL {
            for o in Outcome::ALL {
                requests.push(
                    requests_family
                        .get_or_create(&RequestLabels {
                            endpoint: e,
                            outcome: o,
                        })
                        .clone(),
                );
            }
        }
        let latency = Endpoint::ALL
            .iter()
            .map(|e| {
                latency_family
                    .get_or_create(&EndpointLabels { endpoint: *e })
                    .clone()
            })
            .collect();

        registry.register(
            "http_requests",
            "Boot listener requests by endpoint and outcome",
            requests_family,
        );
        registry.register(
            "http_request_duration_seconds",
            "Boot listener request latency by endpoint",
            latency_family,
        );
        registry.register("nodes", "Known nodes by phase", nodes.clone());
        registry.register(
            "reconciles",
            "Controller reconciles by resource kind and outcome",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Controller reconcile duration",
            reconcile_seconds.clone(),
        );
        registry.register(
            "snapshot_rebuilds",
            "Rebuilds of the serving snapshot (resolution and rendering)",
            rebuilds.clone(),
        );
        registry.register(
            "snapshot_rebuild_duration_seconds",
            "Duration of serving snapshot rebuilds",
            rebuild_seconds.clone(),
        );
        registry.register(
            "snapshot_rebuild_failures",
            "Rebuilds that failed (a panic); the last snapshot stays in service",
            rebuild_failures.clone(),
        );
        registry.register(
            "connections_open",
            "Open connections on the boot and admin listeners",
            connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at once because the listener was at --max-connections",
            connections_refused.clone(),
        );
        registry.register(
            "accept_errors",
            "Failed accepts (out of file descriptors, say); the listener backs off",
            accept_errors.clone(),
        );
        registry.register(
            "log_lines_suppressed",
            "Repeated warnings not logged (at most one line per second per kind)",
            logs_suppressed.clone(),
        );
        registry.register(
            "rollout_nodes",
            "Nodes of a BootConfig that fetched its served generation's script (state=served) and phoned home after (state=booted), from every replica's records",
            rollout_nodes.clone(),
        );
        registry.register(
            "admission_reviews",
            "Admission reviews answered by the webhook, by object kind and result",
            admission_reviews.clone(),
        );
        Arc::new(Metrics {
            registry,
            requests,
            latency,
            nodes,
            reconciles,
            reconcile_seconds,
            rebuilds,
            rebuild_seconds,
            rebuild_failures,
            connections_open,
            connections_refused,
            accept_errors,
            logs_suppressed,
            rollout_nodes,
            admission_reviews,
        })
    }

    pub fn observe_request(&self, endpoint: Endpoint, outcome: Outcome, elapsed: Duration) {
        let e = Endpoint::ALL
            .iter()
            .position(|x| *x == endpoint)
            .unwrap_or(0);
        let o = Outcome::ALL.iter().position(|x| *x == outcome).unwrap_or(0);
        if let Some(c) = self.requests.get(e * Outcome::ALL.len() + o) {
            c.inc();
        }
        if let Some(h) = self.latency.get(e) {
            h.observe(elapsed.as_secs_f64());
        }
    }

    pub fn observe_admission(&self, kind: AdmissionKind, result: AdmissionResult) {
        self.admission_reviews
            .get_or_create(&AdmissionLabels { kind, result })
            .inc();
    }

    pub fn set_phase_counts(&self, counts: PhaseCounts) {
        for (phase, n) in [
            ("Assigned", counts.assigned),
            ("Unassigned", counts.unassigned),
            ("Conflict", counts.conflict),
        ] {
            self.nodes
                .get_or_create(&PhaseLabels { phase })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn observe_rebuild(&self, elapsed: Duration) {
        self.rebuilds.inc();
        self.rebuild_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_reviews_are_counted_by_bounded_kind_and_result() {
        let metrics = Metrics::new();
        let text = metrics.encode().unwrap();
        // Every series exists from the start.
        assert!(
            text.contains(
                "nodeboot_admission_reviews_total{kind=\"NodeGroup\",result=\"error\"} 0"
            )
        );
        metrics.observe_admission(AdmissionKind::of("BootConfig"), AdmissionResult::refused);
        metrics.observe_admission(AdmissionKind::of("Pod"), AdmissionResult::error);
        let text = metrics.encode().unwrap();
        assert!(text.contains(
            "nodeboot_admission_reviews_total{kind=\"BootConfig\",result=\"refused\"} 1"
        ));
        assert!(
            text.contains("nodeboot_admission_reviews_total{kind=\"other\",result=\"error\"} 1")
        );
        assert!(!text.contains("Pod"));
    }
}
