//! Drop-in reads for OpenCHAMI's clients (`ochami bss ...`, `ochami cloud-init ...`, scripts
//! written against BSS): the multi-node bootparameters query, BSS's service and hosts
//! endpoints, the cloud-init server's version, and its admin impersonation view. Writes to
//! bootparameters are refused with a pointer to what replaces them. What is answered is the
//! core's (`snapshot::openchami`); this module parses queries and streams JSON.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use nodeboot_core::render::cloud_init::Document;
use nodeboot_core::snapshot::{
    BootParamsEntry, Identity, Query, ServedNode, SmdComponent, Snapshot, describe,
};
use serde::Serialize;

use super::admin::AdminState;
use super::boot::BootState;
use super::problem::Problem;

/// The version both `/boot/v1/service/version` and `/cloud-init/version` report.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Nodes serialized per chunk of a streamed listing: a chunk is a few hundred KiB at most,
/// whatever the number of nodes.
const NODES_PER_CHUNK: usize = 256;

/// Full listings streamed at once by one listener.
const LISTINGS_AT_ONCE: usize = 8;

/// Each full listing holds the snapshot it started from until its client has read it (a slow
/// reader is cut off only when it stops reading): bounding how many run at once bounds how many
/// old snapshots readers can keep alive across rebuilds.
#[derive(Clone)]
pub struct ListingLimit(Arc<tokio::sync::Semaphore>);

impl Default for ListingLimit {
    fn default() -> ListingLimit {
        ListingLimit(Arc::new(tokio::sync::Semaphore::new(LISTINGS_AT_ONCE)))
    }
}

impl ListingLimit {
    fn take(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Problem> {
        self.0.clone().try_acquire_owned().map_err(|_| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{LISTINGS_AT_ONCE} full listings are being sent already; retry shortly, or \
                     ask for nodes by mac=, name= or nid="
                ),
            )
        })
    }
}

/// Reads BSS's query: `mac=`, `name=` and `nid=`, each repeated or comma-separated, all kinds
/// together (as `ochami` sends them). Other parameters are ignored. The request head limit
/// bounds how many there can be.
pub fn parse_identities(raw: Option<&str>) -> Result<Vec<Identity>, Problem> {
    let mut ids = Vec::new();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        for item in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            let id = match &*key {
                "mac" => Identity::Mac(item.parse().map_err(
                    |e: nodeboot_core::mac::MacParseError| Problem::bad_request(e.to_string()),
                )?),
                "name" => Identity::Name(item.to_owned()),
                "nid" => Identity::Nid(item.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(
                    || {
                        Problem::bad_request(format!(
                            "nid '{}' is not a number >= 0",
                            nodeboot_core::labels::shown(item)
                        ))
                    },
                )?),
                _ => continue,
            };
            ids.push(id);
        }
    }
    Ok(ids)
}

/// How a listing writes one node; false when the node has no entry.
type WriteEntry = fn(&ServedNode, &mut Vec<u8>) -> bool;

fn write_boot_params(node: &ServedNode, out: &mut Vec<u8>) -> bool {
    BootParamsEntry::of(node).is_some_and(|entry| serde_json::to_writer(out, &entry).is_ok())
}

fn write_component(node: &ServedNode, out: &mut Vec<u8>) -> bool {
    serde_json::to_writer(out, &SmdComponent::of(node)).is_ok()
}

/// A JSON array of every node's entry, produced a chunk at a time as the client reads: the
/// snapshot is shared, not copied, so memory stays bounded at any number of nodes.
struct JsonListing {
    snapshot: Arc<Snapshot>,
    /// Released when the response body is dropped (sent, or the client gone).
    _permit: tokio::sync::OwnedSemaphorePermit,
    next: usize,
    written: usize,
    done: bool,
    write: WriteEntry,
}

impl Iterator for JsonListing {
    type Item = Result<Bytes, Infallible>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let nodes = self.snapshot.nodes();
        let end = nodes.len().min(self.next + NODES_PER_CHUNK);
        let mut out = Vec::with_capacity(16 * 1024);
        if self.next == 0 {
            out.push(b'[');
        }
        for node in &nodes[self.next..end] {
            let mark = out.len();
            if self.written > 0 {
                out.push(b',');
            }
            if (self.write)(node, &mut out) {
                self.written += 1;
            } else {
                out.truncate(mark);
            }
        }
        self.next = end;
        if end == nodes.len() {
            out.push(b']');
            out.push(b'\n');
            self.done = true;
        }
        Some(Ok(Bytes::from(out)))
    }
}

