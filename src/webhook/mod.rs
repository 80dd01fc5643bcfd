//! The validating admission webhook of `nodeboot run`: BootConfigs and NodeGroups are checked
//! by the core's own rules when they are applied, so a broken one is refused at `kubectl
//! apply` instead of waiting in status. Status stays the second line of defence (for objects
//! made while no replica answered, or racing another apply).
//!
//! `review.rs` decides, `handler.rs` is the HTTP side, `server.rs` the TLS listener,
//! `certs.rs` issues certificates and `rotation.rs` keeps them current.

mod certs;
mod handler;
mod review;
mod rotation;
mod server;

pub use certs::Subject;
pub use rotation::{CertSource, ManagedCerts};

use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::runtime::reflector::Store;
use nodeboot_core::crd::NodeGroup;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What `nodeboot run --webhook-listen ...` asks for.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    pub certs: CertSource,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot listen on {addr} (webhook listener): {source}; is another process using it?")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up TLS for the webhook listener: {0}")]
    Tls(#[from] rustls::Error),
}

/// The running webhook: its listener and certificate keeper.
pub struct Webhook {
    pub addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Webhook {
    /// Binds the listener and starts serving; the operator's watches answer the questions.
    pub async fn start(
        client: Client,
        config: &WebhookConfig,
        node_groups: Store<NodeGroup>,
        secrets: Store<Secret>,
        is_leader: watch::Receiver<bool>,
        metrics: Arc<crate::metrics::Metrics>,
        shutdown: &CancellationToken,
    ) -> Result<Webhook, WebhookError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| WebhookError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = server::local_addr(&listener, config.listen);
        let resolver = Arc::new(server::CertResolver::default());
        let acceptor = server::tls_acceptor(resolver.clone())?;
        let router = handler::router(handler::ReviewState {
            client: client.clone(),
            node_groups,
            secrets,
            metrics,
        });
        let keeper = tokio::spawn(rotation::keep_certificates(
            client,
            config.certs.clone(),
            resolver,
            is_leader,
            shutdown.clone(),
        ));
        let serving = tokio::spawn(server::serve(listener, acceptor, router, shutdown.clone()));
        tracing::info!(webhook = %addr, "webhook listening (POST /validate)");
        Ok(Webhook {
            addr,
            tasks: vec![keeper, serving],
        })
    }

    /// Waits until the listener has drained after shutdown.
    pub async fn stopped(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
