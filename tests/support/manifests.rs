//! Manifest directories for `nodeboot serve`, and the small NodeGroups and BootConfigs tests
//! write into them.

use std::path::Path;
use std::time::Duration;

pub const EXAMPLES_SITE: &str = include_str!("../../examples/site.yaml");
pub const EXAMPLES_CONFIGS: &str = include_str!("../../examples/bootconfigs.yaml");

/// A temporary directory holding `files` (name, content). They are dated a few seconds back,
/// as if moved into place: the manifest folder takes a file only once it has stopped changing
/// (src/manifests/files.rs, `SETTLE`), and these are complete.
pub fn manifest_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = std::time::SystemTime::now() - Duration::from_secs(5);
    for (name, content) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write manifest");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(written))
            .expect("date manifest");
    }
    dir
}

/// A temporary copy of the example site (examples/), for tests that edit it.
pub fn examples() -> tempfile::TempDir {
    manifest_dir(&[
        ("site.yaml", EXAMPLES_SITE),
        ("bootconfigs.yaml", EXAMPLES_CONFIGS),
    ])
}

/// A BootConfig for every node of namespace `hpc` that `selector` matches, with `params` as
/// given and kernel and initrd under `http://img/{name}/`.
pub fn config(name: &str, priority: i32, selector: &str, params: &str) -> String {
    format!(
        "apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {{name: {name}, namespace: hpc}}\nspec:\n  nodeSelector: {selector}\n  priority: {priority}\n  kernel: http://img/{name}/vmlinuz\n  initrd: http://img/{name}/initrd\n  params: {params:?}\n"
    )
}

/// A NodeGroup in namespace `hpc` labelled `role: compute`, with `nodes` (YAML list items).
pub fn group(name: &str, nodes: &str) -> String {
    format!(
        "apiVersion: nodeboot.io/v1alpha1\nkind: NodeGroup\nmetadata: {{name: {name}, namespace: hpc}}\nspec:\n  labels: {{role: compute}}\n  metaData: {{syslog_aggregator: 10.1.0.5}}\n  nodes:\n{nodes}"
    )
}

/// Replaces a file's content in one step (as editors and ConfigMap updates do) and makes sure
/// its modification time moves, even on filesystems with coarse timestamps.
pub fn rewrite(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, content).expect("write");
    let f = std::fs::File::options()
        .write(true)
        .open(&tmp)
        .expect("open");
    let later = std::time::SystemTime::now() + Duration::from_secs(1);
    f.set_modified(later).expect("mtime");
    std::fs::rename(&tmp, path).expect("rename");
}
