//! Reading a source: a file, or an `http(s)://` URL of a running service (with a bearer token
//! for services behind a JWT). Sizes are capped: an export is data to read once, and a
//! runaway answer should fail, not fill memory.

use std::path::Path;
use std::time::Duration;

/// The largest source read: a 100,000-node SMD or BSS export is about 60 MB of JSON.
pub const MAX_SOURCE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{source_name}: cannot read: {error}")]
    File {
        source_name: String,
        error: std::io::Error,
    },
    #[error("{source_name}: {error}")]
    Http {
        source_name: String,
        error: reqwest::Error,
    },
    #[error("{source_name}: the service answered {status}{hint}")]
    Status {
        source_name: String,
        status: reqwest::StatusCode,
        hint: &'static str,
    },
    #[error("{source_name}: larger than {MAX_SOURCE_BYTES} bytes")]
    TooLarge { source_name: String },
    #[error("{source_name}: not UTF-8 text")]
    NotText { source_name: String },
}

pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("--cacert {path}: {error}")]
    CaFile { path: String, error: std::io::Error },
    #[error("--cacert {path}: not a PEM certificate: {error}")]
    CaPem { path: String, error: reqwest::Error },
    #[error("cannot start the HTTP client: {0}")]
    Build(reqwest::Error),
}

/// One HTTP client for every URL of a run. OpenCHAMI sites usually sign their services with a
/// CA of their own (as `ochami --cacert` expects): `cacert` adds it to the trusted roots.
pub fn client(cacert: Option<&Path>) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(300));
    if let Some(path) = cacert {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|error| ClientError::CaFile {
            path: shown.clone(),
            error,
        })?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .map_err(|error| ClientError::CaPem { path: shown, error })?;
        builder = builder.add_root_certificate(ca);
    }
    builder.build().map_err(ClientError::Build)
}

pub async fn read(
    source: &str,
    client: &reqwest::Client,
    token: Option<&str>,
) -> Result<String, FetchError> {
    let bytes = if is_url(source) {
        get(source, client, token).await?
    } else {
        read_file(source)?
    };
    String::from_utf8(bytes).map_err(|_| FetchError::NotText {
        source_name: source.to_owned(),
    })
}

fn read_file(source: &str) -> Result<Vec<u8>, FetchError> {
    let error = |error| FetchError::File {
        source_name: source.to_owned(),
        error,
    };
    let len = std::fs::metadata(Path::new(source)).map_err(error)?.len();
    if len > MAX_SOURCE_BYTES as u64 {
        return Err(FetchError::TooLarge {
            source_name: source.to_owned(),
        });
    }
    std::fs::read(source).map_err(error)
}

pub async fn get(
    url: &str,
    client: &reqwest::Client,
    token: Option<&str>,
) -> Result<Vec<u8>, FetchError> {
    let http = |error| FetchError::Http {
        source_name: url.to_owned(),
        error,
    };
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let mut response = request.send().await.map_err(http)?;
    let status = response.status();
    if !status.is_success() {
        let hint = match status.as_u16() {
            401 | 403 => " (give an access token with --token)",
            404 => {
                " (check the URL: BSS is /boot/v1/bootparameters, SMD /hsm/v2/..., the cloud-init server /cloud-init/admin/...)"
            }
            _ => "",
        };
        return Err(FetchError::Status {
            source_name: url.to_owned(),
            status,
            hint,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(http)? {
        if body.len() + chunk.len() > MAX_SOURCE_BYTES {
            return Err(FetchError::TooLarge {
                source_name: url.to_owned(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
