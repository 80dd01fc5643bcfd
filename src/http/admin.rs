//! The admin listener: health, readiness, metrics, and what a node gets and why.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use nodeboot_core::explain::{ExplainError, explain};

use super::SharedSnapshot;
use super::problem::Problem;
use crate::metrics::{Metrics, RolloutLabels};
use crate::tracking::{TrackedReport, Tracker};

/// What `/readyz` reports: whether a first snapshot is in service, and whether the last
/// rebuild failed (the previous snapshot then stays in service).
#[derive(Debug, Default)]
pub struct Readiness {
    built: AtomicBool,
    failure: Mutex<Option<String>>,
}

impl Readiness {
    pub fn built(&self) {
        self.built.store(true, Ordering::Release);
        if let Ok(mut failure) = self.failure.lock() {
            *failure = None;
        }
    }

    pub fn failed(&self, why: String) {
        if let Ok(mut failure) = self.failure.lock() {
            *failure = Some(why);
        }
    }

    pub fn is_built(&self) -> bool {
        self.built.load(Ordering::Acquire)
    }

    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}

#[derive(Clone)]
pub struct AdminState {
    pub snapshot: SharedSnapshot,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub tracker: Arc<Tracker>,
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready once a snapshot is in service. A failed rebuild does not make a replica unready: every
/// replica would fail the same way on the same inputs, and taking them all out of the Service
/// would stop every boot. It is said in the body, and counted in metrics.
pub async fn readyz(State(state): State<AdminState>) -> Response {
    if state.readiness.is_built() {
        match state.readiness.failure() {
            None => "ok\n".into_response(),
            Some(why) => format!(
                "ok, degraded: the last rebuild failed ({why}); the previous snapshot is served\n"
            )
            .into_response(),
        }
    } else {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first inventory has not been loaded yet",
        )
        .into_response()
    }
}

pub async fn metrics(State(state): State<AdminState>) -> Response {
    let snapshot = state.snapshot.load();
    state.metrics.set_phase_counts(snapshot.counts);
    set_rollout_metrics(&state.metrics, &state.tracker.rollouts(&snapshot));
    match state.metrics.encode() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be encoded",
        )
        .into_response(),
    }
}

pub async fn node(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    let snapshot = state.snapshot.load();
    match explain(&snapshot, &id) {
        Ok(report) => {
            Json(TrackedReport::new(report, &snapshot, &state.tracker, &id)).into_response()
        }
        Err(e @ ExplainError::NotFound(_)) => Problem::not_found(e.to_string()).into_response(),
        Err(e @ ExplainError::Ambiguous(_)) => {
            Problem::new(StatusCode::CONFLICT, e.to_string()).into_response()
        }
    }
}

/// `GET /discovered`: unknown MACs that asked, most recent first.
pub async fn discovered(State(state): State<AdminState>) -> Response {
    let snapshot = state.snapshot.load();
    Json(state.tracker.discovered(&snapshot)).into_response()
}

/// The rollout gauges: replaced whole, so a BootConfig's old generations drop out.
fn set_rollout_metrics(metrics: &Metrics, rollouts: &[crate::tracking::ConfigRollout]) {
    metrics.rollout_nodes.clear();
    for r in rollouts {
        for (state, n) in [("served", r.served), ("booted", r.booted)] {
            metrics
                .rollout_nodes
                .get_or_create(&RolloutLabels {
                    namespace: r.namespace.clone(),
                    bootconfig: r.name.clone(),
                    generation: r.generation.to_string(),
                    state,
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

pub async fn not_found(uri: axum::http::Uri) -> Response {
    Problem::not_found(format!(
        "no such endpoint: {}; see /healthz, /readyz, /metrics, /nodes/<name or MAC> and /discovered",
        uri.path()
    ))
    .into_response()
}
