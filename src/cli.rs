//! Command-line interface: the verbs and flags of DESIGN.md.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

use nodeboot_core::render::RenderSettings;
use nodeboot_core::render::template::ipxe_unsafe_char;

use crate::http::{AccessPolicy, Limits, ServerConfig};

#[derive(Debug, Parser)]
#[command(
    name = "nodeboot",
    version,
    about = "Network boot for HPC nodes: iPXE scripts and cloud-init data from NodeGroup and BootConfig resources"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "NODEBOOT_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments, exiting with clap's usage message when they are wrong.
    pub fn from_command_line() -> Cli {
        Cli::parse()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The operator: controllers plus both listeners, in-cluster or from KUBECONFIG.
    Run {
        /// Watch only this namespace (default: all namespaces).
        #[arg(long, env = "NODEBOOT_NAMESPACE")]
        namespace: Option<String>,
        #[command(flatten)]
        election: ElectionArgs,
        /// Seconds between publications of this replica's boot records and writes of rollout
        /// status (at most one write per object per interval).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300), env = "NODEBOOT_TRACKING_INTERVAL")]
        tracking_interval: u64,
        #[command(flatten)]
        serve: ServeArgs,
        // Boxed: Run would otherwise be many times the size of the other commands.
        #[command(flatten)]
        webhook: Box<WebhookArgs>,
    },
    /// Serve NodeGroups, BootConfigs and Secrets from YAML files, without a cluster; reloads on change.
    Serve {
        /// Directory of manifests (multi-document YAML, searched recursively).
        #[arg(long, env = "NODEBOOT_MANIFESTS")]
        manifests: PathBuf,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Print the CustomResourceDefinitions (what crds/ holds).
    Crds,
    /// Add an unknown MAC (see the admin /discovered list) to a NodeGroup as a new node.
    Adopt {
        /// The MAC address, in any notation.
        mac: String,
        /// The NodeGroup to add the node to.
        #[arg(long)]
        group: String,
        /// The new node's name (unique in the namespace).
        #[arg(long)]
        name: String,
        /// Namespace of the NodeGroup (default: the kubeconfig's).
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long)]
        nid: Option<i64>,
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
        #[arg(long)]
        hostname: Option<String>,
        /// Print the change (checked by the API server) without making it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show what a node (name or MAC) gets and why, from manifests or from the cluster.
    Explain {
        /// Read the inventory from this directory of manifests instead of the cluster.
        #[arg(long)]
        manifests: Option<PathBuf>,
        /// With the cluster: look only in this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Node name or MAC address, in any notation.
        id: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Yaml)]
        output: OutputFormat,
        #[command(flatten)]
        render: RenderArgs,
    },
    /// Convert OpenCHAMI data (BSS, SMD, cloud-init server, boot-service, metadata-service,
    /// `ochami discover static` inventory) into NodeGroup, BootConfig and Secret manifests.
    Import {
        /// Exports as files (JSON or YAML) or http(s):// URLs of the running services.
        #[arg(required = true)]
        sources: Vec<String>,
        /// Directory to write the manifests and import-report.txt into (new or empty).
        #[arg(long)]
        out: PathBuf,
        /// Namespace of the objects written.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Bearer token for services behind a JWT.
        #[arg(long, env = "NODEBOOT_IMPORT_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// A CA certificate (PEM) to trust for https:// sources (OpenCHAMI's own CA, say).
        #[arg(long)]
        cacert: Option<PathBuf>,
        /// Compare what nodeboot serves from the written manifests with what the source
        /// serves, per node; exit non-zero when a node differs beyond the allowed differences.
        #[arg(long)]
        verify: bool,
        /// With --verify: also ask this running BSS (base URL) for every node's boot script.
        #[arg(long, requires = "verify")]
        bss_url: Option<String>,
        #[command(flatten)]
        render: RenderArgs,
    },
}

/// Leader election: every replica serves, only the Lease holder writes status.
#[derive(Debug, Clone, Args)]
pub struct ElectionArgs {
    #[arg(long, value_enum, default_value_t = OnOff::On, env = "NODEBOOT_LEADER_ELECTION")]
    pub leader_election: OnOff,
    /// Name of the Lease.
    #[arg(long, default_value = "nodeboot-leader", env = "NODEBOOT_LEASE_NAME")]
    pub lease_name: String,
    /// Namespace of the Lease (default: POD_NAMESPACE, else --namespace, else "default").
    #[arg(long, env = "NODEBOOT_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Seconds a lease holds without renewal: the longest hand-over when a leader dies.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300), env = "NODEBOOT_LEASE_DURATION")]
    pub lease_duration: u64,
    /// This replica's identity in the Lease (default: POD_NAME, else host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

/// The validating admission webhook of `run` (off unless --webhook-listen is given).
#[derive(Debug, Clone, Args)]
pub struct WebhookArgs {
    /// HTTPS listener of the validating admission webhook (POST /validate).
    #[arg(long, env = "NODEBOOT_WEBHOOK_LISTEN")]
    pub webhook_listen: Option<SocketAddr>,
    /// Serve tls.crt and tls.key from this directory (a Secret cert-manager fills, mounted)
    /// instead of nodeboot's own CA.
    #[arg(long, env = "NODEBOOT_WEBHOOK_CERT_DIR")]
    pub webhook_cert_dir: Option<PathBuf>,
    /// Secret, in the Lease namespace, where the leader keeps the webhook's CA and certificate.
    #[arg(
        long,
        default_value = "nodeboot-webhook-cert",
        env = "NODEBOOT_WEBHOOK_CERT_SECRET"
    )]
    pub webhook_cert_secret: String,
    /// ValidatingWebhookConfiguration whose caBundle the leader keeps current.
    #[arg(
        long,
        default_value = "nodeboot",
        env = "NODEBOOT_WEBHOOK_CONFIGURATION"
    )]
    pub webhook_configuration: String,
    /// Service the API server calls the webhook through: its DNS names go into the certificate
    /// (with the listen address when it is a specific IP).
    #[arg(
        long,
        default_value = "nodeboot-webhook",
        env = "NODEBOOT_WEBHOOK_SERVICE"
    )]
    pub webhook_service: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// The boot listener's default address.
