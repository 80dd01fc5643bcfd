use std::process::ExitCode;

use clap::Parser;

use nodeboot::cli::{Cli, Command, LogFormat, OutputFormat};
use nodeboot::{crd, explain, standalone};

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
    init_tracing(cli.log_format);
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
            Command::Explain {
                manifests,
                id,
                output,
                serve,
            } => explain_offline(manifests, &id, output, &serve),
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

fn explain_offline(
    dir: std::path::PathBuf,
    id: &str,
    output: OutputFormat,
    serve: &nodeboot::cli::ServeArgs,
) -> Result<(), String> {
    let settings = serve.render_settings().map_err(|e| e.to_string())?;
    let mut reloader = standalone::Reloader::new(dir, settings);
    let (snapshot, _) = reloader.reload().map_err(|e| e.to_string())?;
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