fn json_listing(limit: &ListingLimit, snapshot: Arc<Snapshot>, write: WriteEntry) -> Response {
    let permit = match limit.take() {
        Ok(permit) => permit,
        Err(problem) => return problem.into_response(),
    };
    let listing = JsonListing {
        snapshot,
        _permit: permit,
        next: 0,
        written: 0,
        done: false,
        write,
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(futures::stream::iter(listing)),
    )
        .into_response()
}

/// Why a query found nothing to list: 409 when some identifier is claimed by several nodes
/// (and nothing else was found), else 404 naming what was asked.
fn nothing_found(missing: &[&Identity], ambiguous: &[&Identity], what: &str) -> Problem {
    let named = |ids: &[&Identity]| {
        let mut text = ids
            .iter()
            .take(3)
            .map(|id| describe(id))
            .collect::<Vec<_>>()
            .join(", ");
        if ids.len() > 3 {
            text.push_str(&format!(" and {} more", ids.len() - 3));
        }
        text
    };
    if !ambiguous.is_empty() {
        return Problem::new(
            StatusCode::CONFLICT,
            format!("several nodes claim {}", named(ambiguous)),
        );
    }
    Problem::not_found(format!("no node has {what} for {}", named(missing)))
}

/// `GET /boot/v1/bootparameters`: one entry per node found (BSS answers every node asked for,
/// by any kind of identifier), the stored params (without autoParams, which only the script
/// carries); without a query, every node that boots.
pub async fn bootparameters(
    State(state): State<BootState>,
    Extension(limit): Extension<ListingLimit>,
    RawQuery(raw): RawQuery,
) -> Response {
    let ids = match parse_identities(raw.as_deref()) {
        Ok(ids) => ids,
        Err(problem) => return problem.into_response(),
    };
    if ids.is_empty() {
        return json_listing(&limit, state.snapshot.load_full(), write_boot_params);
    }
    let snapshot = state.snapshot.load();
    let found = snapshot.find_nodes(&ids);
    let entries: Vec<_> = found
        .nodes
        .iter()
        .filter_map(|n| BootParamsEntry::of(n))
        .collect();
    if entries.is_empty() {
        // A node that waits has no parameters to list, as BSS keeps none for it: say why.
        if let Some(waiting) = found.nodes.first() {
            return Problem::not_found(format!(
                "node {} has no boot configuration: {}",
                waiting.node.name(),
                waiting.node.outcome.message()
            ))
            .into_response();
        }
        return nothing_found(&found.missing, &found.ambiguous, "boot parameters").into_response();
    }
    Json(entries).into_response()
}

/// `GET /boot/v1/hosts`: the nodes as SMD components, as BSS lists the state it caches;
/// with a query, the nodes it names (an identifier nobody has is a 404, as in BSS).
pub async fn hosts(
    State(state): State<BootState>,
    Extension(limit): Extension<ListingLimit>,
    RawQuery(raw): RawQuery,
) -> Response {
    let ids = match parse_identities(raw.as_deref()) {
        Ok(ids) => ids,
        Err(problem) => return problem.into_response(),
    };
    if ids.is_empty() {
        return json_listing(&limit, state.snapshot.load_full(), write_component);
    }
    let snapshot = state.snapshot.load();
    let found = snapshot.find_nodes(&ids);
    if !found.missing.is_empty() || !found.ambiguous.is_empty() {
        return nothing_found(&found.missing, &found.ambiguous, "an entry").into_response();
    }
    let components: Vec<_> = found.nodes.iter().map(|n| SmdComponent::of(n)).collect();
    Json(components).into_response()
}

/// Writes are not taken here: boot parameters come from NodeGroups and BootConfigs.
pub async fn bootparameters_write() -> Response {
    let mut response = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "nodeboot's boot parameters are read-only: they come from NodeGroup and BootConfig \
         resources. Change them with kubectl (kubectl edit bootconfig NAME), or convert BSS \
         data once with `nodeboot import`",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
    response
}

/// BSS's service status object; each endpoint fills what it reports.
#[derive(Debug, Default, Serialize)]
struct ServiceStatus {
    #[serde(rename = "bss-version", skip_serializing_if = "Option::is_none")]
    version: Option<&'static str>,
    #[serde(rename = "bss-status", skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(rename = "bss-status-hsm", skip_serializing_if = "Option::is_none")]
    hsm: Option<&'static str>,
    #[serde(
        rename = "bss-storage-backend",
        skip_serializing_if = "Option::is_none"
    )]
    storage: Option<StorageBackend>,
}

