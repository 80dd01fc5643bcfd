//! The boot listener: BSS-compatible boot scripts and cloud-init NoCloud data. Every answer
//! for a known node was rendered when the inventory changed; a request is a hash lookup and a
//! reference-counted copy of bytes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::client_addr::{Peer, client_ip};
use super::problem::Problem;
use crate::crd::Arch;
use crate::labels;
use crate::mac::Mac;
use crate::metrics::{Endpoint, Metrics, Outcome};
use crate::render::ipxe::{Asker, WaitReason};
use crate::render::{CloudInitDocs, wait_script, with_retry_tail};
use crate::serving::{
    BootAnswer, Found, PreparedCloudInit, ServedNode, SharedSnapshot, Snapshot, UnknownNode,
};

/// Who may read cloud-init data, and which proxies may say who a client is.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    pub trusted_proxies: Vec<IpNet>,
    /// Serve a node that has an `ip` its cloud-init data only at that address.
    pub source_check: bool,
}

#[derive(Clone)]
pub struct BootState {
    pub snapshot: SharedSnapshot,
    pub metrics: Arc<Metrics>,
    pub access: Arc<AccessPolicy>,
    /// `/boot.ipxe`, rendered once: it depends only on the advertised URL.
    pub bootstrap: Bytes,
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

enum Ident {
    Mac(Mac),
    Name(String),
    Nid(i64),
}

impl Ident {
    fn find<'a>(&self, snapshot: &'a Snapshot) -> Found<'a> {
        match self {
            Ident::Mac(mac) => snapshot.by_mac(*mac),
            Ident::Name(name) => snapshot.by_name(name),
            Ident::Nid(nid) => snapshot.by_nid(*nid),
        }
    }

    fn mac(&self) -> Option<Mac> {
        match self {
            Ident::Mac(m) => Some(*m),
            _ => None,
        }
    }

    fn asker(&self) -> Asker<'_> {
        match self {
            Ident::Mac(m) => Asker::Mac(*m),
            Ident::Name(n) => Asker::Name(n),
            Ident::Nid(n) => Asker::Nid(*n),
        }
    }
}

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

fn parse_ident(q: &BootQuery) -> Result<Ident, Problem> {
    if let Some(mac) = present(&q.mac) {
        return mac
            .parse()
            .map(Ident::Mac)
            .map_err(|e: crate::mac::MacParseError| Problem::bad_request(e.to_string()));
    }
    if let Some(name) = present(&q.name) {
        // A name goes back into the retry script's URL: only label-value syntax may pass.
        if !labels::is_valid_value(name) {
            return Err(Problem::bad_request(format!(
                "name '{}' is not a valid node name (alphanumerics and -_. inside, at most 63 characters)",
                name.chars().take(64).collect::<String>()
            )));
        }
        return Ok(Ident::Name(name.to_owned()));
    }
    if let Some(nid) = present(&q.nid) {
        return nid
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Ident::Nid)
            .ok_or_else(|| {
                Problem::bad_request(format!(
                    "nid '{}' is not a number >= 0",
                    nid.chars().take(32).collect::<String>()
                ))
            });
    }
    Err(Problem::bad_request(
        "give the node as mac=, name= or nid= (for example ?mac=aa:bb:cc:dd:ee:ff)",
    ))
}

fn parse_retry(q: &BootQuery) -> Result<u32, Problem> {
    match present(&q.retry) {
        None => Ok(0),
        Some(r) => r.parse().map_err(|_| {
            Problem::bad_request(format!(
                "retry '{}' is not a number >= 0",
                r.chars().take(32).collect::<String>()
            ))
        }),
    }
}

fn wants_json(q: &BootQuery) -> bool {
    matches!(present(&q.json), Some("1" | "true" | "yes"))
}

