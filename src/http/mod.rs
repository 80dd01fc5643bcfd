//! The HTTP edge: two listeners (boot, admin) built from one `ServerConfig`, their routes with
//! request metrics in one place, and an accept loop with the limits a server facing thousands
//! of firmware clients needs. Handlers only translate: `Snapshot::answer` decides.

pub mod admin;
pub mod boot;
pub mod client_addr;
mod endpoint_history;
pub mod firmware;
pub mod grub;
mod instrument;
mod log_limit;
pub mod openchami;
mod phone_home;
pub mod problem;
mod requester;
mod tracked;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::http::{Request, StatusCode};
use axum::routing::{any, get, post};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use nodeboot_core::render::RenderSettings;
use nodeboot_core::snapshot::Snapshot;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::metrics::{Endpoint, Metrics};
use client_addr::Peer;
use instrument::instrumented;

/// The snapshot every request reads: swapped whole on change, read without a lock.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

/// Who may read cloud-init data, and which proxies may say who a client is.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    pub trusted_proxies: Vec<IpNet>,
    /// Serve a node that has an `ip` its cloud-init data only at that address.
    pub source_check: bool,
}

/// Everything the listeners need, worked out once from the command line.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// The advertised URL and the retry delay: what every script is rendered with.
    pub render: RenderSettings,
    pub access: AccessPolicy,
    pub limits: Limits,
    /// Served at `/firmware/` on the boot listener (`--firmware-dir`), when set.
    pub firmware_dir: Option<std::path::PathBuf>,
}

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
    /// Open connections on the boot listener; one more is closed at once (and counted), so a
    /// flood cannot take every file descriptor.
    pub max_connections: usize,
    /// How long a response write may make no progress: a client that stops reading gives its
    /// connection up instead of holding a slot for good. (An idle connection is closed by
    /// `header_read_timeout`: hyper starts it whenever it waits for a request head.)
    pub write_stall_timeout: Duration,
}

/// Open connections on the admin listener: probes and scrapes need few.
const ADMIN_MAX_CONNECTIONS: usize = 256;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 4 * 1024,
            drain_timeout: Duration::from_secs(10),
            max_connections: 16_384,
            write_stall_timeout: Duration::from_secs(10),
        }
    }
}

pub fn boot_router(state: boot::BootState, metrics: &Arc<Metrics>, limits: &Limits) -> Router {
    let m = |endpoint| (metrics.clone(), endpoint);
    let routes = [
        ("/boot.ipxe", Endpoint::bootstrap, get(boot::bootstrap)),
        (
            "/boot/v1/bootscript",
            Endpoint::bootscript,
            get(boot::bootscript),
        ),
        (
            "/boot/v1/bootparameters",
            Endpoint::bootparameters,
            get(openchami::bootparameters)
                .post(openchami::bootparameters_write)
                .put(openchami::bootparameters_write)
                .patch(openchami::bootparameters_write)
                .delete(openchami::bootparameters_write),
        ),
        ("/boot/v1/hosts", Endpoint::other, get(openchami::hosts)),
        (
            "/boot/v1/service/status",
            Endpoint::other,
            get(openchami::service_status),
        ),
        (
            "/boot/v1/service/status/all",
            Endpoint::other,
            get(openchami::service_status_all),
        ),
        (
            "/boot/v1/service/version",
            Endpoint::other,
            get(openchami::service_version),
        ),
        (
            "/boot/v1/service/storage/status",
            Endpoint::other,
            get(openchami::service_storage),
        ),
        (
            "/boot/v1/service/hsm",
            Endpoint::other,
            get(openchami::service_hsm),
        ),
        (
            "/cloud-init/version",
            Endpoint::other,
            get(openchami::cloud_init_version),
        ),
        ("/grub.cfg", Endpoint::grub_bootstrap, get(grub::bootstrap)),
        (
            "/boot/v1/grub.cfg",
            Endpoint::grub_config,
            get(grub::config),
        ),
        (
            "/cloud-init/{doc}",
            Endpoint::cloud_init,
            get(boot::cloud_init_by_source),
        ),
        (
            "/cloud-init/{id}/{doc}",
            Endpoint::cloud_init,
            get(boot::cloud_init_by_id),
        ),
        (
            "/cloud-init/{id}/phone-home",
            Endpoint::phone_home,
            post(phone_home::phone_home),
        ),
        (
            "/boot/v1/endpoint-history",
            Endpoint::endpoint_history,
            get(endpoint_history::endpoint_history),
        ),
    ];
    routes
        .into_iter()
        .fold(Router::new(), |router, (path, endpoint, handler)| {
            router.route(path, instrumented(m(endpoint), handler))
        })
        .fallback(instrumented(m(Endpoint::other), any(boot::not_found)))
        .with_state(state)
        .layer(axum::Extension(openchami::ListingLimit::default()))
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(tower::util::MapResponseLayer::new(
            problem::every_error_a_problem,
        ))
}

