//! `nodeboot serve --manifests DIR`: the whole boot service without a cluster. The directory
//! is polled for changes (size and mtime of every file, four times a second) rather than
//! watched with inotify: polling sees every change on every filesystem, including a ConfigMap
//! volume's symlink swap, and costs a few stat calls.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::cli::{AdvertiseUrlError, ServeArgs};
use crate::compile::ConfigCompiler;
use crate::listeners::{self, ListenError};
use crate::manifests::{Fingerprint, ManifestError, ManifestSource, fingerprint};
use crate::metrics::Metrics;
use crate::render::RenderSettings;
use crate::serving::{SharedSnapshot, Snapshot, StatusReport, build};

const POLL_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error(transparent)]
    Manifests(#[from] ManifestError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    AdvertiseUrl(#[from] AdvertiseUrlError),
    #[error("the reload task failed: {0}")]
    Task(String),
}

/// Loads manifests and builds snapshots, remembering what it last reported so that a reload
/// logs only what changed.
pub struct Reloader {
    source: ManifestSource,
    compiler: ConfigCompiler,
    settings: RenderSettings,
    reported: HashMap<(String, String, String), String>,
}

impl Reloader {
    pub fn new(dir: PathBuf, settings: RenderSettings) -> Reloader {
        Reloader {
            source: ManifestSource::new(dir),
            compiler: ConfigCompiler::default(),
            settings,
            reported: HashMap::new(),
        }
    }

    /// Reads the directory and builds a snapshot; file errors are logged, not fatal.
    pub fn reload(&mut self) -> Result<(Snapshot, StatusReport), ManifestError> {
        let started = Instant::now();
        let loaded = self.source.load()?;
        for e in &loaded.errors {
            tracing::error!(error = %e, "manifest refused; its last good version (if any) stays in force");
        }
        let parsed = started.elapsed();
        let (snapshot, report) = build(&loaded.desired, &mut self.compiler, &self.settings);
        tracing::debug!(
            load_ms = parsed.as_millis() as u64,
            build_ms = (started.elapsed() - parsed).as_millis() as u64,
            "manifests loaded and built"
        );
        self.log_changes(&report);
        Ok((snapshot, report))
    }

    fn log_changes(&mut self, report: &StatusReport) {
        let mut now = HashMap::new();
        for g in &report.node_groups {
            let line = format!("{}: {}", g.ready.reason, g.ready.message);
            let key = ("NodeGroup".to_owned(), g.namespace.clone(), g.name.clone());
            if self.reported.get(&key) != Some(&line) {
                if g.ready.ready {
                    tracing::info!(namespace = %g.namespace, nodegroup = %g.name, nodes = g.status.node_count, assigned = g.status.assigned_count, "{}", g.ready.message);
                } else {
                    tracing::warn!(namespace = %g.namespace, nodegroup = %g.name, reason = g.ready.reason, "{}", g.ready.message);
                    for n in g
                        .status
                        .nodes
                        .iter()
                        .filter(|n| !n.message.is_empty())
                        .take(20)
                    {
                        tracing::warn!(namespace = %g.namespace, nodegroup = %g.name, node = %n.name, phase = n.phase.as_str(), "{}", n.message);
                    }
                }
            }
            now.insert(key, line);
        }
        for c in &report.boot_configs {
            let line = format!("{}: {}", c.ready.reason, c.ready.message);
            let key = ("BootConfig".to_owned(), c.namespace.clone(), c.name.clone());
            if self.reported.get(&key) != Some(&line) {
                if c.ready.ready {
                    tracing::info!(namespace = %c.namespace, bootconfig = %c.name, matched = c.matched_nodes, "{}", c.ready.message);
                } else {
                    tracing::warn!(namespace = %c.namespace, bootconfig = %c.name, reason = c.ready.reason, "{}", c.ready.message);
                }
            }
            now.insert(key, line);
        }
        self.reported = now;
    }
}

pub async fn run(dir: PathBuf, args: ServeArgs) -> Result<(), StandaloneError> {
    let settings = args.render_settings()?;
    let metrics = Metrics::new();
    let snapshot: SharedSnapshot =
        Arc::new(ArcSwap::from_pointee(Snapshot::empty(settings.clone())));
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();

    let mut reloader = Reloader::new(dir.clone(), settings);
    let mut seen: Fingerprint = fingerprint(&dir)?;
    let (reloader_back, first) = rebuild(reloader, &metrics).await?;
    reloader = reloader_back;
    let (first, report) = first?;
    drop(report);
    tracing::info!(dir = %dir.display(), nodes = first.nodes().len(), "manifests loaded");
    snapshot.store(Arc::new(first));
    crate::memory::release_free_memory();
    ready.store(true, Ordering::Release);

    let running = listeners::start(
        &args,
        snapshot.clone(),
        metrics.clone(),
        ready,
        shutdown.clone(),
    )
    .await?;
    let stop = listeners::termination();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
        let current = match fingerprint(&dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the manifest directory; serving the last good state");
                continue;
            }
        };
        if current == seen {
            continue;
        }
        seen = current;
        let (reloader_back, result) = rebuild(reloader, &metrics).await?;
        reloader = reloader_back;
        match result {
            Ok((next, report)) => {
                drop(report);
                tracing::info!(nodes = next.nodes().len(), "manifests reloaded");
                snapshot.store(Arc::new(next));
                // The previous snapshot is gone once its last request finishes; give back
                // what the rebuild used meanwhile.
                tokio::task::spawn_blocking(crate::memory::release_free_memory);
            }
            Err(e) => tracing::error!(error = %e, "reload failed; serving the last good state"),
        }
    }
    tracing::info!("shutting down: draining open connections");
    shutdown.cancel();
    for task in running.tasks {
        let _ = task.await;
    }
    Ok(())
}

type Rebuilt = (Reloader, Result<(Snapshot, StatusReport), ManifestError>);

/// Resolution and rendering are CPU work: they run on a blocking thread, off the reactor that
/// answers nodes.
async fn rebuild(mut reloader: Reloader, metrics: &Metrics) -> Result<Rebuilt, StandaloneError> {
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        let r = reloader.reload();
        (reloader, r)
    })
    .await
    .map_err(|e| StandaloneError::Task(e.to_string()))?;
    metrics.observe_rebuild(started.elapsed());
    Ok(result)
}
