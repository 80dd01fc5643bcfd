use crate::cli::AdvertiseUrlError;
use crate::http::BindError;
use crate::manifests::ManifestError;
use crate::operator::OperatorError;

/// Everything that can end a nodeboot command, as `main` reports it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    AdvertiseUrl(#[from] AdvertiseUrlError),
    #[error(transparent)]
    Listen(#[from] BindError),
    #[error(transparent)]
    Manifests(#[from] ManifestError),
    #[error(transparent)]
    Operator(#[from] OperatorError),
    #[error(transparent)]
    Adopt(#[from] crate::adopt::AdoptError),
    #[error(transparent)]
    Explain(#[from] nodeboot_core::explain::ExplainError),
    #[error("cannot render the CRDs: {0}")]
    Crds(#[source] serde_yaml_ng::Error),
    #[error(transparent)]
    Import(#[from] crate::import::ImportError),
    #[error("cannot print the report: {0}")]
    Output(String),
}
