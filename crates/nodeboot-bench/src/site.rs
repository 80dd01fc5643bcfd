//! The synthetic site built from the core, as `nodeboot serve --manifests` and the bench tools
//! need it: manifests on disk, or the snapshot nodeboot would build from them.

use std::path::{Path, PathBuf};

use nodeboot_core::compile::ConfigCompiler;
use nodeboot_core::render::RenderSettings;
use nodeboot_core::snapshot::{Snapshot, build};

use crate::requests::{StormRequest, discovery_requests, storm_requests};
use crate::synthetic;

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("serialising the site: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
}

/// Writes the site of `nodes` nodes into `dir` (created if missing), one file per NodeGroup and
/// one for the BootConfigs.
pub fn write_manifests(nodes: usize, dir: &Path) -> Result<(), SiteError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SiteError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for (name, text) in synthetic::site_manifests(&synthetic::site(nodes))? {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(())
}

/// The snapshot of the site of `nodes` nodes, rendered with `settings`: what nodeboot serves
/// once it has read the manifests `write_manifests` writes.
pub fn snapshot(nodes: usize, settings: &RenderSettings) -> Snapshot {
    build(
        &synthetic::site(nodes),
        &mut ConfigCompiler::default(),
        settings,
    )
    .0
}

/// The requests of a run: every node's four, then the discovery storm's, if any.
pub fn requests(snapshot: &Snapshot, discovery: usize) -> Vec<StormRequest> {
    let mut list = storm_requests(snapshot);
    list.extend(discovery_requests(discovery));
    list
}
