//! Writing the import: one YAML file per NodeGroup, BootConfig and Secret (reviewable, and
//! `kubectl apply -f DIR` or `nodeboot serve --manifests DIR` as they are), plus the report.

use std::path::{Path, PathBuf};

use nodeboot_openchami::Imported;
use serde::Serialize;

/// The full report's file name; `serve` reads only `.yaml`, `.yml` and `.json`.
pub const REPORT_FILE: &str = "import-report.txt";

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "{0} is not empty: give a new or empty directory (files of an earlier import would be \
         applied along with the new ones)"
    )]
    NotEmpty(PathBuf),
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write {path} as YAML: {error}")]
    Yaml {
        path: PathBuf,
        error: serde_yaml_ng::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |error| WriteError::Io {
        path: path.to_owned(),
        error,
    }
}

fn write_yaml(path: PathBuf, object: &impl Serialize) -> Result<PathBuf, WriteError> {
    let text = serde_yaml_ng::to_string(object).map_err(|error| WriteError::Yaml {
        path: path.clone(),
        error,
    })?;
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(path)
}

/// Writes every manifest into `dir` (created when missing, refused when not empty); returns
/// the files written.
pub fn write(dir: &Path, imported: &Imported) -> Result<Vec<PathBuf>, WriteError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    if std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(WriteError::NotEmpty(dir.to_owned()));
    }
    let mut written = Vec::new();
    let name = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.name.clone().unwrap_or_default()
    };
    for g in &imported.node_groups {
        let path = dir.join(format!("nodegroup-{}.yaml", name(&g.metadata)));
        written.push(write_yaml(path, g)?);
    }
    for b in &imported.boot_configs {
        let path = dir.join(format!("bootconfig-{}.yaml", name(&b.metadata)));
        written.push(write_yaml(path, b)?);
    }
    for s in &imported.secrets {
        let path = dir.join(format!("secret-{}.yaml", name(&s.metadata)));
        written.push(write_yaml(path, s)?);
    }
    let report = dir.join(REPORT_FILE);
    std::fs::write(&report, imported.report.full()).map_err(io(&report))?;
    Ok(written)
}