const DEFAULT_LISTEN: &str = "0.0.0.0:8080";

/// Flags of the commands that serve.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Boot listener address (faces the boot network; no authentication).
    #[arg(long, default_value = DEFAULT_LISTEN, env = "NODEBOOT_LISTEN")]
    pub listen: SocketAddr,

    /// Admin listener address: /healthz, /readyz, /metrics, /nodes/{id}.
    #[arg(long, default_value = "0.0.0.0:9090", env = "NODEBOOT_ADMIN_LISTEN")]
    pub admin_listen: SocketAddr,

    #[command(flatten)]
    pub render: RenderArgs,

    /// CIDRs of proxies whose X-Forwarded-For is believed (comma-separated).
    #[arg(long, value_delimiter = ',', env = "NODEBOOT_TRUSTED_PROXIES")]
    pub trusted_proxies: Vec<IpNet>,

    /// Serve a node that has an `ip` its cloud-init data only at that address.
    #[arg(long, value_enum, default_value_t = OnOff::On, env = "NODEBOOT_CLOUD_INIT_SOURCE_CHECK")]
    pub cloud_init_source_check: OnOff,

    /// Open connections per listener; more are closed at once and counted in
    /// nodeboot_connections_refused_total. The open-files limit is raised to match at start.
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(16..=1_000_000), env = "NODEBOOT_MAX_CONNECTIONS")]
    pub max_connections: u32,

    /// A directory whose files the boot listener serves at /firmware/ (for example Debian's
    /// snponly.efi, which UEFI HTTP Boot firmware loads by URL); see docs/firmware.md.
    #[arg(long, env = "NODEBOOT_FIRMWARE_DIR")]
    pub firmware_dir: Option<std::path::PathBuf>,
}

/// Flags of every command that renders scripts: `serve`, `run` and `explain`.
#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    /// Base URL nodes use to reach the boot listener (for example http://10.1.0.1:8080).
    /// Defaults to the listen address, with 127.0.0.1 for an unspecified one.
    #[arg(long, env = "NODEBOOT_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// Longest sleep, in seconds, of the retry loop of nodes that cannot boot yet.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=3600), env = "NODEBOOT_RETRY_MAX_DELAY")]
    pub retry_max_delay: u32,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "--advertise-url '{0}' must be an http:// or https:// URL without spaces, query or fragment"
)]
pub struct AdvertiseUrlError(String);

impl RenderArgs {
    /// The settings scripts are rendered with, for a boot listener on `listen`.
    pub fn settings(&self, listen: SocketAddr) -> Result<RenderSettings, AdvertiseUrlError> {
        let url = match &self.advertise_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let mut addr = listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{addr}")
            }
        };
        // The URL is written into every iPXE script: nothing that iPXE would split or expand.
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && !url.contains(['?', '#'])
            && !url.chars().any(ipxe_unsafe_char);
        if !ok {
            return Err(AdvertiseUrlError(url));
        }
        Ok(RenderSettings {
            server_url: url,
            retry_max_delay: self.retry_max_delay,
        })
    }

    /// The settings of a command that renders without listening (`explain`): as if the boot
    /// listener were on its default address.
    pub fn settings_without_listener(&self) -> Result<RenderSettings, AdvertiseUrlError> {
        let listen = DEFAULT_LISTEN
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 8080)));
        self.settings(listen)
    }
}

impl ServeArgs {
    pub fn server_config(&self) -> Result<ServerConfig, AdvertiseUrlError> {
        Ok(ServerConfig {
            listen: self.listen,
            admin_listen: self.admin_listen,
            render: self.render.settings(self.listen)?,
            access: AccessPolicy {
                trusted_proxies: self.trusted_proxies.clone(),
                source_check: self.cloud_init_source_check == OnOff::On,
            },
            limits: Limits {
                max_connections: self.max_connections as usize,
                ..Limits::default()
            },
            firmware_dir: self.firmware_dir.clone(),
        })
    }
}
