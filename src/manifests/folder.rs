//! The manifest folder as a source of the runtime. The folder is polled for changes (size and
//! mtime of every file, four times a second) rather than watched with inotify: polling sees
//! every change on every filesystem, including a ConfigMap volume's symlink swap, and costs a
//! few stat calls.

use std::path::PathBuf;
use std::time::Duration;

use nodeboot_core::snapshot::Desired;

use super::{Fingerprint, ManifestError, ManifestSource, fingerprint};
use crate::runtime::Source;

const POLL_INTERVAL: Duration = Duration::from_millis(250);

pub struct ManifestFolder {
    dir: PathBuf,
    source: ManifestSource,
    /// What the folder looked like at the last load; `None` before the first.
    seen: Option<Fingerprint>,
}

impl ManifestFolder {
    /// Opens `dir`, failing now when it cannot be read at all.
    pub fn open(dir: PathBuf) -> Result<ManifestFolder, ManifestError> {
        fingerprint(&dir)?;
        Ok(ManifestFolder {
            source: ManifestSource::new(dir.clone()),
            dir,
            seen: None,
        })
    }

    /// Reads the folder now: what to serve, with each refused file logged. Fails only when the
    /// folder itself cannot be read.
    pub fn read(&mut self) -> Result<Desired, ManifestError> {
        let loaded = self.source.load()?;
        for e in &loaded.errors {
            tracing::error!(error = %e, "manifest refused; its last good version (if any) stays in force");
        }
        Ok(loaded.desired)
    }
}

impl Source for ManifestFolder {
    async fn changed(&mut self) {
        let Some(seen) = &self.seen else {
            if self.source.waiting_for_writes() {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            return;
        };
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            if self.source.waiting_for_writes() {
                return;
            }
            match fingerprint(&self.dir) {
                Ok(now) if &now != seen => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the manifest directory; serving the last good state");
                }
            }
        }
    }

    fn load(&mut self) -> Option<Desired> {
        let first = self.seen.is_none();
        // Taken before reading, so that a change made during the read is seen next time.
        self.seen = Some(fingerprint(&self.dir).unwrap_or_default());
        match self.read() {
            // Nothing is served before every file has settled: the first snapshot must not
            // lack a file that was still being written (readiness waits with it).
            Ok(_) if first && self.source.waiting_for_writes() => {
                self.seen = None;
                None
            }
            Ok(desired) => Some(desired),
            Err(e) => {
                tracing::error!(error = %e, "reload failed; serving the last good state");
                None
            }
        }
    }
}
