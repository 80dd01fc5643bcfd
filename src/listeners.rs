//! Starting the boot and admin listeners over a shared snapshot: the part `serve` and the
//! operator have in common.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::http::{self, Limits, admin::AdminState, boot::BootState};
use crate::metrics::Metrics;
use crate::render::ipxe;
use crate::serving::SharedSnapshot;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr} ({what}): {source}; is another process using it?")]
    Bind {
        addr: std::net::SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    AdvertiseUrl(#[from] crate::cli::AdvertiseUrlError),
}

pub struct Running {
    pub boot_addr: std::net::SocketAddr,
    pub admin_addr: std::net::SocketAddr,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Pending connections the kernel may queue per listener. A power-cycled rack opens thousands of
/// connections at once; at the usual 128 the kernel drops the overflow and each of those nodes
/// waits a second or more for its SYN to be retried.
const LISTEN_BACKLOG: u32 = 4096;

fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

pub async fn start(
    args: &ServeArgs,
    snapshot: SharedSnapshot,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> Result<Running, ListenError> {
    let limits = Limits::default();
    let server_url = args.advertise_url()?;
    let boot = bind(args.listen).map_err(|source| ListenError::Bind {
        addr: args.listen,
        what: "boot listener",
        source,
    })?;
    let admin = bind(args.admin_listen).map_err(|source| ListenError::Bind {
        addr: args.admin_listen,
        what: "admin listener",
        source,
    })?;
    let boot_addr = boot.local_addr().unwrap_or(args.listen);
    let admin_addr = admin.local_addr().unwrap_or(args.admin_listen);
    let boot_state = BootState {
        snapshot: snapshot.clone(),
        metrics: metrics.clone(),
        access: Arc::new(args.access_policy()),
        bootstrap: Bytes::from(ipxe::bootstrap(&server_url)),
    };
    let admin_state = AdminState {
        snapshot,
        metrics,
        ready,
    };
    let boot_router = http::boot_router(boot_state, &limits);
    let admin_router = http::admin_router(admin_state, &limits);
    let s1 = shutdown.clone();
    let s2 = shutdown;
    let tasks = vec![
        tokio::spawn(
            async move { http::serve(boot, boot_router, limits, s1.cancelled_owned()).await },
        ),
        tokio::spawn(async move {
            http::serve(admin, admin_router, limits, s2.cancelled_owned()).await
        }),
    ];
    tracing::info!(boot = %boot_addr, admin = %admin_addr, advertise = %server_url, "listening");
    Ok(Running {
        boot_addr,
        admin_addr,
        tasks,
    })
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn termination() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
