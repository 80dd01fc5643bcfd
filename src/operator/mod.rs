//! `nodeboot run`: the operator. Watches NodeGroups, BootConfigs and Secrets; rebuilds the
//! serving snapshot when their specs change (every replica, so every replica serves); writes
//! status and events (the leader only).

mod inventory;
mod leader;
mod status;

pub use leader::LeaseSettings;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use kube::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cli::{AdvertiseUrlError, ServeArgs};
use crate::compile::ConfigCompiler;
use crate::listeners::{self, ListenError};
use crate::metrics::Metrics;
use crate::render::RenderSettings;
use crate::serving::{SharedSnapshot, Snapshot, StatusReport, build};
use inventory::Inventory;
use leader::Leadership;
use status::StatusWriter;

/// Changes that arrive within this window are resolved together: a `kubectl apply` of many
/// objects costs one rebuild, not one per object.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often the leader re-checks every status against the last report, to repair statuses
/// that someone else changed.
const RESYNC: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG): {0}")]
    Client(#[source] kube::Error),
    #[error("leader election could not start: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    AdvertiseUrl(#[from] AdvertiseUrlError),
}

pub struct OperatorConfig {
    pub namespace: Option<String>,
    /// `None`: no election, this replica always writes status.
    pub lease: Option<LeaseSettings>,
    pub serve: ServeArgs,
}

pub async fn run(config: OperatorConfig) -> Result<(), OperatorError> {
    let client = Client::try_default().await.map_err(OperatorError::Client)?;
    let settings = config.serve.render_settings()?;
    let metrics = Metrics::new();
    let snapshot: SharedSnapshot =
        Arc::new(ArcSwap::from_pointee(Snapshot::empty(settings.clone())));
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();

    let inventory = inventory::start(&client, config.namespace.as_deref(), shutdown.clone());
    let running = listeners::start(
        &config.serve,
        snapshot.clone(),
        metrics.clone(),
        ready.clone(),
        shutdown.clone(),
    )
    .await?;
    let leadership = match &config.lease {
        Some(lease) => Leadership::elect(client.clone(), lease).await?,
        None => Leadership::always(),
    };
    let instance = config
        .lease
        .as_ref()
        .map(|l| l.identity.clone())
        .unwrap_or_else(|| "nodeboot".into());

    let (report_tx, report_rx) = watch::channel::<Option<Arc<StatusReport>>>(None);
    let rebuild = tokio::spawn(rebuild_loop(
        inventory.clone(),
        snapshot,
        ready,
        metrics.clone(),
        settings,
        report_tx,
        shutdown.clone(),
    ));
    let writer = StatusWriter::new(client, metrics, instance);
    let statuses = tokio::spawn(status_loop(
        writer,
        inventory,
        report_rx,
        leadership.is_leader.clone(),
        shutdown.clone(),
    ));

    listeners::termination().await;
    tracing::info!("shutting down: draining connections and releasing the lease");
    shutdown.cancel();
    let _ = rebuild.await;
    let _ = statuses.await;
    leadership.release().await;
    for task in running.tasks {
        let _ = task.await;
    }
    Ok(())
}

async fn rebuild_loop(
    inventory: Inventory,
    snapshot: SharedSnapshot,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    settings: RenderSettings,
    reports: watch::Sender<Option<Arc<StatusReport>>>,
    shutdown: CancellationToken,
) {
    tokio::select! {
        () = shutdown.cancelled() => return,
        synced = inventory.wait_until_ready() => if synced.is_err() { return },
    }
    tracing::info!("caches synced");
    let mut compiler = Some(ConfigCompiler::default());
    let mut last_key = None;
    loop {
        let key = inventory.input_key();
        if last_key.as_ref() != Some(&key) {
            let desired = inventory.desired();
            let Some(mut c) = compiler.take() else { return };
            let started = Instant::now();
            let settings = settings.clone();
            let built = tokio::task::spawn_blocking(move || {
                let (snap, report) = build(&desired, &mut c, &settings);
                crate::memory::release_free_memory();
                (c, snap, report)
            })
            .await;
            let Ok((c, snap, report)) = built else {
                tracing::error!("snapshot build panicked; keeping the last snapshot");
                return;
            };
            compiler = Some(c);
            metrics.observe_rebuild(started.elapsed());
            tracing::info!(
                nodes = snap.nodes().len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "snapshot rebuilt"
            );
            snapshot.store(Arc::new(snap));
            ready.store(true, Ordering::Release);
            let _ = reports.send(Some(Arc::new(report)));
            last_key = Some(key);
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = inventory.changed.notified() => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(DEBOUNCE) => {}
        }
    }
}

async fn status_loop(
    writer: StatusWriter,
    inventory: Inventory,
    mut reports: watch::Receiver<Option<Arc<StatusReport>>>,
    mut is_leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    let mut retry_after: Option<Duration> = None;
    loop {
        let wait = retry_after.unwrap_or(RESYNC);
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = reports.changed() => if changed.is_err() { return },
            changed = is_leader.changed() => {
                if changed.is_err() { return }
                tracing::info!(leader = *is_leader.borrow(), "leadership changed");
            }
            () = tokio::time::sleep(wait) => {}
        }
        if !*is_leader.borrow() {
            continue;
        }
        let Some(report) = reports.borrow().clone() else {
            continue;
        };
        let failures = writer.write_all(&report, &inventory).await;
        retry_after = if failures > 0 {
            // Back off while the API server is away; catch up as soon as it answers.
            Some(retry_after.map_or(Duration::from_secs(1), |d| {
                (d * 2).min(Duration::from_secs(30))
            }))
        } else {
            None
        };
    }
}

/// One-shot: lists the inventory from the cluster and builds a snapshot, for `explain`.
pub async fn snapshot_from_cluster(
    namespace: Option<&str>,
    settings: &RenderSettings,
) -> Result<Snapshot, OperatorError> {
    use kube::api::{Api, ListParams};

    use crate::crd::{BootConfig, NodeGroup};
    use crate::serving::Desired;

    let client = Client::try_default().await.map_err(OperatorError::Client)?;
    let lp = ListParams::default();
    let (groups, configs, secrets) = match namespace {
        Some(ns) => (
            Api::<NodeGroup>::namespaced(client.clone(), ns)
                .list(&lp)
                .await,
            Api::<BootConfig>::namespaced(client.clone(), ns)
                .list(&lp)
                .await,
            Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client, ns)
                .list(&lp)
                .await,
        ),
        None => (
            Api::<NodeGroup>::all(client.clone()).list(&lp).await,
            Api::<BootConfig>::all(client.clone()).list(&lp).await,
            Api::<k8s_openapi::api::core::v1::Secret>::all(client)
                .list(&lp)
                .await,
        ),
    };
    let mut desired = Desired {
        node_groups: groups
            .map_err(OperatorError::Client)?
            .items
            .into_iter()
            .map(Arc::new)
            .collect(),
        boot_configs: configs.map_err(OperatorError::Client)?.items,
        ..Default::default()
    };
    // Secrets may be unreadable for this user; BootConfigs that need one then report it.
    if let Ok(secrets) = secrets {
        for s in &secrets.items {
            desired.secrets.insert(s);
        }
    }
    let (snapshot, _) = build(&desired, &mut ConfigCompiler::default(), settings);
    Ok(snapshot)
}