fn text(body: Bytes) -> Response {
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

fn outcome_of(status: StatusCode) -> Outcome {
    match status {
        StatusCode::BAD_REQUEST => Outcome::bad_request,
        StatusCode::FORBIDDEN => Outcome::forbidden,
        StatusCode::NOT_FOUND => Outcome::not_found,
        s if s.is_success() => Outcome::ok,
        _ => Outcome::error,
    }
}

fn finish(
    state: &BootState,
    endpoint: Endpoint,
    start: Instant,
    result: Result<(Response, Outcome), Problem>,
) -> Response {
    let (response, outcome) = match result {
        Ok(ok) => ok,
        Err(problem) => {
            let response = problem.into_response();
            let outcome = outcome_of(response.status());
            (response, outcome)
        }
    };
    state
        .metrics
        .observe_request(endpoint, outcome, start.elapsed());
    response
}

pub async fn bootstrap(State(state): State<BootState>) -> Response {
    let start = Instant::now();
    let response = text(state.bootstrap.clone());
    finish(
        &state,
        Endpoint::bootstrap,
        start,
        Ok((response, Outcome::ok)),
    )
}

#[derive(Serialize)]
struct BootJson<'a> {
    kernel: &'a str,
    initrd: Option<&'a str>,
    params: &'a str,
}

pub async fn bootscript(
    State(state): State<BootState>,
    query: Result<Query<BootQuery>, QueryRejection>,
) -> Response {
    let start = Instant::now();
    let result = (|| {
        let Query(q) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
        let ident = parse_ident(&q)?;
        let retry = parse_retry(&q)?;
        let json = wants_json(&q);
        let arch = present(&q.arch).and_then(Arch::from_request);
        let snapshot = state.snapshot.load();
        let found = ident.find(&snapshot);
        match found {
            Found::Node(node) => known_bootscript(&snapshot, node, &ident, retry, json),
            Found::Ambiguous => {
                tracing::warn!(query = ?q, "bootscript for an identifier several nodes claim");
                wait(&snapshot, WaitReason::Conflict, &ident, retry, json)
            }
            Found::Missing => match ident {
                Ident::Mac(mac) => unknown_bootscript(&snapshot, mac, arch, retry, json),
                _ => wait(&snapshot, WaitReason::UnknownNode, &ident, retry, json),
            },
        }
    })();
    finish(&state, Endpoint::bootscript, start, result)
}

fn wait(
    snapshot: &Snapshot,
    reason: WaitReason,
    ident: &Ident,
    retry: u32,
    json: bool,
) -> Result<(Response, Outcome), Problem> {
    if json {
        return Err(Problem::not_found(
            "this node has no boot configuration yet (unknown, unassigned or in conflict); see nodeboot explain",
        ));
    }
    let script = wait_script(reason, ident.asker(), retry, &snapshot.settings);
    Ok((text(Bytes::from(script)), Outcome::wait))
}

fn known_bootscript(
    snapshot: &Snapshot,
    node: &ServedNode,
    ident: &Ident,
    retry: u32,
    json: bool,
) -> Result<(Response, Outcome), Problem> {
    let asked_mac = ident.mac();
    let (config, prepared) = match (&node.boot, node.boot_for(asked_mac)) {
        (BootAnswer::Boot { .. }, Some(found)) => found,
        (BootAnswer::Wait(reason), _) => {
            if json {
                return Err(Problem::not_found(format!(
                    "node {} has no boot configuration: {}",
                    node.node.name(),
                    node.node.outcome.message()
                )));
            }
            return wait(snapshot, *reason, ident, retry, json);
        }
        (BootAnswer::Boot { .. }, None) => {
            return wait(snapshot, WaitReason::Unassigned, ident, retry, json);
        }
    };
    if json {
        let body = BootJson {
            kernel: &config.kernel,
            initrd: config.initrd.as_deref(),
            params: prepared.params(),
        };
        return Ok((Json(body).into_response(), Outcome::ok));
    }
    let body = prepared.script_for(retry, &snapshot.settings);
    Ok((text(body), Outcome::ok))
}