/// nodeboot's store is the snapshot in service, there whenever the process answers.
const STORAGE: StorageBackend = StorageBackend {
    name: "nodeboot",
    status: "connected",
};

#[derive(Debug, Serialize)]
struct StorageBackend {
    name: &'static str,
    status: &'static str,
}

pub async fn service_status() -> Response {
    Json(ServiceStatus {
        status: Some("running"),
        ..Default::default()
    })
    .into_response()
}

/// Everything BSS reports, but HSM: nodeboot's inventory is its NodeGroups, which the
/// snapshot in service holds, so there is no second service to be connected to.
pub async fn service_status_all() -> Response {
    Json(ServiceStatus {
        version: Some(VERSION),
        status: Some("running"),
        storage: Some(STORAGE),
        ..Default::default()
    })
    .into_response()
}

/// `GET /boot/v1/service/storage/status` (`ochami bss service status --storage`).
pub async fn service_storage() -> Response {
    Json(ServiceStatus {
        storage: Some(STORAGE),
        ..Default::default()
    })
    .into_response()
}

/// `GET /boot/v1/service/hsm` (`ochami bss service status --smd`): there is no SMD behind
/// nodeboot, and the answer says so rather than claiming a connection.
pub async fn service_hsm() -> Response {
    Json(ServiceStatus {
        hsm: Some("not used: nodeboot's inventory is its NodeGroups"),
        ..Default::default()
    })
    .into_response()
}

pub async fn service_version() -> Response {
    Json(ServiceStatus {
        version: Some(VERSION),
        ..Default::default()
    })
    .into_response()
}

#[derive(Debug, Serialize)]
struct CloudInitVersion {
    process_name: &'static str,
    build_info: String,
    version: &'static str,
}

/// `GET /cloud-init/version`: `ochami cloud-init service status` asks it and needs a 200.
pub async fn cloud_init_version() -> Response {
    Json(CloudInitVersion {
        process_name: "nodeboot",
        build_info: format!("Version: {VERSION}"),
        version: VERSION,
    })
    .into_response()
}

