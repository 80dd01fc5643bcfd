//! Finding and reading manifest files without trusting the folder: only regular files (a FIFO
//! would block a read forever, a device would never end), each directory once (a symlink loop
//! is walked once), each file read up to a limit, and only once it has settled.

use std::collections::HashSet;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::ManifestError;

/// The largest manifest file read. A 5000-node NodeGroup is well under 2 MiB.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Directories below the manifest folder that are searched at most.
const MAX_DEPTH: usize = 16;
/// A file modified more recently than this is still being written: its last good content stays
/// in force until it is older. Files moved into place (write, then rename) have settled already.
pub const SETTLE: Duration = Duration::from_millis(500);

/// Manifest files below `dir`: regular `*.yaml`, `*.yml` and `*.json` files (or links to
/// them), skipping hidden entries (a ConfigMap volume's `..data` directory is reached through
/// its visible links). Entries that are not regular files are returned as errors.
pub fn manifest_files(dir: &Path) -> Result<(Vec<PathBuf>, Vec<ManifestError>), ManifestError> {
    let mut files = Vec::new();
    let mut refused = Vec::new();
    let mut seen_dirs: HashSet<(u64, u64)> = HashSet::new();
    let mut pending = vec![(dir.to_owned(), 0)];
    while let Some((d, depth)) = pending.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| ManifestError::Dir {
            path: d.clone(),
            source,
        })?;
        if let Ok(meta) = std::fs::metadata(&d)
            && !seen_dirs.insert((meta.dev(), meta.ino()))
        {
            // Reached again through a link: a loop, or the same folder twice.
            continue;
        }
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let is_manifest = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            );
            // Follows links: what matters is what a read would reach.
            let Ok(meta) = std::fs::metadata(&path) else {
                if is_manifest {
                    refused.push(not_regular(&path, "a broken link or unreadable"));
                }
                continue;
            };
            if meta.is_dir() {
                if depth < MAX_DEPTH {
                    pending.push((path, depth + 1));
                }
            } else if is_manifest {
                if meta.is_file() {
                    files.push(path);
                } else {
                    refused.push(not_regular(&path, "not a regular file"));
                }
            }
        }
    }
    files.sort();
    Ok((files, refused))
}

fn not_regular(path: &Path, what: &str) -> ManifestError {
    ManifestError::Read {
        path: path.to_owned(),
        source: std::io::Error::other(format!("{what}; skipped")),
    }
}

/// A file's size and modification time: unchanged files are not parsed again.
pub type Stamp = (u64, Option<SystemTime>);

pub fn stamp_of(meta: &Metadata) -> Stamp {
    (meta.len(), meta.modified().ok())
}

pub fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| stamp_of(&m))
}

/// Has the file stopped changing? Modified at least `SETTLE` ago (or in the future: a clock
/// set wrong must not hold a file back for good).
pub fn settled(stamp: &Stamp, now: SystemTime) -> bool {
    match stamp.1 {
        Some(modified) => now
            .duration_since(modified)
            .map_or(true, |age| age >= SETTLE),
        None => true,
    }
}

/// Reads a manifest: opened without blocking (a FIFO swapped in after listing would block),
/// refused unless it is a regular file, and at most `MAX_FILE_BYTES`.
pub fn read_manifest(path: &Path) -> Result<String, ManifestError> {
    let read_error = |source| ManifestError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(not_regular(path, "not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(read_error(std::io::Error::other(format!(
            "{} bytes is more than the {MAX_FILE_BYTES} a manifest may have; split it",
            meta.len()
        ))));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(read_error(std::io::Error::other(format!(
            "grew past the {MAX_FILE_BYTES} bytes a manifest may have while it was read"
        ))));
    }
    // Not from_utf8's error: it would not quote the file, but say where, plainly.
    String::from_utf8(bytes).map_err(|e| {
        read_error(std::io::Error::other(format!(
            "not UTF-8 text (at byte {})",
            e.utf8_error().valid_up_to()
        )))
    })
}

/// Size and modification time of every manifest: a cheap way to notice any change.
pub type Fingerprint = Vec<(PathBuf, Option<Stamp>)>;

pub fn fingerprint(dir: &Path) -> Result<Fingerprint, ManifestError> {
    Ok(manifest_files(dir)?
        .0
        .into_iter()
        .map(|p| {
            let s = stamp(&p);
            (p, s)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_fifos_and_walks_link_loops_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "x: 1\n").unwrap();
        let fifo = dir.path().join("fifo.yaml");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo takes a valid NUL-terminated path and a mode.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).unwrap();
        let (files, refused) = manifest_files(dir.path()).unwrap();
        assert_eq!(files, vec![dir.path().join("a.yaml")]);
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(read_manifest(&fifo).is_err());
        assert!(read_manifest(&dir.path().join("zero.yaml")).is_err());
        assert_eq!(read_manifest(&dir.path().join("a.yaml")).unwrap(), "x: 1\n");
    }

    #[test]
    fn fresh_files_are_not_settled() {
        let now = SystemTime::now();
        assert!(!settled(&(1, Some(now)), now));
        assert!(settled(&(1, Some(now - SETTLE)), now));
        assert!(settled(&(1, Some(now + SETTLE)), now));
    }
}
