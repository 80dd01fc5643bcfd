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
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use nodeboot_core::compile::ConfigCompiler;
use nodeboot_core::render::RenderSettings;
use nodeboot_core::report::StatusReport;
use nodeboot_core::snapshot::{Snapshot, rebuild};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::http::admin::Readiness;
use crate::http::{BindError, Listeners, ServerConfig, SharedSnapshot};
use crate::metrics::Metrics;
use crate::tracking::Tracker;

/// The latest status report; `None` until the first build.
pub type Reports = watch::Receiver<Option<Arc<StatusReport>>>;

/// The shared parts of a running process.
pub struct Runtime {
    pub metrics: Arc<Metrics>,
    /// Cancelled on SIGTERM or Ctrl-C; every task stops on it.
    pub shutdown: CancellationToken,
    snapshot: SharedSnapshot,
    readiness: Arc<Readiness>,
    reports: watch::Sender<Option<Arc<StatusReport>>>,
    /// Boot tracking: what each node fetched, recorded by the boot listener.
    pub tracker: Arc<Tracker>,
}

impl Runtime {
    pub fn new(settings: &RenderSettings) -> Runtime {
        Runtime {
            metrics: Metrics::new(),
            shutdown: CancellationToken::new(),
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::empty(settings.clone()))),
            readiness: Arc::default(),
            reports: watch::channel(None).0,
            tracker: Tracker::new(),
        }
    }

    /// The snapshot in service (swapped whole on every rebuild).
    pub fn snapshot(&self) -> SharedSnapshot {
        self.snapshot.clone()
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
            self.readiness.clone(),
            self.tracker.clone(),
            &self.shutdown,
        )?;
        tokio::spawn(crate::tracking::follow_snapshots(
            self.tracker.clone(),
            self.snapshot.clone(),
            self.reports.subscribe(),
            self.shutdown.clone(),
        ));
        let shutdown = self.shutdown.clone();
        let rebuild = tokio::spawn(rebuild_loop(
            source,
            RebuildTargets {
                snapshot: self.snapshot,
                readiness: self.readiness,
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
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    reports: watch::Sender<Option<Arc<StatusReport>>>,
}

/// After a failed rebuild, the same inputs are tried again after this long (doubling, to at most
/// `RETRY_MAX`), unless they change first.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Waits for the source to change, builds, swaps. Building is CPU work: it runs in place on a
/// worker that the runtime hands off (`block_in_place`), so the reactor keeps answering nodes
/// and the compiler's last good versions stay owned by this loop. A build that panics leaves
/// the last snapshot in service, is reported, and is tried again.
async fn rebuild_loop(
    mut source: impl Source,
    targets: RebuildTargets,
    settings: RenderSettings,
    shutdown: CancellationToken,
) {
    let mut compiler = ConfigCompiler::default();
    // Inputs whose build failed, and when to try them again.
    let mut failed: Option<(nodeboot_core::snapshot::Desired, Duration)> = None;
    loop {
        let retry_in = failed.as_ref().map_or(Duration::MAX, |(_, d)| *d);
        let retry = tokio::select! {
            () = shutdown.cancelled() => return,
            () = source.changed() => false,
            () = tokio::time::sleep(retry_in) => true,
        };
        let started = Instant::now();
        let attempt = tokio::task::block_in_place(|| {
            let earlier = failed.take();
            // The wait before this attempt, when it retries a failed one.
            let (desired, waited) = match (retry, earlier) {
                (true, Some((desired, wait))) => (desired, Some(wait)),
                (_, earlier) => {
                    match std::panic::catch_unwind(AssertUnwindSafe(|| source.load())) {
                        Ok(Some(loaded)) => (loaded, None),
                        Ok(None) => {
                            let (desired, wait) = earlier?;
                            (desired, Some(wait))
                        }
                        Err(panic) => return Some(Err((panic, None))),
                    }
                }
            };
            // Nodes whose inputs did not change keep the serving snapshot's renderings.
            let serving = targets.snapshot.load_full();
            let built = std::panic::catch_unwind(AssertUnwindSafe(|| {
                rebuild(&desired, &mut compiler, &settings, &serving)
            }));
            Some(built.map_err(|panic| (panic, Some((desired, waited)))))
        });
        let (next, report) = match attempt {
            None => continue,
            Some(Ok(built)) => built,
            Some(Err((panic, retry_with))) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                tracing::error!(panic = %why, "snapshot rebuild failed; serving the last snapshot");
                targets.metrics.rebuild_failures.inc();
                targets.readiness.failed(why);
                // Inputs that were read are tried again later; a source that failed to read is
                // read again at its next change.
                failed = retry_with.map(|(desired, waited)| {
                    let wait = waited.map_or(RETRY_FIRST, |w| (w * 2).min(RETRY_MAX));
                    (desired, wait)
                });
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
        targets.readiness.built();
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use nodeboot_core::snapshot::{Desired, Identity, Query, Subject};
    use tokio::sync::Notify;

    use super::*;
    use crate::http::{AccessPolicy, Limits};

    /// A source that hands out scripted loads, one per change: `None` is a load that panics.
    struct Scripted {
        loads: Arc<Mutex<VecDeque<Option<Desired>>>>,
        change: Arc<Notify>,
    }

    impl Source for Scripted {
        async fn changed(&mut self) {
            self.change.notified().await;
        }

        fn load(&mut self) -> Option<Desired> {
            let next = self.loads.lock().unwrap().pop_front().flatten();
            Some(next.expect("a scripted panic while loading"))
        }
    }

    fn example_site() -> Desired {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        crate::manifests::ManifestFolder::open(dir)
            .unwrap()
            .read()
            .unwrap()
    }

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never: {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_rebuild_keeps_the_last_snapshot_and_says_so() {
        let settings = RenderSettings {
            server_url: "http://127.0.0.1:8080".into(),
            retry_max_delay: 60,
        };
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            render: settings.clone(),
            access: AccessPolicy::default(),
            limits: Limits::default(),
            firmware_dir: None,
        };
        let site = example_site();
        let mut smaller = site.clone();
        smaller.node_groups.truncate(1);
        let loads = Arc::new(Mutex::new(VecDeque::from([
            Some(site),
            None,
            Some(smaller),
        ])));
        let change = Arc::new(Notify::new());
        let runtime = Runtime::new(&settings);
        let (snapshot, readiness, metrics, shutdown) = (
            runtime.snapshot.clone(),
            runtime.readiness.clone(),
            runtime.metrics.clone(),
            runtime.shutdown.clone(),
        );
        let source = Scripted {
            loads: loads.clone(),
            change: change.clone(),
        };
        let running = tokio::spawn(async move { runtime.run(source, &config).await });
        let known = |snapshot: &SharedSnapshot, name: &str| {
            let snapshot = snapshot.load();
            matches!(
                snapshot
                    .answer(&Query::new(Identity::Name(name.into())))
                    .subject,
                Subject::Known(_)
            )
        };
        change.notify_one();
        eventually("the first build", || readiness.is_built()).await;
        let nodes = snapshot.load().nodes().len();
        assert!(nodes > 2);

        // The next load panics: the snapshot stays, readiness and metrics say so.
        change.notify_one();
        eventually("the failure is reported", || readiness.failure().is_some()).await;
        assert_eq!(metrics.rebuild_failures.get(), 1);
        assert_eq!(snapshot.load().nodes().len(), nodes);
        assert!(known(&snapshot, "x1000c0s0b0n0"));
        assert!(
            readiness
                .failure()
                .unwrap()
                .contains("a scripted panic while loading")
        );

        // The next change builds again and clears the failure.
        change.notify_one();
        eventually("the rebuild after the failure", || {
            readiness.failure().is_none() && snapshot.load().nodes().len() < nodes
        })
        .await;
        shutdown.cancel();
        running.await.unwrap().unwrap();
    }
}