/// Admin `GET /cloud-init/admin/impersonation/{id}/{doc}`: what node `{id}` (a name, else a
/// MAC) is served, without the source check. The admin listener has no authentication, so
/// user-data that is a Secret's text is replaced by a note saying where it is.
pub async fn impersonation(
    State(state): State<AdminState>,
    Path((id, doc)): Path<(String, String)>,
) -> Response {
    let Some(doc) = Document::from_name(&doc) else {
        return Problem::not_found(
            "cloud-init documents are meta-data, user-data, vendor-data and network-config",
        )
        .into_response();
    };
    let snapshot = state.snapshot.load();
    let query = Query::new(Identity::NameOrMac(id.clone()));
    let answer = snapshot.answer(&query);
    if answer.document_from_secret(doc) {
        return text(Bytes::from_static(
            b"# nodeboot: redacted. This node's user-data is a Secret's text, which the admin \
              listener (no authentication) does not show; read it with kubectl.\n",
        ));
    }
    match answer.document(doc) {
        Ok(body) => text(body),
        Err(e) => {
            let status = match e {
                nodeboot_core::snapshot::DocumentError::Ambiguous => StatusCode::CONFLICT,
                nodeboot_core::snapshot::DocumentError::DiscoveryFailed(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                _ => StatusCode::NOT_FOUND,
            };
            Problem::new(
                status,
                format!("{}: {e}", describe(&Identity::NameOrMac(id))),
            )
            .into_response()
        }
    }
}

fn text(body: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use nodeboot_core::mac::Mac;

    use super::*;

    #[test]
    fn identities_repeated_comma_separated_and_mixed() {
        let ids = parse_identities(Some(
            "mac=02:00:00:00:00:01,02-00-00-00-00-02&name=x1&name=x2,x3&nid=7,8&ts=1",
        ))
        .unwrap();
        assert_eq!(
            ids,
            vec![
                Identity::Mac("02:00:00:00:00:01".parse::<Mac>().unwrap()),
                Identity::Mac("02:00:00:00:00:02".parse::<Mac>().unwrap()),
                Identity::Name("x1".into()),
                Identity::Name("x2".into()),
                Identity::Name("x3".into()),
                Identity::Nid(7),
                Identity::Nid(8),
            ]
        );
        assert!(parse_identities(None).unwrap().is_empty());
        assert!(parse_identities(Some("mac=&name=")).unwrap().is_empty());
        assert_eq!(parse_identities(Some("nid=-1")).unwrap_err().status, 400);
        assert_eq!(parse_identities(Some("mac=zz")).unwrap_err().status, 400);
    }

    proptest::proptest! {
        /// Whatever a client sends, the query is read or refused with a short 400, never a
        /// panic, and every identifier read came from a value it sent.
        #[test]
        fn any_query_is_read_or_refused(raw in "\\PC{0,200}|((mac|name|nid|ts)=[0-9a-fA-F:,.%-]{0,40}&?){0,8}") {
            match parse_identities(Some(&raw)) {
                Ok(ids) => proptest::prop_assert!(ids.len() <= raw.len()),
                Err(problem) => {
                    proptest::prop_assert_eq!(problem.status, 400);
                    proptest::prop_assert!(problem.detail.len() < 300);
                }
            }
        }
    }

    #[test]
    fn full_listings_at_once_are_bounded_and_given_back() {
        let limit = ListingLimit::default();
        let mut held: Vec<_> = (0..LISTINGS_AT_ONCE)
            .map(|_| limit.take().unwrap())
            .collect();
        let refused = limit.take().unwrap_err();
        assert_eq!(refused.status, 503);
        assert!(refused.detail.contains("mac=, name= or nid="));
        held.pop();
        assert!(limit.take().is_ok());
    }

    /// A site of `groups` NodeGroups of 1000 nodes each, all booting one BootConfig.
    fn site(groups: usize) -> Snapshot {
        use nodeboot_core::crd::{BootConfig, BootConfigSpec, NodeGroup, NodeGroupSpec, NodeSpec};
        use nodeboot_core::render::RenderSettings;
        use nodeboot_core::snapshot::{Desired, build};
        let node_groups = (0..groups)
            .map(|g| {
                let nodes = (0..1000)
                    .map(|i| NodeSpec {
                        name: format!("g{g}n{i}"),
                        macs: vec![
                            Mac::new([2, 0, 0, g as u8, (i >> 8) as u8, i as u8]).to_string(),
                        ],
                        nid: Some((g * 1000 + i) as i64),
                        ..Default::default()
                    })
                    .collect();
                let mut group = NodeGroup::new(
                    &format!("g{g}"),
                    NodeGroupSpec {
                        nodes,
                        ..Default::default()
                    },
                );
                group.metadata.namespace = Some("hpc".into());
                Arc::new(group)
            })
            .collect();
        let mut config = BootConfig::new(
            "all",
            BootConfigSpec {
                node_selector: Some(Default::default()),
                kernel: "http://img/k".into(),
                params: "console=ttyS0".into(),
                auto_params: true,
                ..Default::default()
            },
        );
        config.metadata.namespace = Some("hpc".into());
        let desired = Desired {
            node_groups,
            boot_configs: vec![config],
            ..Default::default()
        };
        let settings = RenderSettings {
            server_url: "http://s".into(),
            retry_max_delay: 60,
        };
        build(&desired, &mut Default::default(), &settings).0
    }

    /// The listing is produced a few hundred nodes at a time, whatever the site's size, and
    /// reads as one JSON array of every node, with the stored params.
    #[test]
    fn every_node_listed_in_chunks_of_bounded_size() {
        let snapshot = Arc::new(site(5));
        let listing = JsonListing {
            snapshot,
            _permit: ListingLimit::default().take().unwrap(),
            next: 0,
            written: 0,
            done: false,
            write: write_boot_params,
        };
        let chunks: Vec<Bytes> = listing.map(|c| c.unwrap_or_default()).collect();
        assert_eq!(chunks.len(), 5000usize.div_ceil(NODES_PER_CHUNK));
        let largest = chunks.iter().map(Bytes::len).max().unwrap_or_default();
        assert!(largest < 64 * 1024, "{largest} bytes in one chunk");
        let body: Vec<u8> = chunks.concat();
        let entries: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        assert_eq!(entries.len(), 5000);
        assert_eq!(entries[1234]["hosts"][0], "g1n234");
        assert_eq!(entries[1234]["params"], "console=ttyS0");
        assert_eq!(entries[1234]["nids"][0], 1234);
    }

    #[test]
    fn an_empty_site_lists_an_empty_array() {
        let listing = JsonListing {
            snapshot: Arc::new(site(0)),
            _permit: ListingLimit::default().take().unwrap(),
            next: 0,
            written: 0,
            done: false,
            write: write_component,
        };
        let body: Vec<u8> = listing
            .map(|c| c.unwrap_or_default())
            .collect::<Vec<_>>()
            .concat();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            serde_json::json!([])
        );
    }
}