fn unknown_bootscript(
    snapshot: &Snapshot,
    mac: Mac,
    arch: Option<Arch>,
    retry: u32,
    json: bool,
) -> Result<(Response, Outcome), Problem> {
    let unknown = UnknownNode::resolve(snapshot, mac, arch);
    let ident = Ident::Mac(mac);
    match unknown.boot(snapshot) {
        Some(Ok(b)) => {
            if json {
                let body = BootJson {
                    kernel: &b.kernel,
                    initrd: b.initrd.as_deref(),
                    params: &b.params,
                };
                return Ok((Json(body).into_response(), Outcome::ok));
            }
            let script = match b.head_len {
                Some(head_len) if retry > 0 => with_retry_tail(
                    &b.script[..head_len],
                    Asker::Mac(mac),
                    retry,
                    &snapshot.settings,
                ),
                _ => b.script,
            };
            Ok((text(Bytes::from(script)), Outcome::ok))
        }
        Some(Err(e)) => {
            tracing::warn!(%mac, error = %e, "discovery BootConfig failed to render for an unknown node");
            wait(snapshot, WaitReason::UnknownNode, &ident, retry, json)
        }
        None => wait(snapshot, WaitReason::UnknownNode, &ident, retry, json),
    }
}

#[derive(Serialize)]
struct BootParams<'a> {
    hosts: Vec<&'a str>,
    macs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nids: Vec<i64>,
    kernel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    initrd: Option<&'a str>,
    params: &'a str,
}

pub async fn bootparameters(
    State(state): State<BootState>,
    query: Result<Query<BootQuery>, QueryRejection>,
) -> Response {
    let start = Instant::now();
    let result = (|| {
        let Query(q) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
        let ident = parse_ident(&q)?;
        let snapshot = state.snapshot.load();
        let found = ident.find(&snapshot);
        let asked_mac = ident.mac();
        let node = match found {
            Found::Node(n) => n,
            Found::Ambiguous => {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    "several nodes claim this identifier",
                ));
            }
            Found::Missing => return Err(Problem::not_found("no node has this identifier")),
        };
        let Some((config, prepared)) = node.boot_for(asked_mac) else {
            return Err(Problem::not_found(format!(
                "node {} has no boot configuration: {}",
                node.node.name(),
                node.node.outcome.message()
            )));
        };
        let body = [BootParams {
            hosts: vec![node.node.name()],
            macs: node.node.macs.iter().map(Mac::to_string).collect(),
            nids: node.node.nid().into_iter().collect(),
            kernel: &config.kernel,
            initrd: config.initrd.as_deref(),
            params: prepared.params(),
        }];
        Ok((Json(body).into_response(), Outcome::ok))
    })();
    finish(&state, Endpoint::bootparameters, start, result)
}

#[derive(Clone, Copy)]
enum Doc {
    MetaData,
    UserData,
    VendorData,
    NetworkConfig,
}

fn parse_doc(doc: &str) -> Result<Doc, Problem> {
    match doc {
        "meta-data" => Ok(Doc::MetaData),
        "user-data" => Ok(Doc::UserData),
        "vendor-data" => Ok(Doc::VendorData),
        "network-config" => Ok(Doc::NetworkConfig),
        _ => Err(Problem::not_found(
            "cloud-init documents are meta-data, user-data, vendor-data and network-config",
        )),
    }
}

fn serve_doc(docs: &PreparedCloudInit, doc: Doc) -> Result<(Response, Outcome), Problem> {
    let body = match doc {
        Doc::MetaData => docs.meta_data.clone(),
        Doc::UserData => docs.user_data.clone(),
        Doc::VendorData => docs.vendor_data.clone(),
        Doc::NetworkConfig => docs
            .network_config
            .clone()
            .ok_or_else(|| Problem::not_found("no network-config is set for this node"))?,
    };
    Ok((text(body), Outcome::ok))
}

