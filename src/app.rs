//! What each command does, from parsed flags to a finished run.

use std::path::PathBuf;

use nodeboot_core::explain::explain;
use nodeboot_core::render::RenderSettings;
use nodeboot_core::snapshot::{Snapshot, build};

use crate::cli::{Command, ElectionArgs, OnOff, OutputFormat, RenderArgs, WebhookArgs};
use crate::error::Error;
use crate::manifests::ManifestFolder;
use crate::operator::{self, LeaseSettings, OperatorConfig};
use crate::runtime::{ReportLog, Runtime};
use crate::webhook::{CertSource, ManagedCerts, Subject, WebhookConfig};

pub async fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Crds => {
            let yaml = nodeboot_core::crd::crds_yaml().map_err(Error::Crds)?;
            print!("{yaml}");
            Ok(())
        }
        Command::Serve { manifests, serve } => {
            let config = serve.server_config()?;
            let folder = ManifestFolder::open(manifests)?;
            let runtime = Runtime::new(&config.render);
            tokio::spawn(ReportLog::default().follow(runtime.reports()));
            Ok(runtime.run(folder, &config).await?)
        }
        Command::Run {
            namespace,
            election,
            tracking_interval,
            serve,
            webhook,
        } => {
            let lease = lease_settings(&election, namespace.as_deref());
            let webhook = webhook_config(&webhook, &election, namespace.as_deref());
            operator::run(OperatorConfig {
                namespace,
                lease,
                server: serve.server_config()?,
                tracking_interval: std::time::Duration::from_secs(tracking_interval),
                replica: election.identity.clone().unwrap_or_else(default_identity),
                webhook,
            })
            .await?;
            Ok(())
        }
        Command::Adopt {
            mac,
            group,
            name,
            namespace,
            nid,
            ip,
            hostname,
            dry_run,
        } => {
            let change = crate::adopt::adopt(&crate::adopt::Adoption {
                mac,
                group,
                namespace,
                name,
                nid,
                ip,
                hostname,
                dry_run,
            })
            .await?;
            if dry_run {
                print!("# dry run: nothing was changed\n{change}");
            } else {
                print!("{change}");
            }
            Ok(())
        }
        Command::Explain {
            manifests,
            namespace,
            id,
            output,
            render,
        } => explain_node(manifests, namespace, &id, output, &render).await,
        Command::Import {
            sources,
            out,
            namespace,
            token,
            cacert,
            verify,
            bss_url,
            render,
        } => Ok(crate::import::run(crate::import::ImportRequest {
            sources,
            out,
            namespace,
            token,
            cacert,
            verify,
            bss_url,
            settings: render.settings_without_listener()?,
        })
        .await?),
    }
}

fn lease_settings(election: &ElectionArgs, namespace: Option<&str>) -> Option<LeaseSettings> {
    (election.leader_election == OnOff::On).then(|| LeaseSettings {
        name: election.lease_name.clone(),
        namespace: election
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .or_else(|| namespace.map(str::to_owned))
            .unwrap_or_else(|| "default".into()),
        identity: election.identity.clone().unwrap_or_else(default_identity),
        duration: election.lease_duration,
    })
}

fn webhook_config(
    args: &WebhookArgs,
    election: &ElectionArgs,
    namespace: Option<&str>,
) -> Option<WebhookConfig> {
    let listen = args.webhook_listen?;
    let certs = match &args.webhook_cert_dir {
        Some(dir) => CertSource::Files(dir.clone()),
        None => {
            // The Secret lives where the Lease does: the release namespace in the chart.
            let namespace = election
                .lease_namespace
                .clone()
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .or_else(|| namespace.map(str::to_owned))
                .unwrap_or_else(|| "default".into());
            let mut subject = Subject::for_service(&args.webhook_service, &namespace);
            if !listen.ip().is_unspecified() {
                subject.ips.insert(listen.ip());
            }
            CertSource::Managed(ManagedCerts {
                namespace,
                secret: args.webhook_cert_secret.clone(),
                webhook_configuration: args.webhook_configuration.clone(),
                subject,
            })
        }
    };
    Some(WebhookConfig { listen, certs })
}

/// Host name and process id: unique among replicas when POD_NAME is not set.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "nodeboot".into());
    format!("{host}-{}", std::process::id())
}

async fn snapshot_of(
    manifests: Option<PathBuf>,
    namespace: Option<&str>,
    settings: &RenderSettings,
) -> Result<Snapshot, Error> {
    match manifests {
        Some(dir) => {
            let desired = ManifestFolder::open(dir)?.read()?;
            Ok(build(&desired, &mut Default::default(), settings).0)
        }
        None => Ok(operator::snapshot_from_cluster(namespace, settings).await?),
    }
}

async fn explain_node(
    manifests: Option<PathBuf>,
    namespace: Option<String>,
    id: &str,
    output: OutputFormat,
    render: &RenderArgs,
) -> Result<(), Error> {
    let settings = render.settings_without_listener()?;
    let from_cluster = manifests.is_none();
    let snapshot = snapshot_of(manifests, namespace.as_deref(), &settings).await?;
    let report = explain(&snapshot, id)?;
    // From the cluster, also what the node fetched and when (the replicas' boot records).
    let tracker = crate::tracking::Tracker::new();
    if from_cluster {
        tracker.set_remote(operator::records_from_cluster(namespace.as_deref()).await?);
    }
    let report = crate::tracking::TrackedReport::new(report, &snapshot, &tracker, id);
    let text = match output {
        OutputFormat::Yaml => {
            serde_yaml_ng::to_string(&report).map_err(|e| Error::Output(e.to_string()))?
        }
        OutputFormat::Json => {
            serde_json::to_string_pretty(&report).map_err(|e| Error::Output(e.to_string()))? + "\n"
        }
    };
    print!("{text}");
    Ok(())
}
