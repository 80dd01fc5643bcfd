use std::process::ExitCode;

use clap::Parser;

use nodeboot::cli::{Cli, Command, LogFormat, OnOff, OutputFormat};
use nodeboot::operator::{self, LeaseSettings, OperatorConfig};
use nodeboot::{crd, explain, standalone};

/// Host name and process id: unique among replicas when POD_NAME is not set.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "nodeboot".into());
    format!("{host}-{}", std::process::id())
}

fn init_tracing(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One-shot commands print their answer on stdout; only problems belong on stderr.
    let default_level = match cli.command {
        Command::Explain { .. } | Command::Crds => "warn",
        _ => "info",
    };
    init_tracing(cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nodeboot: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), String> = runtime.block_on(async {
        match cli.command {
            Command::Crds => crd::crds_yaml()
                .map(|yaml| print!("{yaml}"))
                .map_err(|e| format!("cannot render the CRDs: {e}")),
            Command::Serve { manifests, serve } => standalone::run(manifests, serve)
                .await
                .map_err(|e| e.to_string()),
            Command::Run {
                namespace,
                election,
                serve,
            } => {
                let lease = (election.leader_election == OnOff::On).then(|| LeaseSettings {
                    name: election.lease_name.clone(),
                    namespace: election
                        .lease_namespace
                        .clone()
                        .or_else(|| std::env::var("POD_NAMESPACE").ok())
                        .or_else(|| namespace.clone())
                        .unwrap_or_else(|| "default".into()),
                    identity: election.identity.clone().unwrap_or_else(default_identity),
                    duration: election.lease_duration,
                });
                operator::run(OperatorConfig {
                    namespace,
                    lease,
                    serve,
                })
                .await
                .map_err(|e| e.to_string())
            }
            Command::Explain {
                manifests,
                namespace,
                id,
                output,
                serve,
            } => explain_node(manifests, namespace, &id, output, &serve).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nodeboot: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn explain_node(
    dir: Option<std::path::PathBuf>,
    namespace: Option<String>,
    id: &str,
    output: OutputFormat,
    serve: &nodeboot::cli::ServeArgs,
) -> Result<(), String> {
    let settings = serve.render_settings().map_err(|e| e.to_string())?;
    let snapshot = match dir {
        Some(dir) => {
            let mut reloader = standalone::Reloader::new(dir, settings);
            reloader.reload().map_err(|e| e.to_string())?.0
        }
        None => operator::snapshot_from_cluster(namespace.as_deref(), &settings)
            .await
            .map_err(|e| e.to_string())?,
    };
    let report = explain::explain(&snapshot, id).map_err(|e| e.to_string())?;
    let text = match output {
        OutputFormat::Yaml => serde_yaml_ng::to_string(&report).map_err(|e| e.to_string())?,
        OutputFormat::Json => {
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n"
        }
    };
    print!("{text}");
    Ok(())
}