fn rendered_docs(docs: CloudInitDocs) -> PreparedCloudInit {
    PreparedCloudInit {
        meta_data: Bytes::from(docs.meta_data),
        user_data: Bytes::from(docs.user_data),
        vendor_data: Bytes::from(docs.vendor_data),
        network_config: docs.network_config.map(Bytes::from),
    }
}

fn requester(state: &BootState, peer: Peer, headers: &HeaderMap) -> IpAddr {
    client_ip(peer.0.ip(), headers, &state.access.trusted_proxies)
}

pub async fn cloud_init_by_id(
    State(state): State<BootState>,
    Path((id, doc)): Path<(String, String)>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    let start = Instant::now();
    let result = (|| {
        let doc = parse_doc(&doc)?;
        let snapshot = state.snapshot.load();
        match snapshot.by_id(&id) {
            Found::Node(node) => {
                if let (Some(ip), true) = (node.node.ip, state.access.source_check) {
                    let from = requester(&state, peer, &headers);
                    if from != ip {
                        tracing::warn!(node = %node.node.name(), %from, "cloud-init request from an address that is not the node's");
                        return Err(Problem::forbidden(format!(
                            "cloud-init data of node {} is served only to the node's own address; this request came from {from}",
                            node.node.name()
                        )));
                    }
                }
                serve_doc(&node.cloud_init, doc)
            }
            Found::Ambiguous => Err(Problem::new(
                StatusCode::CONFLICT,
                format!("'{id}' is claimed by several nodes"),
            )),
            Found::Missing => {
                let Ok(mac) = id.parse::<Mac>() else {
                    return Err(Problem::not_found(format!(
                        "no node is named '{id}' and it is not a MAC address"
                    )));
                };
                let unknown = UnknownNode::resolve(&snapshot, mac, None);
                if unknown.resolution.outcome.config().is_none() {
                    return Err(Problem::not_found(format!(
                        "{mac} is in no NodeGroup and no discovery BootConfig matches it"
                    )));
                }
                let docs = unknown.cloud_init(&snapshot).map_err(|e| {
                    tracing::warn!(%mac, error = %e, "discovery cloud-init failed to render");
                    Problem::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the discovery BootConfig failed to render; see its status",
                    )
                })?;
                serve_doc(&rendered_docs(docs), doc)
            }
        }
    })();
    finish(&state, Endpoint::cloud_init, start, result)
}

pub async fn cloud_init_by_source(
    State(state): State<BootState>,
    Path(doc): Path<String>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    let start = Instant::now();
    let result = (|| {
        let doc = parse_doc(&doc)?;
        let from = requester(&state, peer, &headers);
        let snapshot = state.snapshot.load();
        match snapshot.by_ip(from) {
            Found::Node(node) => serve_doc(&node.cloud_init, doc),
            Found::Ambiguous => Err(Problem::new(
                StatusCode::CONFLICT,
                format!("several nodes have address {from}"),
            )),
            Found::Missing => Err(Problem::not_found(format!(
                "no node has address {from}; ask /cloud-init/<node name>/{} instead",
                match doc {
                    Doc::MetaData => "meta-data",
                    Doc::UserData => "user-data",
                    Doc::VendorData => "vendor-data",
                    Doc::NetworkConfig => "network-config",
                }
            ))),
        }
    })();
    finish(&state, Endpoint::cloud_init, start, result)
}

pub async fn not_found(State(state): State<BootState>, uri: axum::http::Uri) -> Response {
    let start = Instant::now();
    let problem = Problem::not_found(format!(
        "no such endpoint: {}; see /boot.ipxe, /boot/v1/bootscript, /boot/v1/bootparameters and /cloud-init/",
        uri.path()
    ));
    finish(&state, Endpoint::other, start, Err(problem))
}
