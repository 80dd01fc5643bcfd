//! The tree nginx serves: for every storm request, the exact bytes nodeboot answers, from
//! `Snapshot::answer` (the one place that decides), at the path nginx maps the URL to.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use nodeboot_core::snapshot::{DocumentError, Snapshot};

use crate::requests::{Ask, StormRequest};

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// Static files cannot reproduce a non-200 answer: the request list must avoid them.
    #[error("{path}: nodeboot would not answer 200 ({source}), which nginx cannot reproduce")]
    NotServed { path: String, source: DocumentError },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The body nodeboot answers `request` with (its status is 200: a waiting node's script too).
pub fn expected_body(snapshot: &Snapshot, request: &StormRequest) -> Result<Bytes, TreeError> {
    let query = request.query();
    let answer = snapshot.answer(&query);
    match &request.ask {
        Ask::Bootscript(_) | Ask::Discovery(_) => Ok(answer.script()),
        Ask::CloudInit { doc, .. } => {
            answer
                .document(*doc)
                .map_err(|source| TreeError::NotServed {
                    path: request.path(),
                    source,
                })
        }
    }
}

/// Body sizes of one kind of answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sizes {
    pub count: usize,
    pub min: usize,
    pub max: usize,
    pub total: usize,
}

impl Sizes {
    fn add(&mut self, len: usize) {
        self.min = if self.count == 0 {
            len
        } else {
            self.min.min(len)
        };
        self.max = self.max.max(len);
        self.count += 1;
        self.total += len;
    }
}

/// What was written, by kind (bootscript, meta-data, ...).
#[derive(Debug, Default)]
pub struct TreeSummary {
    pub by_kind: BTreeMap<&'static str, Sizes>,
}

impl fmt::Display for TreeSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: usize = self.by_kind.values().map(|s| s.count).sum();
        write!(f, "{files} files; body bytes")?;
        for (kind, s) in &self.by_kind {
            let mean = s.total as f64 / s.count.max(1) as f64;
            write!(
                f,
                " {kind}: {} min {} max {} mean {mean:.1};",
                s.count, s.min, s.max
            )?;
        }
        Ok(())
    }
}

/// Writes every request's expected body under `dir` (created if missing).
pub fn write_tree(
    snapshot: &Snapshot,
    requests: &[StormRequest],
    dir: &Path,
) -> Result<TreeSummary, TreeError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TreeError::Io { path, source }
    };
    let mut made_dirs = HashSet::new();
    let mut summary = TreeSummary::default();
    for request in requests {
        let body = expected_body(snapshot, request)?;
        let path = dir.join(request.tree_file());
        if let Some(parent) = path.parent()
            && made_dirs.insert(parent.to_owned())
        {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, &body).map_err(io(&path))?;
        let kind = match &request.ask {
            Ask::Bootscript(_) => "bootscript",
            Ask::Discovery(_) => "discovery",
            Ask::CloudInit { doc, .. } => doc.name(),
        };
        summary.by_kind.entry(kind).or_default().add(body.len());
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::storm_requests;
    use crate::synthetic;
    use nodeboot_core::compile::ConfigCompiler;
    use nodeboot_core::mac::Mac;
    use nodeboot_core::render::RenderSettings;
    use nodeboot_core::render::cloud_init::Document;
    use nodeboot_core::snapshot::{Identity, Query, build};

    #[test]
    fn writes_what_answer_says() {
        let settings = RenderSettings {
            server_url: "http://127.0.0.1:8123".into(),
            retry_max_delay: 30,
        };
        let (snapshot, _) = build(
            &synthetic::site(12),
            &mut ConfigCompiler::default(),
            &settings,
        );
        let requests = storm_requests(&snapshot);
        let dir = tempfile::tempdir().unwrap();
        let summary = write_tree(&snapshot, &requests, dir.path()).unwrap();
        assert_eq!(summary.by_kind["bootscript"].count, 12);
        assert_eq!(summary.by_kind["vendor-data"].count, 12);

        // Node 7 of cabinet 0 is pinned to the debug image; its answers as the core gives them.
        let mac: Mac = synthetic::node_mac(7).parse().unwrap();
        let query = Query::new(Identity::Mac(mac));
        let by_mac = snapshot.answer(&query);
        let script = std::fs::read(dir.path().join(format!("bootscript/{mac}"))).unwrap();
        assert_eq!(script, by_mac.script());
        assert!(
            String::from_utf8(script)
                .unwrap()
                .contains("/debug/vmlinuz")
        );
        let name = synthetic::node_name(0, 7);
        for doc in [Document::MetaData, Document::UserData, Document::VendorData] {
            let file = dir.path().join(format!("cloud-init/{name}/{}", doc.name()));
            assert_eq!(
                std::fs::read(file).unwrap(),
                by_mac.document(doc).unwrap(),
                "{}",
                doc.name()
            );
        }
    }

    /// The discovery storm measures rendering for a stranger, not the waiting script: the
    /// site's discovery image renders for a MAC no NodeGroup lists.
    #[test]
    fn unknown_macs_get_the_discovery_image() {
        let settings = RenderSettings {
            server_url: "http://127.0.0.1:8123".into(),
            retry_max_delay: 30,
        };
        let (snapshot, _) = build(
            &synthetic::site(10),
            &mut ConfigCompiler::default(),
            &settings,
        );
        let requests = crate::requests::discovery_requests(2);
        let dir = tempfile::tempdir().unwrap();
        let summary = write_tree(&snapshot, &requests, dir.path()).unwrap();
        assert_eq!(summary.by_kind["discovery"].count, 2);
        let mac = synthetic::unknown_mac(1);
        let script = std::fs::read_to_string(dir.path().join(format!("discovery/{mac}"))).unwrap();
        assert!(script.contains("/discovery/vmlinuz"), "{script}");
        assert!(
            script.contains(&format!("nodeboot.discover={mac}")),
            "{script}"
        );
    }

    #[test]
    fn refuses_an_answer_that_is_not_200() {
        let settings = RenderSettings {
            server_url: "http://127.0.0.1:8123".into(),
            retry_max_delay: 30,
        };
        let (snapshot, _) = build(
            &synthetic::site(1),
            &mut ConfigCompiler::default(),
            &settings,
        );
        let missing = StormRequest {
            ask: Ask::CloudInit {
                name: "no-such-node".into(),
                doc: Document::MetaData,
            },
            node_ip: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let err = write_tree(&snapshot, &[missing], dir.path()).unwrap_err();
        assert!(matches!(err, TreeError::NotServed { .. }), "{err}");
    }
}
