//! One nodeboot process, whichever the source of its inputs: a rebuild loop that turns the
//! source's desired state into a snapshot and swaps it in, the two listeners serving it, and
//! shutdown on SIGTERM. `nodeboot serve` plugs in the manifest folder, `nodeboot run` the
//! cluster's watches (and a status writer that follows the reports).

mod report_log;
mod source;

pub use report_log::ReportLog;
pub use source::Source;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use nodeboot_core::compile::ConfigCompiler;
use nodeboot_core::render::RenderSettings;
use nodeboot_core::report::StatusReport;
use nodeboot_core::snapshot::{Snapshot, build};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::http::{BindError, Listeners, ServerConfig, SharedSnapshot};
use crate::metrics::Metrics;

/// The latest status report; `None` until the first build.
pub type Reports = watch::Receiver<Option<Arc<StatusReport>>>;

/// The shared parts of a running process.
pub struct Runtime {
    pub metrics: Arc<Metrics>,
    /// Cancelled on SIGTERM or Ctrl-C; every task stops on it.
    pub shutdown: CancellationToken,
    snapshot: SharedSnapshot,
    ready: Arc<AtomicBool>,
    reports: watch::Sender<Option<Arc<StatusReport>>>,
}

impl Runtime {
    pub fn new(settings: &RenderSettings) -> Runtime {
        Runtime {
            metrics: Metrics::new(),
            shutdown: CancellationToken::new(),
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::empty(settings.clone()))),
            ready: Arc::new(AtomicBool::new(false)),
            reports: watch::channel(None).0,
        }
    }

    /// Follows the status reports of every build.
    pub fn reports(&self) -> Reports {
        self.reports.subscribe()
    }

    /// Serves until SIGTERM or Ctrl-C: listeners up first (so `/healthz` answers), then the
    /// rebuild loop; `/readyz` turns ok after the first build.
    pub async fn run(self, source: impl Source, config: &ServerConfig) -> Result<(), BindError> {
        let listeners = Listeners::start(
            config,
            self.snapshot.clone(),
            self.metrics.clone(),
            self.ready.clone(),
            &self.shutdown,
        )?;
        let shutdown = self.shutdown.clone();
        let rebuild = tokio::spawn(rebuild_loop(
            source,
            RebuildTargets {
                snapshot: self.snapshot,
                ready: self.ready,
                metrics: self.metrics,
                reports: self.reports,
            },
            config.render.clone(),
            shutdown.clone(),
        ));
        tokio::select! {
            () = termination() => {}
            () = shutdown.cancelled() => {}
        }
        tracing::info!("shutting down: draining open connections");
        shutdown.cancel();
        let _ = rebuild.await;
        listeners.stopped().await;
        Ok(())
    }
}

struct RebuildTargets {
    snapshot: SharedSnapshot,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    reports: watch::Sender<Option<Arc<StatusReport>>>,
}

/// Waits for the source to change, builds, swaps. Building is CPU work: it runs in place on a
/// worker that the runtime hands off (`block_in_place`), so the reactor keeps answering nodes
/// and the compiler's last good versions stay owned by this loop.
async fn rebuild_loop(
    mut source: impl Source,
    targets: RebuildTargets,
    settings: RenderSettings,
    shutdown: CancellationToken,
) {
    let mut compiler = ConfigCompiler::default();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = source.changed() => {}
        }
        let started = Instant::now();
        let built = tokio::task::block_in_place(|| {
            let desired = source.load()?;
            let built = std::panic::catch_unwind(AssertUnwindSafe(|| {
                build(&desired, &mut compiler, &settings)
            }));
            Some(built)
        });
        let (next, report) = match built {
            None => continue,
            Some(Ok(built)) => built,
            Some(Err(_)) => {
                tracing::error!("snapshot build panicked; serving the last snapshot");
                continue;
            }
        };
        targets.metrics.observe_rebuild(started.elapsed());
        tracing::info!(
            nodes = next.nodes().len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot rebuilt"
        );
        targets.snapshot.store(Arc::new(next));
        targets.ready.store(true, Ordering::Release);
        targets.reports.send_replace(Some(Arc::new(report)));
        // The previous snapshot is gone once its last request finishes; give back what the
        // rebuild used meanwhile.
        tokio::task::spawn_blocking(crate::memory::release_free_memory);
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn termination() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops nodeboot");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
