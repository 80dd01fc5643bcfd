//! `nodeboot run`: the operator. The cluster's watches are the runtime's source (every replica
//! rebuilds and serves); the leader writes status and events from the runtime's reports.

mod inventory;
mod leader;
pub mod rollout;
mod status;

pub use inventory::Inventory;
pub use leader::LeaseSettings;

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use nodeboot_core::compile::ConfigCompiler;
use nodeboot_core::crd::{BootConfig, NodeGroup};
use nodeboot_core::render::RenderSettings;
use nodeboot_core::snapshot::{Desired, Snapshot, build};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::http::{BindError, ServerConfig};
use crate::runtime::{Reports, Runtime};
use leader::Leadership;
use status::StatusWriter;

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
    Listen(#[from] BindError),
    #[error(transparent)]
    Webhook(#[from] crate::webhook::WebhookError),
}

pub struct OperatorConfig {
    pub namespace: Option<String>,
    /// `None`: no election, this replica always writes status.
    pub lease: Option<LeaseSettings>,
    pub server: ServerConfig,
    /// How often boot records are published and rollout status written.
    pub tracking_interval: Duration,
    /// This replica's name in its boot-record objects: unique among replicas.
    pub replica: String,
    /// The validating admission webhook, when asked for.
    pub webhook: Option<crate::webhook::WebhookConfig>,
}

pub async fn run(config: OperatorConfig) -> Result<(), OperatorError> {
    let client = Client::try_default().await.map_err(OperatorError::Client)?;
    let runtime = Runtime::new(&config.server.render);
    let inventory = Inventory::start(&client, config.namespace.as_deref(), &runtime.shutdown);
    let leadership = match &config.lease {
        Some(lease) => Leadership::elect(client.clone(), lease).await?,
        None => Leadership::always(),
    };
    let instance = config
        .lease
        .as_ref()
        .map_or_else(|| "nodeboot".to_owned(), |l| l.identity.clone());
    let records_changed = Arc::new(tokio::sync::Notify::new());
    let rollouts = tokio::spawn(rollout::run(
        client.clone(),
        runtime.tracker.clone(),
        runtime.snapshot(),
        inventory.clone(),
        leadership.is_leader.clone(),
        rollout::RolloutSettings {
            replica: config.replica.clone(),
            home_namespace: config
                .namespace
                .clone()
                .or_else(|| config.lease.as_ref().map(|l| l.namespace.clone()))
                .unwrap_or_else(|| "default".into()),
            watch_namespace: config.namespace.clone(),
            interval: config.tracking_interval,
            changed: records_changed.clone(),
        },
        runtime.shutdown.clone(),
    ));
    let webhook = match &config.webhook {
        Some(webhook) => Some(
            crate::webhook::Webhook::start(
                client.clone(),
                webhook,
                inventory.node_groups.clone(),
                inventory.secrets.clone(),
                leadership.is_leader.clone(),
                runtime.metrics.clone(),
                &runtime.shutdown,
            )
            .await?,
        ),
        None => None,
    };
    let writer = StatusWriter::new(
        client,
        runtime.metrics.clone(),
        runtime.tracker.clone(),
        instance,
    );
    let statuses = tokio::spawn(status_loop(
        writer,
        inventory.clone(),
        runtime.reports(),
        leadership.is_leader.clone(),
        records_changed,
        runtime.shutdown.clone(),
    ));
    let served = runtime.run(inventory, &config.server).await;
    let _ = statuses.await;
    let _ = rollouts.await;
    if let Some(webhook) = webhook {
        webhook.stopped().await;
    }
    leadership.release().await;
    Ok(served?)
}

async fn status_loop(
    writer: StatusWriter,
    inventory: Inventory,
    mut reports: Reports,
    mut is_leader: watch::Receiver<bool>,
    records_changed: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let mut retry_after: Option<Duration> = None;
    loop {
        let wait = retry_after.unwrap_or(RESYNC);
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = reports.changed() => if changed.is_err() { return },
            // Boot records changed (at most once per tracking interval): node generations.
            () = records_changed.notified() => {}
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
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, ListParams};

    let client = Client::try_default().await.map_err(OperatorError::Client)?;
    let lp = ListParams::default();
    let groups: Api<NodeGroup> = inventory::api(&client, namespace);
    let configs: Api<BootConfig> = inventory::api(&client, namespace);
    let secrets: Api<Secret> = inventory::api(&client, namespace);
    let mut desired = Desired {
        node_groups: groups
            .list(&lp)
            .await
            .map_err(OperatorError::Client)?
            .items
            .into_iter()
            .map(Arc::new)
            .collect(),
        boot_configs: configs
            .list(&lp)
            .await
            .map_err(OperatorError::Client)?
            .items,
        ..Default::default()
    };
    // Secrets may be unreadable for this user; BootConfigs that need one then report it.
    let opted_in = ListParams::default().labels(nodeboot_core::labels::USER_DATA_SECRET_SELECTOR);
    if let Ok(secrets) = secrets.list(&opted_in).await {
        for s in &secrets.items {
            desired.secrets.insert(s);
        }
    }
    let (snapshot, _) = build(&desired, &mut ConfigCompiler::default(), settings);
    Ok(snapshot)
}

/// One-shot: every replica's boot records, merged, for `explain`.
pub async fn records_from_cluster(
    namespace: Option<&str>,
) -> Result<crate::tracking::Remote, OperatorError> {
    let client = Client::try_default().await.map_err(OperatorError::Client)?;
    Ok(rollout::records_from_cluster(&client, namespace).await)
}
