//! `--verify`: the written manifests read back the way `nodeboot serve` reads them, built into
//! a snapshot in process, and compared with what the source serves (from the export, and from
//! a running BSS's `/boot/v1/bootscript` when `--bss-url` is given).

use std::path::PathBuf;

use futures::StreamExt;
use nodeboot_core::render::RenderSettings;
use nodeboot_core::secrets::Secrets;
use nodeboot_core::snapshot::{Desired, Snapshot, build};
use nodeboot_openchami::expected::{Expectation, expectations};
use nodeboot_openchami::site::Site;
use nodeboot_openchami::verify::{VerifyReport, parse_bss_script, verify};

use super::fetch;
use crate::manifests::{ManifestError, Object, parse_file};

/// Live requests to BSS at once.
const LIVE_CONCURRENCY: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("the written manifests do not read back: {0}")]
    Manifests(#[from] ManifestError),
    #[error("cannot read {path} back: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Live(#[from] fetch::FetchError),
}

/// The snapshot `nodeboot serve --manifests DIR` would build from the files.
pub fn snapshot_of(files: &[PathBuf], settings: &RenderSettings) -> Result<Snapshot, CheckError> {
    let mut desired = Desired::default();
    let mut secrets = Secrets::default();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|error| CheckError::Read {
            path: path.clone(),
            error,
        })?;
        for object in parse_file(path, &text)? {
            match object {
                Object::NodeGroup(g) => desired.node_groups.push(g),
                Object::BootConfig(b) => desired.boot_configs.push((*b).clone()),
                Object::Secret(s) => secrets.insert(&s),
            }
        }
    }
    desired.secrets = secrets;
    Ok(build(&desired, &mut Default::default(), settings).0)
}

/// Replaces each expectation's boot with what the running BSS answers for that MAC.
async fn ask_bss(
    bss_url: &str,
    expectations: &mut [Expectation],
    client: &reqwest::Client,
    token: Option<&str>,
) -> Result<(), CheckError> {
    let base = bss_url.trim_end_matches('/');
    let answers: Vec<_> = futures::stream::iter(expectations.iter().enumerate())
        .map(|(i, e)| {
            let url = format!("{base}/boot/v1/bootscript?mac={}", e.mac);
            async move { (i, fetch::get(&url, client, token).await) }
        })
        .buffer_unordered(LIVE_CONCURRENCY)
        .collect()
        .await;
    for (i, answer) in answers {
        let script = String::from_utf8_lossy(&answer?).into_owned();
        if let Some(e) = expectations.get_mut(i) {
            e.boot = parse_bss_script(&script, "BSS bootscript (live)");
        }
    }
    Ok(())
}

pub async fn check(
    site: &Site,
    files: &[PathBuf],
    settings: &RenderSettings,
    live_bss: Option<(&str, &reqwest::Client, Option<&str>)>,
) -> Result<VerifyReport, CheckError> {
    let snapshot = snapshot_of(files, settings)?;
    let mut expected = expectations(site);
    if let Some((url, client, token)) = live_bss {
        ask_bss(url, &mut expected, client, token).await?;
    }
    Ok(verify(&snapshot, &expected))
}