pub fn admin_router(state: admin::AdminState, limits: &Limits) -> Router {
    Router::new()
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .route("/metrics", get(admin::metrics))
        .route("/nodes/{id}", get(admin::node))
        .route(
            "/cloud-init/admin/impersonation/{id}/{doc}",
            get(openchami::impersonation),
        )
        .route("/discovered", get(admin::discovered))
        .fallback(admin::not_found)
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(tower::util::MapResponseLayer::new(
            problem::every_error_a_problem,
        ))
}

/// Serves `router` on `listener` until `shutdown` completes, then lets open connections
/// finish (up to `limits.drain_timeout`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true)
        // GRUB's HTTP client finds `Content-Length:` only in this spelling (with hyper's
        // lowercase it waits about two minutes and gives up); HTTP says names are
        // case-insensitive, so every other client reads it too.
        .title_case_headers(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    metrics.accept_errors.inc();
                    tracing::warn!(error = %e, "accept failed; pausing accepts for 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Only writes are timed here: a write is pending only when the client stops reading,
        // while a read is pending between every two requests (and hyper times those).
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_write_timeout(Some(limits.write_stall_timeout));
        let stream = Box::pin(stream);
        let service = router
            .clone()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(Peer(peer));
                req
            });
        let conn =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        let metrics = metrics.clone();
        metrics.connections_open.inc();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            metrics.connections_open.dec();
            drop(permit);
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

/// Raises the soft limit on open files to the hard limit: the usual soft limit of 1024 is far
/// below what a boot storm opens. Says so when even the hard limit is below what the
/// connection cap allows, with room for the process's other files.
/// Files besides connections: the admin listener's, manifests, the API server's connections.
const OTHER_FILES: u128 = 1024;

fn raise_open_files_limit(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    if !raised {
        tracing::warn!("cannot raise the open files limit; a large boot storm may be refused");
    } else if (limit.rlim_cur as u128) < max_connections as u128 + OTHER_FILES {
        tracing::warn!(
            open_files = limit.rlim_cur,
            max_connections,
            "the open files limit leaves no room for --max-connections connections; accepts will fail before the cap"
        );
    }
}

/// Pending connections the kernel may queue per listener. A power-cycled rack opens thousands of
/// connections at once; at the usual 128 the kernel drops the overflow and each of those nodes
/// waits a second or more for its SYN to be retried.
const LISTEN_BACKLOG: u32 = 4096;

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({what}): {source}; is another process using it?")]
pub struct BindError {
    addr: SocketAddr,
    what: &'static str,
    source: std::io::Error,
}

/// The two listeners, serving until shutdown.
pub struct Listeners {
    pub boot_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Listeners {
    /// Binds both listeners and serves `snapshot` on them until `shutdown` is cancelled.
    pub fn start(
        config: &ServerConfig,
        snapshot: SharedSnapshot,
        metrics: Arc<Metrics>,
        readiness: Arc<admin::Readiness>,
        tracker: Arc<crate::tracking::Tracker>,
        shutdown: &CancellationToken,
    ) -> Result<Listeners, BindError> {
        let bind_as = |addr, what| bind(addr).map_err(|source| BindError { addr, what, source });
        let boot = bind_as(config.listen, "boot listener")?;
        let admin = bind_as(config.admin_listen, "admin listener")?;
        let boot_addr = boot.local_addr().unwrap_or(config.listen);
        let admin_addr = admin.local_addr().unwrap_or(config.admin_listen);
        raise_open_files_limit(config.limits.max_connections + ADMIN_MAX_CONNECTIONS);
        let boot_state = boot::BootState::new(
            snapshot.clone(),
            config.access.clone(),
            &config.render,
            metrics.clone(),
            tracker.clone(),
        );
        let admin_state = admin::AdminState {
            snapshot,
            metrics: metrics.clone(),
            readiness,
            tracker,
        };
        let limits = config.limits;
        let admin_limits = Limits {
            max_connections: ADMIN_MAX_CONNECTIONS,
            ..limits
        };
        let routers = [
            (
                boot,
                firmware::mount(
                    boot_router(boot_state, &metrics, &limits),
                    config.firmware_dir.as_deref(),
                    &metrics,
                ),
                limits,
            ),
            (admin, admin_router(admin_state, &limits), admin_limits),
        ];
        let tasks = routers
            .into_iter()
            .map(|(listener, router, limits)| {
                let stop = shutdown.clone().cancelled_owned();
                tokio::spawn(serve(listener, router, limits, metrics.clone(), stop))
            })
            .collect();
        tracing::info!(boot = %boot_addr, admin = %admin_addr, advertise = %config.render.server_url, "listening");
        Ok(Listeners {
            boot_addr,
            admin_addr,
            tasks,
        })
    }

    /// Waits until both listeners have drained after shutdown.
    pub async fn stopped(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
