//! The HTTP edge: two listeners (boot, admin), their routes, and an accept loop with the
//! limits a server facing thousands of firmware clients needs.

pub mod admin;
pub mod boot;
pub mod client_addr;
pub mod problem;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use client_addr::Peer;

/// Limits on what one client may cost the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time for a client to send its request headers (slow-loris guard).
    pub header_read_timeout: Duration,
    /// Time for a whole request to be answered.
    pub request_timeout: Duration,
    /// Largest request head, in bytes (hyper's minimum is 8 KiB).
    pub max_head_bytes: usize,
    pub max_headers: usize,
    /// Largest request body: every endpoint is a GET.
    pub max_body_bytes: usize,
    /// How long open connections may take to finish on shutdown.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 4 * 1024,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

pub fn boot_router(state: boot::BootState, limits: &Limits) -> Router {
    Router::new()
        .route("/boot.ipxe", get(boot::bootstrap))
        .route("/boot/v1/bootscript", get(boot::bootscript))
        .route("/boot/v1/bootparameters", get(boot::bootparameters))
        .route("/cloud-init/{doc}", get(boot::cloud_init_by_source))
        .route("/cloud-init/{id}/{doc}", get(boot::cloud_init_by_id))
        .fallback(boot::not_found)
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
}

pub fn admin_router(state: admin::AdminState, limits: &Limits) -> Router {
    Router::new()
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .route("/metrics", get(admin::metrics))
        .route("/nodes/{id}", get(admin::node))
        .fallback(admin::not_found)
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
}

/// Serves `router` on `listener` until `shutdown` completes, then lets open connections
/// finish (up to `limits.drain_timeout`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(Peer(peer));
                req
            });
        let conn =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!("connections still open after the drain timeout; closing them");
        }
    }
}
