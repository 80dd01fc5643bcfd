//! The boot listener's handlers: BSS-compatible boot scripts and cloud-init NoCloud data.
//! Each parses the request, asks the snapshot (`Snapshot::answer`, which decides everything),
//! and words the response. For a known node the answer was rendered when the inventory
//! changed: a request is a hash lookup, plus the few lines of the retry tail.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query as QueryParams, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use nodeboot_core::crd::Arch;
use nodeboot_core::labels;
use nodeboot_core::render::cloud_init::Document;
use nodeboot_core::snapshot::{Decision, DocumentError, Identity, Query, Subject};
use serde::{Deserialize, Serialize};

use super::client_addr::{Peer, client_ip};
use super::log_limit::{LogLimit, Warning};
use super::problem::Problem;
use super::requester::Requester;
use super::{AccessPolicy, SharedSnapshot};
use crate::metrics::{Metrics, Outcome};
use crate::tracking::Tracker;

/// What the boot handlers share, behind one reference count: axum clones the state for every
/// request, and each shared count is a cache line the answering threads pass back and forth.
#[derive(Clone)]
pub struct BootState(Arc<BootShared>);

pub struct BootShared {
    pub snapshot: SharedSnapshot,
    pub access: AccessPolicy,
    /// `/boot.ipxe`, rendered once: it depends only on the advertised URL.
    pub bootstrap: Bytes,
    /// `/grub.cfg`, rendered once, like `/boot.ipxe`.
    pub grub_bootstrap: Bytes,
    pub metrics: Arc<Metrics>,
    /// Records what each node fetched (boot tracking).
    pub tracker: Arc<Tracker>,
    log_limit: LogLimit,
}

impl std::ops::Deref for BootState {
    type Target = BootShared;

    fn deref(&self) -> &BootShared {
        &self.0
    }
}

impl BootState {
    pub fn new(
        snapshot: SharedSnapshot,
        access: AccessPolicy,
        render: &nodeboot_core::render::RenderSettings,
        metrics: Arc<Metrics>,
        tracker: Arc<Tracker>,
    ) -> BootState {
        BootState(Arc::new(BootShared {
            snapshot,
            access,
            bootstrap: Bytes::from(nodeboot_core::render::ipxe::bootstrap(&render.server_url)),
            grub_bootstrap: Bytes::from(nodeboot_core::render::grub::bootstrap(render)),
            metrics,
            tracker,
            log_limit: LogLimit::default(),
        }))
    }
}

impl BootShared {
    pub(super) fn warn(&self, kind: Warning, log: impl FnOnce(u64)) {
        self.log_limit.warn(kind, &self.metrics, log);
    }
}

/// The BSS query. Values stay strings here so that a bad one gets a problem body, not axum's
/// plain-text rejection.
#[derive(Debug, Default, Deserialize)]
pub struct BootQuery {
    mac: Option<String>,
    name: Option<String>,
    nid: Option<String>,
    arch: Option<String>,
    retry: Option<String>,
    json: Option<String>,
}

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

fn parse_identity(q: &BootQuery) -> Result<Identity, Problem> {
    if let Some(mac) = present(&q.mac) {
        return mac
            .parse()
            .map(Identity::Mac)
            .map_err(|e: nodeboot_core::mac::MacParseError| Problem::bad_request(e.to_string()));
    }
    if let Some(name) = present(&q.name) {
        // A name goes back into the retry script's URL: only label-value syntax may pass.
        if !labels::is_valid_value(name) {
            return Err(Problem::bad_request(format!(
                "name '{}' is not a valid node name (alphanumerics and -_. inside, at most 63 characters)",
                labels::shown(name)
            )));
        }
        return Ok(Identity::Name(name.to_owned()));
    }
    if let Some(nid) = present(&q.nid) {
        return nid
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Identity::Nid)
            .ok_or_else(|| {
                Problem::bad_request(format!("nid '{}' is not a number >= 0", labels::shown(nid)))
            });
    }
    Err(Problem::bad_request(
        "give the node as mac=, name= or nid= (for example ?mac=aa:bb:cc:dd:ee:ff)",
    ))
}

