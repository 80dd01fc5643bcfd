//! `nodeboot import`: the edge around `nodeboot-openchami`. Reads each source (file or URL),
//! hands the text to the pure mapping, writes the manifests and the report, and with
//! `--verify` checks them against the source.

mod check;
mod fetch;
mod write;

use std::path::PathBuf;

use nodeboot_core::render::RenderSettings;
use nodeboot_openchami::{Options, Source, import, parse};

pub use check::snapshot_of;
pub use write::REPORT_FILE;

/// The `--verify` table's file in the output directory.
pub const VERIFY_FILE: &str = "verify-report.txt";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    #[error("{source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error(transparent)]
    Client(#[from] fetch::ClientError),
    #[error(transparent)]
    Write(#[from] write::WriteError),
    #[error(transparent)]
    Check(#[from] check::CheckError),
    #[error("--verify: {0} boot requests differ beyond the allowed differences (see the table)")]
    Differs(usize),
}

/// What `nodeboot import` was asked.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub sources: Vec<String>,
    pub out: PathBuf,
    pub namespace: String,
    pub token: Option<String>,
    /// A CA certificate (PEM) to trust for https sources, besides the usual roots.
    pub cacert: Option<PathBuf>,
    pub verify: bool,
    pub bss_url: Option<String>,
    pub settings: RenderSettings,
}

/// Runs an import; prints the report summary (and the verify table) on stdout.
pub async fn run(request: ImportRequest) -> Result<(), ImportError> {
    let client = fetch::client(request.cacert.as_deref())?;
    let token = request.token.as_deref();
    let mut sources = Vec::with_capacity(request.sources.len());
    for name in &request.sources {
        let text = fetch::read(name, &client, token).await?;
        let parse_error = |message: String| ImportError::Parse {
            source_name: name.clone(),
            message,
        };
        // YAML aliases and deep nesting are refused before any value is built, as for
        // manifests; JSON has neither.
        if serde_json::from_str::<serde::de::IgnoredAny>(&text).is_err() {
            crate::manifests::check_yaml_shape(&text)
                .map_err(|r| parse_error(format!("document {}: {}", r.doc, r.message)))?;
        }
        let inputs = parse(&text).map_err(|e| parse_error(e.to_string()))?;
        sources.push(Source {
            name: name.clone(),
            inputs,
        });
    }
    let imported = import(
        &sources,
        &Options {
            namespace: request.namespace.clone(),
        },
    );
    let files = write::write(&request.out, &imported)?;
    print!("{}", imported.report.summary());
    println!(
        "wrote {} NodeGroups, {} BootConfigs and {} Secrets to {} (every object: {})",
        imported.node_groups.len(),
        imported.boot_configs.len(),
        imported.secrets.len(),
        request.out.display(),
        request.out.join(REPORT_FILE).display()
    );
    if !request.verify {
        return Ok(());
    }
    let live = request.bss_url.as_deref().map(|url| (url, &client, token));
    let report = check::check(&imported.site, &files, &request.settings, live).await?;
    let table = report.table();
    print!("{table}");
    // Kept beside the manifests for review (`serve` reads only .yaml, .yml and .json).
    let kept = request.out.join(VERIFY_FILE);
    std::fs::write(&kept, &table).map_err(|error| write::WriteError::Io { path: kept, error })?;
    if report.failed() {
        let differing = report
            .rows
            .iter()
            .filter(|r| !r.allowed)
            .map(|r| r.requests)
            .sum();
        return Err(ImportError::Differs(differing));
    }
    Ok(())
}
