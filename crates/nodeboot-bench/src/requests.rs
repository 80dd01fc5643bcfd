//! The boot-storm requests: per node, in the order a node booting through iPXE and cloud-init
//! asks them, its bootscript by MAC and its meta-data, user-data and vendor-data by name.
//! Taken from a built snapshot, so names and MACs are the ones nodeboot serves, not re-derived.
//!
//! Written as a TSV file, one request a line: `PATH<TAB>FILE<TAB>IP`, where PATH is the URL path
//! and query, FILE where the tree (`crate::tree`) holds the expected body, and IP the node's
//! address (for X-Forwarded-For when the source check is on) or `-`. bench/storm.lua walks it,
//! `crate::compare` checks a server against it.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use nodeboot_core::mac::Mac;
use nodeboot_core::render::cloud_init::Document;
use nodeboot_core::snapshot::{Identity, Query, Snapshot};

/// The documents a booting node fetches, in order. network-config is not set on the synthetic
/// site (nodeboot answers 404, which static files cannot reproduce).
pub const DOCUMENTS: [Document; 3] = [Document::MetaData, Document::UserData, Document::VendorData];

/// What a request asks for, in the terms of the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    Bootscript(Mac),
    /// The bootscript for a MAC no NodeGroup lists: answered by the discovery BootConfig.
    Discovery(Mac),
    CloudInit {
        name: String,
        doc: Document,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StormRequest {
    pub ask: Ask,
    pub node_ip: Option<IpAddr>,
}

impl StormRequest {
    /// The URL path and query, as nodeboot and nginx serve it.
    pub fn path(&self) -> String {
        match &self.ask {
            Ask::Bootscript(mac) | Ask::Discovery(mac) => format!("/boot/v1/bootscript?mac={mac}"),
            Ask::CloudInit { name, doc } => format!("/cloud-init/{name}/{}", doc.name()),
        }
    }

    /// Where the tree holds the body, relative to its root; nginx maps the URL to it.
    pub fn tree_file(&self) -> String {
        match &self.ask {
            Ask::Bootscript(mac) => format!("bootscript/{mac}"),
            // Apart from the known MACs, so that the scenarios can pick one kind by its file.
            Ask::Discovery(mac) => format!("discovery/{mac}"),
            Ask::CloudInit { name, doc } => format!("cloud-init/{name}/{}", doc.name()),
        }
    }

    /// The query nodeboot's HTTP layer makes of this URL: a MAC for the bootscript (no arch,
    /// retry 0), the `{id}` of the cloud-init path.
    pub fn query(&self) -> Query {
        match &self.ask {
            Ask::Bootscript(mac) | Ask::Discovery(mac) => Query::new(Identity::Mac(*mac)),
            Ask::CloudInit { name, .. } => Query::new(Identity::NameOrMac(name.clone())),
        }
    }

    pub fn line(&self) -> RequestLine {
        RequestLine {
            path: self.path(),
            tree_file: self.tree_file(),
            forwarded_for: self.node_ip.map(|ip| ip.to_string()),
        }
    }
}

/// Every node's four requests, nodes in the snapshot's order.
pub fn storm_requests(snapshot: &Snapshot) -> Vec<StormRequest> {
    let mut requests = Vec::with_capacity(snapshot.nodes().len() * (1 + DOCUMENTS.len()));
    for served in snapshot.nodes() {
        let node = &served.node;
        if let Some(mac) = node.macs.first() {
            requests.push(StormRequest {
                ask: Ask::Bootscript(*mac),
                node_ip: node.ip,
            });
        }
        for doc in DOCUMENTS {
            requests.push(StormRequest {
                ask: Ask::CloudInit {
                    name: node.name().to_owned(),
                    doc,
                },
                node_ip: node.ip,
            });
        }
    }
    requests
}

/// `count` machines no NodeGroup lists, each asking once for its bootscript (a discovery storm).
pub fn discovery_requests(count: usize) -> Vec<StormRequest> {
    (0..count)
        .filter_map(|i| crate::synthetic::unknown_mac(i).parse().ok())
        .map(|mac| StormRequest {
            ask: Ask::Discovery(mac),
            node_ip: None,
        })
        .collect()
}

/// One line of the requests file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    pub path: String,
    pub tree_file: String,
    pub forwarded_for: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: expected PATH<TAB>FILE<TAB>IP")]
    Malformed { path: PathBuf, line: usize },
    #[error("{0}: no requests")]
    Empty(PathBuf),
}

/// The requests file's text.
pub fn to_tsv(requests: &[StormRequest]) -> String {
    let mut text = String::with_capacity(requests.len() * 64);
    for r in requests {
        let line = r.line();
        let ip = line.forwarded_for.as_deref().unwrap_or("-");
        // Writing to a String cannot fail.
        let _ = writeln!(text, "{}\t{}\t{ip}", line.path, line.tree_file);
    }
    text
}

pub fn write(requests: &[StormRequest], path: &Path) -> Result<(), RequestsError> {
    std::fs::write(path, to_tsv(requests)).map_err(|source| RequestsError::Io {
        path: path.to_owned(),
        source,
    })
}

pub fn read(path: &Path) -> Result<Vec<RequestLine>, RequestsError> {
    let text = std::fs::read_to_string(path).map_err(|source| RequestsError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split('\t');
        let (Some(url), Some(file), Some(ip), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(RequestsError::Malformed {
                path: path.to_owned(),
                line: i + 1,
            });
        };
        lines.push(RequestLine {
            path: url.to_owned(),
            tree_file: file.to_owned(),
            forwarded_for: (ip != "-").then(|| ip.to_owned()),
        });
    }
    if lines.is_empty() {
        return Err(RequestsError::Empty(path.to_owned()));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic;
    use nodeboot_core::compile::ConfigCompiler;
    use nodeboot_core::render::RenderSettings;
    use nodeboot_core::snapshot::build;

    fn snapshot(nodes: usize) -> Snapshot {
        let settings = RenderSettings {
            server_url: "http://127.0.0.1:8080".into(),
            retry_max_delay: 60,
        };
        build(
            &synthetic::site(nodes),
            &mut ConfigCompiler::default(),
            &settings,
        )
        .0
    }

    #[test]
    fn four_requests_per_node_bootscript_first() {
        let requests = storm_requests(&snapshot(8));
        assert_eq!(requests.len(), 32);
        let first: Vec<String> = requests[..4].iter().map(StormRequest::path).collect();
        assert_eq!(
            first,
            [
                "/boot/v1/bootscript?mac=02:00:00:00:00:00",
                "/cloud-init/x1000c0s0b0n0/meta-data",
                "/cloud-init/x1000c0s0b0n0/user-data",
                "/cloud-init/x1000c0s0b0n0/vendor-data",
            ]
        );
        assert_eq!(requests[0].tree_file(), "bootscript/02:00:00:00:00:00");
    }

    #[test]
    fn file_round_trip() {
        let requests = storm_requests(&snapshot(3));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.tsv");
        write(&requests, &path).unwrap();
        let lines = read(&path).unwrap();
        let expected: Vec<RequestLine> = requests.iter().map(StormRequest::line).collect();
        assert_eq!(lines, expected);
        assert_eq!(lines[1].forwarded_for.as_deref(), Some("10.100.0.0"));
    }
}
