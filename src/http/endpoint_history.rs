//! `GET /boot/v1/endpoint-history`: OpenCHAMI BSS's record of the last access per node and
//! endpoint, as a JSON array of `{name, endpoint, last_epoch}` (Unix seconds). BSS records
//! `bootscript` and `user-data`; nodeboot also has the other cloud-init documents and
//! `phone-home`. `name=` and `endpoint=` filter, as in BSS.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query as QueryParams, State};
use axum::response::{IntoResponse, Response};
use nodeboot_core::render::cloud_init::Document;
use serde::{Deserialize, Serialize};

use super::boot::BootState;
use super::problem::Problem;

#[derive(Debug, Default, Deserialize)]
pub struct HistoryQuery {
    name: Option<String>,
    endpoint: Option<String>,
}

#[derive(Debug, Serialize)]
struct EndpointAccess<'a> {
    name: &'a str,
    endpoint: &'a str,
    last_epoch: u64,
}

pub async fn endpoint_history(
    State(state): State<BootState>,
    query: Result<QueryParams<HistoryQuery>, QueryRejection>,
) -> Response {
    let QueryParams(q) = match query {
        Ok(q) => q,
        Err(e) => return Problem::bad_request(e.body_text()).into_response(),
    };
    let wanted = |v: &Option<String>, x: &str| {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .is_none_or(|s| s.split(',').any(|w| w == x))
    };
    let snapshot = state.snapshot.load();
    let mut rows = Vec::new();
    for node in snapshot.nodes() {
        let name = node.node.name();
        if !wanted(&q.name, name) {
            continue;
        }
        let record = state.tracker.record(&snapshot, node);
        let mut push = |endpoint: &'static str, time: u64| {
            if time > 0 && wanted(&q.endpoint, endpoint) {
                rows.push((name, endpoint, time));
            }
        };
        push("bootscript", record.boot.as_ref().map_or(0, |b| b.time));
        for (doc, time) in Document::ALL.iter().zip(record.documents) {
            push(doc.name(), time);
        }
        push("phone-home", record.phone_home.map_or(0, |p| p.time));
    }
    let body: Vec<EndpointAccess<'_>> = rows
        .into_iter()
        .map(|(name, endpoint, last_epoch)| EndpointAccess {
            name,
            endpoint,
            last_epoch,
        })
        .collect();
    Json(body).into_response()
}
