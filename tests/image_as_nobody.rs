//! The binary serves as an unprivileged user from a read-only directory, as it does in the
//! container image under the chart's security context. Needs root (to switch users with
//! setpriv, from util-linux): part of the e2e tier, which hack/test.sh runs as CI does, as root.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::REPO;
use support::nodeboot::wait_ready;
use support::process::{KillOnDrop, dies_with_spawning_thread};

/// A directory and everything under it made read-only (files 0444, or 0555 when executable).
fn make_read_only(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            make_read_only(&path);
        } else {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            let ro = if mode & 0o111 != 0 { 0o555 } else { 0o444 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(ro)).unwrap();
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
}

fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_serves_as_nobody_from_a_read_only_directory() {
    let me = Command::new("id").arg("-u").output().expect("id");
    assert_eq!(
        String::from_utf8_lossy(&me.stdout).trim(),
        "0",
        "switching to user nobody needs root: run the e2e tier as root, as CI does"
    );
    // The debug binary cargo built for the tests stands in for the image's release binary:
    // what is checked (user, permissions, no file written) does not depend on the profile.
    let root = tempfile::tempdir().expect("tempdir");
    let bin_dir = root.path().join("bin");
    let manifests = root.path().join("manifests");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::create_dir_all(&manifests).unwrap();
    let bin = bin_dir.join("nodeboot");
    std::fs::copy(env!("CARGO_BIN_EXE_nodeboot"), &bin).expect("copy binary");
    for name in ["site.yaml", "bootconfigs.yaml"] {
        std::fs::copy(format!("{REPO}/examples/{name}"), manifests.join(name)).unwrap();
    }
    make_read_only(root.path());

    let boot = support::free_port();
    let admin = support::free_port();
    let log = tempfile::NamedTempFile::new().expect("log");
    // setpriv's own --pdeathsig: switching users clears the one set before exec.
    let child = dies_with_spawning_thread(&mut Command::new("setpriv"))
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["--pdeathsig", "KILL", "--"])
        .arg(&bin)
        .args(["serve", "--manifests"])
        .arg(&manifests)
        .args(["--listen", &format!("127.0.0.1:{boot}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .current_dir(root.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().expect("log"))
        .spawn()
        .expect("setpriv (util-linux) runs");
    let child = KillOnDrop(child);
    let logs = || std::fs::read_to_string(log.path()).unwrap_or_default();

    wait_ready(&format!("http://127.0.0.1:{admin}"), logs).await;
    assert_eq!(uid_of(child.0.id()), Some(65534), "runs as nobody");
    let (status, _, body) = support::get(&format!(
        "http://127.0.0.1:{boot}/boot/v1/bootscript?mac=02:00:00:00:10:00"
    ))
    .await;
    assert_eq!(status, 200, "{body}\n{}", logs());
    assert!(
        body.contains("kernel --name kernel http://images.example/rocky9/vmlinuz"),
        "{body}"
    );
    drop(child);

    // Nothing was written next to the binary or the manifests.
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![root.path().to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert_eq!(files.len(), 3, "{files:?}");
    // Let the temporary directory be removed.
    for dir in [root.path(), &bin_dir, &manifests] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
