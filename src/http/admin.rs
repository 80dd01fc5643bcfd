//! The admin listener: health, readiness, metrics, and what a node gets and why.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use nodeboot_core::explain::{ExplainError, explain};

use super::SharedSnapshot;
use super::problem::Problem;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AdminState {
    pub snapshot: SharedSnapshot,
    pub metrics: Arc<Metrics>,
    /// Set once the first complete state has been loaded (caches synced, manifests read).
    pub ready: Arc<AtomicBool>,
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<AdminState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        "ok\n".into_response()
    } else {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first inventory has not been loaded yet",
        )
        .into_response()
    }
}

pub async fn metrics(State(state): State<AdminState>) -> Response {
    state.metrics.set_phase_counts(state.snapshot.load().counts);
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
        Ok(report) => Json(report).into_response(),
        Err(e @ ExplainError::NotFound(_)) => Problem::not_found(e.to_string()).into_response(),
        Err(e @ ExplainError::Ambiguous(_)) => {
            Problem::new(StatusCode::CONFLICT, e.to_string()).into_response()
        }
    }
}

pub async fn not_found(uri: axum::http::Uri) -> Response {
    Problem::not_found(format!(
        "no such endpoint: {}; see /healthz, /readyz, /metrics and /nodes/<name or MAC>",
        uri.path()
    ))
    .into_response()
}