pub(super) fn parse_query(
    query: Result<QueryParams<BootQuery>, QueryRejection>,
) -> Result<(BootQuery, Query), Problem> {
    let QueryParams(q) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let who = parse_identity(&q)?;
    let retry = match present(&q.retry) {
        None => 0,
        Some(r) => r.parse().map_err(|_| {
            Problem::bad_request(format!("retry '{}' is not a number >= 0", labels::shown(r)))
        })?,
    };
    let arch = present(&q.arch).and_then(Arch::from_request);
    Ok((q, Query { who, arch, retry }))
}

fn wants_json(q: &BootQuery) -> bool {
    matches!(present(&q.json), Some("1" | "true" | "yes"))
}

pub(super) fn text(body: Bytes) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

/// Marks a response as a node told to wait, for the request metrics.
pub(super) fn waiting(mut response: Response) -> Response {
    response.extensions_mut().insert(Outcome::wait);
    response
}

pub(super) fn respond(result: Result<Response, Problem>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn bootstrap(State(state): State<BootState>) -> Response {
    text(state.bootstrap.clone())
}

/// Logs (rate-limited) what is wrong with whom a boot request found.
pub(super) fn warn_about(state: &BootState, q: &BootQuery, subject: &Subject<'_>) {
    match subject {
        Subject::Ambiguous => state.warn(Warning::Ambiguous, |suppressed| {
            tracing::warn!(query = ?q, suppressed, "boot request for an identifier several nodes claim");
        }),
        Subject::Unknown(unknown) => {
            if let Some(Err(error)) = &unknown.boot {
                state.warn(Warning::DiscoveryFailed, |suppressed| {
                    tracing::warn!(mac = %unknown.mac, %error, suppressed, "discovery BootConfig failed to render for an unknown node");
                });
            }
        }
        _ => {}
    }
}

#[derive(Serialize)]
struct BootJson<'a> {
    kernel: &'a str,
    initrd: Option<&'a str>,
    params: &'a str,
}

pub async fn bootscript(
    State(state): State<BootState>,
    requester: Requester,
    query: Result<QueryParams<BootQuery>, QueryRejection>,
) -> Response {
    respond((|| {
        let (q, query) = parse_query(query)?;
        let snapshot = state.snapshot.load();
        let answer = snapshot.answer(&query);
        warn_about(&state, &q, &answer.subject);
        let decision = answer.decision();
        super::tracked::bootscript(&state.tracker, &snapshot, &answer, &decision, requester.0);
        match (&decision, wants_json(&q)) {
            (Decision::Boot(boot), true) => Ok(Json(BootJson {
                kernel: &boot.config.kernel,
                initrd: boot.config.initrd.as_deref(),
                params: boot.params(),
            })
            .into_response()),
            (Decision::Wait { why, .. }, true) => Err(Problem::not_found(why.clone())),
            (Decision::Boot(_), false) => Ok(text(answer.script_for(&decision))),
            (Decision::Wait { .. }, false) => Ok(waiting(text(answer.script_for(&decision)))),
        }
    })())
}

fn parse_document(name: &str) -> Result<Document, Problem> {
    Document::from_name(name).ok_or_else(|| {
        Problem::not_found(
            "cloud-init documents are meta-data, user-data, vendor-data and network-config",
        )
    })
}

pub(super) fn requester(state: &BootState, peer: Peer, headers: &HeaderMap) -> IpAddr {
    client_ip(peer.0.ip(), headers, &state.access.trusted_proxies)
}

