//! Leader election on a Lease: every replica serves, only the leader writes status.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// Seconds a lease stays valid without renewal: the longest hand-over after a leader dies.
    pub duration: u64,
}

pub struct Leadership {
    /// True while this replica holds the lease.
    pub is_leader: watch::Receiver<bool>,
    /// Keeps the channel of a replica without election open; `None` with election.
    _always: Option<watch::Sender<bool>>,
    task: Option<
        JoinHandle<Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError>>,
    >,
}

impl Leadership {
    /// A replica that always leads: a single replica, or tests.
    pub fn always() -> Leadership {
        let (tx, rx) = watch::channel(true);
        Leadership {
            is_leader: rx,
            _always: Some(tx),
            task: None,
        }
    }

    pub async fn elect(
        client: Client,
        lease: &LeaseSettings,
    ) -> Result<Leadership, kube_lease_manager::LeaseManagerError> {
        // Renew a third of the lease time before it runs out, so a slow API server round-trip
        // does not lose the lease.
        let grace = (lease.duration / 3).max(1);
        let manager = LeaseManagerBuilder::new(client, &lease.name)
            .with_namespace(&lease.namespace)
            .with_identity(&lease.identity)
            .with_duration(lease.duration)
            .with_grace(grace)
            .build()
            .await?;
        let (rx, task) = manager.watch().await;
        tracing::info!(lease = %lease.name, namespace = %lease.namespace, identity = %lease.identity, "leader election started");
        Ok(Leadership {
            is_leader: rx,
            _always: None,
            task: Some(task),
        })
    }

    /// Gives the lease up (when held) so another replica takes over at once.
    pub async fn release(self) {
        let Leadership {
            is_leader, task, ..
        } = self;
        drop(is_leader);
        if let Some(task) = task {
            match task.await {
                Ok(Ok(_)) => tracing::info!("lease released"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "lease release failed; it expires by itself")
                }
                Err(e) => tracing::warn!(error = %e, "lease task failed"),
            }
        }
    }
}
