//! Keeping the webhook's certificate current while serving. Self-managed: every replica reads
//! the Secret and serves the certificate in it; only the leader issues (first start, before
//! expiry, after a forced expiry), and it writes the CA bundle into the
//! ValidatingWebhookConfiguration before the Secret, so the API server trusts a new CA before
//! any replica serves a certificate from it. With cert-manager: files from the mounted Secret,
//! read again when they change (cert-manager's CA injector keeps the caBundle).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::certs::{self, CA_CERT, CA_KEY, CertSet, Plan, Subject, TLS_CERT, TLS_KEY};
use super::server::{CertResolver, LoadError};

/// How often the certificate is checked (one GET of the Secret per replica, and of the
/// webhook configuration by the leader).
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// The same while nothing is served yet: at start, before the leader has issued.
const CHECK_SOON: Duration = Duration::from_secs(1);

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// nodeboot's own CA, kept in a Secret.
    Managed(ManagedCerts),
    /// A directory with tls.crt and tls.key (a Secret that cert-manager fills, mounted).
    Files(PathBuf),
}

#[derive(Debug, Clone)]
pub struct ManagedCerts {
    pub namespace: String,
    pub secret: String,
    pub webhook_configuration: String,
    pub subject: Subject,
}

#[derive(Debug, thiserror::Error)]
enum RotationError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Cert(#[from] certs::CertError),
    #[error("cannot serve the certificate: {0}")]
    Load(#[from] LoadError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs until `shutdown`: loads (and, as leader, issues) the serving certificate.
pub async fn keep_certificates(
    client: Client,
    source: CertSource,
    resolver: Arc<CertResolver>,
    mut is_leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    let mut served: Option<String> = None;
    let mut leader_gone = false;
    loop {
        let leader = *is_leader.borrow_and_update();
        let pass = match &source {
            CertSource::Managed(m) => {
                managed_pass(&client, m, leader, &resolver, &mut served).await
            }
            CertSource::Files(dir) => files_pass(dir, &resolver, &mut served),
        };
        if let Err(e) = pass {
            tracing::warn!(error = %e, "webhook certificate check failed; trying again");
        }
        let wait = if resolver.is_loaded() {
            CHECK_EVERY
        } else {
            CHECK_SOON
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = is_leader.changed(), if !leader_gone => leader_gone = changed.is_err(),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn managed_pass(
    client: &Client,
    m: &ManagedCerts,
    leader: bool,
    resolver: &CertResolver,
    served: &mut Option<String>,
) -> Result<(), RotationError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &m.namespace);
    let existing = secrets.get_opt(&m.secret).await?;
    let stored = existing.as_ref().and_then(cert_set_of);
    let now = OffsetDateTime::now_utc();
    let mut current = stored.clone();
    if leader {
        let plan = certs::plan(stored.as_ref(), &m.subject, now);
        if let Some(new) = certs::issue(plan, stored.as_ref(), &m.subject, now)? {
            // Trust first, then serve: see the module comment.
            ensure_ca_bundle(client, &m.webhook_configuration, &new.ca_bundle).await?;
            write_secret(&secrets, existing.as_ref(), &m.secret, &new).await?;
            tracing::info!(
                secret = %m.secret,
                renewed = if plan == Plan::NewCa { "CA and serving certificate" } else { "serving certificate" },
                "webhook certificate issued"
            );
            current = Some(new);
        } else if let Some(stored) = &stored {
            // Repairs a caBundle that an upgrade or a person changed.
            ensure_ca_bundle(client, &m.webhook_configuration, &stored.ca_bundle).await?;
        }
    }
    if let Some(set) = current {
        serve_if_new(resolver, served, &set.tls_cert, &set.tls_key, now)?;
    }
    Ok(())
}

fn files_pass(
    dir: &Path,
    resolver: &CertResolver,
    served: &mut Option<String>,
) -> Result<(), RotationError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| RotationError::Read { path, source })
    };
    let (cert, key) = (read(TLS_CERT)?, read(TLS_KEY)?);
    serve_if_new(resolver, served, &cert, &key, OffsetDateTime::now_utc())
}

/// Serves a certificate that differs from the one served, if it is valid now: an expired one
/// in the Secret (the leader replaces it within seconds) is no better than the one served.
fn serve_if_new(
    resolver: &CertResolver,
    served: &mut Option<String>,
    cert: &str,
    key: &str,
    now: OffsetDateTime,
) -> Result<(), RotationError> {
    if served.as_deref() == Some(cert) || !certs::currently_valid(cert, now) {
        return Ok(());
    }
    resolver.load(cert, key)?;
    *served = Some(cert.to_owned());
    tracing::info!("webhook serving certificate loaded");
    Ok(())
}

fn cert_set_of(secret: &Secret) -> Option<CertSet> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    Some(CertSet {
        ca_bundle: text(CA_CERT)?,
        ca_key: text(CA_KEY)?,
        tls_cert: text(TLS_CERT)?,
        tls_key: text(TLS_KEY)?,
    })
}

async fn write_secret(
    api: &Api<Secret>,
    existing: Option<&Secret>,
    name: &str,
    set: &CertSet,
) -> Result<(), RotationError> {
    let data: BTreeMap<String, ByteString> = [
        (CA_CERT, &set.ca_bundle),
        (CA_KEY, &set.ca_key),
        (TLS_CERT, &set.tls_cert),
        (TLS_KEY, &set.tls_key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
    .collect();
    let mut secret = Secret {
        data: Some(data),
        ..Default::default()
    };
    match existing {
        Some(existing) => {
            // The resourceVersion makes this a compare-and-swap: a leader that lost its lease
            // mid-pass cannot overwrite what the new leader wrote.
            secret.metadata.resource_version = existing.metadata.resource_version.clone();
            api.patch(name, &PatchParams::default(), &Patch::Merge(&secret))
                .await?;
        }
        None => {
            secret.metadata.name = Some(name.to_owned());
            api.create(&PostParams::default(), &secret).await?;
        }
    }
    Ok(())
}

/// Puts `bundle` into every webhook of the configuration whose caBundle differs.
async fn ensure_ca_bundle(
    client: &Client,
    configuration: &str,
    bundle: &str,
) -> Result<(), RotationError> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let Some(mut config) = api.get_opt(configuration).await? else {
        tracing::warn!(
            configuration,
            "ValidatingWebhookConfiguration not found; the API server will not call the webhook"
        );
        return Ok(());
    };
    let wanted = ByteString(bundle.as_bytes().to_vec());
    let mut webhooks = config.webhooks.take().unwrap_or_default();
    let mut changed = false;
    for webhook in &mut webhooks {
        if webhook.client_config.ca_bundle.as_ref() != Some(&wanted) {
            webhook.client_config.ca_bundle = Some(wanted.clone());
            changed = true;
        }
    }
    if !changed {
        return Ok(());
    }
    // A merge patch replaces the list whole; the resourceVersion makes sure it is the list
    // just read.
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": config.metadata.resource_version},
        "webhooks": webhooks,
    });
    api.patch(
        configuration,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    tracing::info!(configuration, "webhook CA bundle updated");
    Ok(())
}