pub async fn cloud_init_by_id(
    State(state): State<BootState>,
    Path((id, doc)): Path<(String, String)>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    respond((|| {
        let doc = parse_document(&doc)?;
        let snapshot = state.snapshot.load();
        let query = Query::new(Identity::NameOrMac(id.clone()));
        let answer = snapshot.answer(&query);
        if let (Subject::Known(node), Some(ip), true) =
            (&answer.subject, answer.node_ip(), state.access.source_check)
        {
            let from = requester(&state, peer, &headers);
            if from != ip {
                state.warn(Warning::WrongSource, |suppressed| {
                    tracing::warn!(node = %node.node.name(), %from, suppressed, "cloud-init request from an address that is not the node's");
                });
                return Err(Problem::forbidden(format!(
                    "cloud-init data of node {} is served only to the node's own address; this request came from {from}",
                    node.node.name()
                )));
            }
        }
        let served = answer.document(doc);
        if let (Ok(_), Subject::Known(node)) = (&served, &answer.subject) {
            state.tracker.document_served(&snapshot, node, doc);
        }
        served.map(text).map_err(|e| match e {
            DocumentError::Ambiguous => Problem::new(
                StatusCode::CONFLICT,
                format!("'{id}' is claimed by several nodes"),
            ),
            DocumentError::Missing => Problem::not_found(format!(
                "no node is named '{id}' and it is not a MAC address"
            )),
            DocumentError::DiscoveryFailed(ref error) => {
                state.warn(Warning::DiscoveryFailed, |suppressed| {
                    tracing::warn!(id = %id, %error, suppressed, "discovery cloud-init failed to render");
                });
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
            DocumentError::NotSet | DocumentError::NoDiscovery(_) => {
                Problem::not_found(e.to_string())
            }
        })
    })())
}

pub async fn cloud_init_by_source(
    State(state): State<BootState>,
    Path(doc): Path<String>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    respond((|| {
        let doc = parse_document(&doc)?;
        let from = requester(&state, peer, &headers);
        let snapshot = state.snapshot.load();
        let query = Query::new(Identity::Ip(from));
        let answer = snapshot.answer(&query);
        let served = answer.document(doc);
        if let (Ok(_), Subject::Known(node)) = (&served, &answer.subject) {
            state.tracker.document_served(&snapshot, node, doc);
        }
        served.map(text).map_err(|e| match e {
            DocumentError::Ambiguous => Problem::new(
                StatusCode::CONFLICT,
                format!("several nodes have address {from}"),
            ),
            DocumentError::Missing => Problem::not_found(format!(
                "no node has address {from}; ask /cloud-init/<node name>/{} instead",
                doc.name()
            )),
            other => Problem::not_found(other.to_string()),
        })
    })())
}

pub async fn not_found(uri: axum::http::Uri) -> Response {
    Problem::not_found(format!(
        "no such endpoint: {}; see /boot.ipxe, /boot/v1/bootscript, /boot/v1/bootparameters, /boot/v1/hosts, /boot/v1/service/status and /cloud-init/",
        uri.path()
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use nodeboot_core::mac::Mac;
    use nodeboot_core::render::template::ipxe_unsafe_char;
    use proptest::prelude::*;

    use super::*;

    fn query(mac: Option<String>, name: Option<String>, nid: Option<String>) -> BootQuery {
        BootQuery {
            mac,
            name,
            nid,
            ..Default::default()
        }
    }

    proptest! {
        /// Whatever a client sends, the parser answers (no panic), and an accepted name can go
        /// back into a retry URL without changing the script.
        #[test]
        fn identities_are_parsed_or_refused_never_passed_through(
            mac in proptest::option::of("\\PC{0,20}|[0-9a-f:]{17}"),
            name in proptest::option::of("\\PC{0,70}|[a-z0-9._-]{1,70}"),
            nid in proptest::option::of("\\PC{0,12}|-?[0-9]{1,22}"),
            retry in proptest::option::of("\\PC{0,8}|[0-9]{1,12}"),
        ) {
            let q = BootQuery { retry: retry.clone(), ..query(mac.clone(), name.clone(), nid.clone()) };
            let parsed = parse_query(Ok(QueryParams(q)));
            let present = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
            match parsed {
                Ok((_, query)) => {
                    match &query.who {
                        Identity::Mac(m) => prop_assert_eq!(present(&mac).map(|s| s.parse::<Mac>()), Some(Ok(*m))),
                        Identity::Name(n) => {
                            prop_assert!(present(&mac).is_none());
                            prop_assert!(nodeboot_core::labels::is_valid_value(n) && !n.is_empty());
                            prop_assert!(!n.chars().any(ipxe_unsafe_char));
                        }
                        Identity::Nid(n) => {
                            prop_assert!(present(&mac).is_none() && present(&name).is_none());
                            prop_assert!(*n >= 0);
                            prop_assert_eq!(present(&nid).map(|s| s.parse::<i64>().ok()), Some(Some(*n)));
                        }
                        other => prop_assert!(false, "{other:?}"),
                    }
                    prop_assert_eq!(Some(query.retry), present(&retry).map_or(Some(0), |r| r.parse::<u32>().ok()));
                }
                Err(problem) => {
                    prop_assert_eq!(problem.status, 400);
                    prop_assert!(problem.detail.len() < 300);
                }
            }
        }
    }
}
