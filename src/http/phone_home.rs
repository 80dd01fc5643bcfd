//! `POST /cloud-init/{id}/phone-home`: what cloud-init's `phone_home` module sends once the
//! node is up (form fields `instance_id`, `hostname`, `fqdn`, public keys). It confirms the
//! boot: the node counts as booted for the generation it fetched before. Nothing of the body is
//! kept but the instance-id's generation; the keys are not stored.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use nodeboot_core::resolve::split_generation;
use nodeboot_core::snapshot::{Found, ServedNode, Snapshot};
use serde::Deserialize;

use super::boot::{BootState, text};
use super::log_limit::Warning;
use super::problem::Problem;
use super::requester::Requester;

/// The fields nodeboot reads; cloud-init sends more (public keys), which are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct PhoneHomeForm {
    instance_id: Option<String>,
}

enum Lookup<'s> {
    Node(&'s ServedNode),
    Ambiguous,
    Missing,
}

/// A node by name, MAC or meta-data instance-id.
fn find<'s>(state: &BootState, snapshot: &'s Snapshot, id: &str) -> Lookup<'s> {
    let found = match snapshot.by_name(id) {
        Found::Missing => id
            .parse()
            .map_or(Found::Missing, |mac| snapshot.by_mac(mac)),
        found => found,
    };
    match found {
        Found::Node(node) => Lookup::Node(node),
        Found::Ambiguous => Lookup::Ambiguous,
        Found::Missing => state
            .tracker
            .by_instance_id(snapshot, id)
            .map_or(Lookup::Missing, Lookup::Node),
    }
}

/// The generation a per-generation instance-id names, when the node's BootConfig gives those.
fn named_generation(node: &ServedNode, ids: [Option<&str>; 2]) -> Option<i64> {
    let config = node.node.outcome.config()?;
    let per_generation = config
        .spec
        .cloud_init
        .as_ref()
        .is_some_and(|c| c.instance_id_per_generation);
    if !per_generation {
        return None;
    }
    ids.into_iter()
        .flatten()
        .find_map(|id| split_generation(id).map(|(_, g)| g))
}

pub async fn phone_home(
    State(state): State<BootState>,
    Path(id): Path<String>,
    Requester(from): Requester,
    form: Result<Form<PhoneHomeForm>, FormRejection>,
) -> Response {
    let result = (|| {
        let Form(form) = form.map_err(|e| {
            Problem::bad_request(format!(
                "phone-home takes a form (application/x-www-form-urlencoded), as cloud-init's phone_home sends: {}",
                e.body_text()
            ))
        })?;
        let snapshot = state.snapshot.load();
        let mut lookup = find(&state, &snapshot, &id);
        // An older generation's instance-id (`<id>.g<N>`): the node is found by its base.
        if let (Lookup::Missing, Some((base, _))) = (&lookup, split_generation(&id)) {
            lookup = find(&state, &snapshot, base);
        }
        let node = match lookup {
            Lookup::Node(node) => node,
            Lookup::Ambiguous => {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    format!(
                        "'{}' is claimed by several nodes",
                        nodeboot_core::labels::shown(&id)
                    ),
                ));
            }
            Lookup::Missing => {
                return Err(Problem::not_found(format!(
                    "no node has name, MAC or instance-id '{}'",
                    nodeboot_core::labels::shown(&id)
                )));
            }
        };
        if let (Some(ip), true) = (node.node.ip, state.access.source_check)
            && nodeboot_core::snapshot::canonical_ip(ip) != from
        {
            state.warn(Warning::WrongSource, |suppressed| {
                tracing::warn!(node = %node.node.name(), %from, suppressed, "phone-home from an address that is not the node's");
            });
            return Err(Problem::forbidden(format!(
                "node {} phones home only from its own address; this request came from {from}",
                node.node.name()
            )));
        }
        let generation = named_generation(node, [form.instance_id.as_deref(), Some(&id)]);
        state.tracker.phoned_home(&snapshot, node, generation);
        tracing::debug!(node = %node.node.name(), ?generation, "phone-home");
        Ok(text("recorded\n".into()))
    })();
    result.unwrap_or_else(axum::response::IntoResponse::into_response)
}
