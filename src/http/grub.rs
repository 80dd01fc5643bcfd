//! GRUB's two endpoints: `/grub.cfg`, the bootstrap a site's netboot GRUB loads, and
//! `/boot/v1/grub.cfg`, a node's own config (same query and identity rules as the iPXE
//! bootscript). As for iPXE, `Snapshot::answer` decides; the configs were rendered ahead.
//! Every answer a node can act on is 200: GRUB understands no status but 200, 206 and 404.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query as QueryParams, State};
use axum::response::Response;
use nodeboot_core::snapshot::Decision;

use super::boot::{BootQuery, BootState, parse_query, respond, text, waiting, warn_about};

pub async fn bootstrap(State(state): State<BootState>) -> Response {
    text(state.grub_bootstrap.clone())
}

pub async fn config(
    State(state): State<BootState>,
    query: Result<QueryParams<BootQuery>, QueryRejection>,
) -> Response {
    respond((|| {
        let (q, query) = parse_query(query)?;
        let snapshot = state.snapshot.load();
        let answer = snapshot.answer(&query);
        warn_about(&state, &q, &answer.subject);
        let decision = answer.decision();
        let body = text(answer.grub_config_for(&decision));
        Ok(match decision {
            Decision::Boot(_) => body,
            Decision::Wait { .. } => waiting(body),
        })
    })())
}
