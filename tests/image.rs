//! The container image (Dockerfile, .dockerignore) against the project, without a container
//! engine: the build command is the one CI builds with, the Rust and Debian versions fit, the
//! build context holds every file cargo needs, and the binary serves as an unprivileged user
//! from a read-only directory, as it does in the image under the chart's security context.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{REPO}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Dockerfile instructions, with continuation lines joined and comments dropped.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

/// The stages: the FROM line and the instructions under it.
fn stages(dockerfile: &str) -> Vec<(String, Vec<String>)> {
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    for i in instructions(dockerfile) {
        if i.starts_with("FROM ") {
            stages.push((i, Vec::new()));
        } else if let Some(last) = stages.last_mut() {
            last.1.push(i);
        }
    }
    stages
}

fn values_yaml() -> Value {
    serde_yaml_ng::from_str(&read("charts/nodeboot/values.yaml")).expect("values.yaml")
}

#[test]
fn dockerfile_builds_as_ci_does_and_ships_only_the_binary_as_non_root() {
    let dockerfile = read("Dockerfile");
    let stages = stages(&dockerfile);
    assert_eq!(stages.len(), 2, "a builder stage and a runtime stage");
    let (builder_from, builder) = &stages[0];
    let (runtime_from, runtime) = &stages[1];

    // The build: release profile, Cargo.lock as committed (as `cargo test --locked` in CI).
    let builds: Vec<&String> = builder
        .iter()
        .filter(|i| i.contains("cargo build"))
        .collect();
    assert_eq!(builds.len(), 1, "{builder:?}");
    let build = builds[0].split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        build.contains("cargo build --release --locked --bin nodeboot"),
        "{build}"
    );
    assert!(
        read("hack/test.sh").contains("--locked"),
        "CI builds with --locked"
    );

    // Builder: Debian's Rust image, new enough for Cargo.toml's rust-version, on the Debian
    // release of the runtime (the binary links against that glibc).
    let image = builder_from.split_whitespace().nth(1).unwrap();
    let tag = image
        .strip_prefix("docker.io/library/rust:")
        .unwrap_or_else(|| panic!("builder is not Debian's rust image: {image}"));
    let (version, debian) = tag.split_once('-').expect("rust:VERSION-DEBIAN");
    let numbers = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    let wanted = env!("CARGO_PKG_RUST_VERSION");
    assert!(
        numbers(version) >= numbers(wanted),
        "builder Rust {version} is older than rust-version {wanted}"
    );
    let runtime_image = runtime_from.split_whitespace().nth(1).unwrap();
    assert!(
        runtime_image.starts_with("gcr.io/distroless/cc-"),
        "{runtime_image}"
    );
    let debian_version = match debian {
        "bookworm" => "debian12",
        "trixie" => "debian13",
        other => panic!("unknown Debian release {other}"),
    };
    assert!(
        runtime_image.contains(&format!("cc-{debian_version}:nonroot")),
        "builder on {debian}, runtime {runtime_image}"
    );

    // Runtime: only the binary, a numeric non-root user (the one the chart runs as).
    let copies: Vec<&String> = runtime.iter().filter(|i| i.starts_with("COPY")).collect();
    assert_eq!(copies.len(), 1, "{runtime:?}");
    assert!(
        copies[0].starts_with("COPY --from=builder "),
        "{}",
        copies[0]
    );
    assert!(
        copies[0].ends_with(" /usr/local/bin/nodeboot"),
        "{}",
        copies[0]
    );
    assert!(
        !runtime
            .iter()
            .any(|i| i.starts_with("RUN") || i.starts_with("ADD")),
        "{runtime:?}"
    );
    let user = runtime
        .iter()
        .filter_map(|i| i.strip_prefix("USER "))
        .next_back()
        .expect("USER");
    let (uid, gid) = user.split_once(':').expect("USER uid:gid");
    let (uid, gid): (u64, u64) = (uid.parse().unwrap(), gid.parse().unwrap());
    assert!(uid != 0 && gid != 0, "USER {user}");
    let psc = &values_yaml()["podSecurityContext"];
    assert_eq!(psc["runAsUser"], uid, "the chart runs as the image's user");
    assert_eq!(psc["runAsGroup"], gid);
    assert!(
        runtime
            .iter()
            .any(|i| i == "ENTRYPOINT [\"/usr/local/bin/nodeboot\"]"),
        "{runtime:?}"
    );
}

/// Whether `.dockerignore` keeps `path` (relative to the repository) out of the build context.
/// Understands what the file uses: directory or file names, and `**/*.ext`.
fn ignored(patterns: &[&str], path: &str) -> bool {
    patterns.iter().any(|p| {
        let p = p.trim_end_matches('/');
        match p.strip_prefix("**/*") {
            Some(ext) => path.ends_with(ext),
            None => path == p || path.starts_with(&format!("{p}/")),
        }
    })
}

#[test]
fn docker_build_context_holds_what_cargo_needs_and_not_target() {
    let dockerignore = read(".dockerignore");
    let patterns: Vec<&str> = dockerignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for unsupported in ["!", "?", "["] {
        assert!(
            !patterns.iter().any(|p| p.contains(unsupported)),
            "extend ignored() for {unsupported}"
        );
    }
    assert!(ignored(&patterns, "target/release/nodeboot"));
    assert!(ignored(&patterns, ".git/HEAD"));

    // Every target cargo knows of (bins, tests, benches: cargo refuses to build when a declared
    // one is missing), and the manifest and lock file.
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .current_dir(REPO)
        .output()
        .expect("cargo metadata");
    assert!(out.status.success());
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata json");
    let mut needed = vec!["Cargo.toml".to_owned(), "Cargo.lock".to_owned()];
    for target in meta["packages"][0]["targets"].as_array().unwrap() {
        let src = target["src_path"].as_str().unwrap();
        let rel = Path::new(src)
            .strip_prefix(REPO)
            .expect("target in the repo");
        needed.push(rel.display().to_string());
    }
    assert!(needed.iter().any(|p| p == "src/main.rs"), "{needed:?}");
    for path in &needed {
        assert!(!ignored(&patterns, path), ".dockerignore leaves out {path}");
    }
}

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

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_serves_as_nobody_from_a_read_only_directory() {
    // setpriv switches to another user only as root (CI runs as root).
    let me = Command::new("id").arg("-u").output().expect("id");
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        eprintln!("skipped: switching to user nobody needs root");
        return;
    }
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
    let child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
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
    let child = Killed(child);
    let logs = || std::fs::read_to_string(log.path()).unwrap_or_default();

    let started = Instant::now();
    loop {
        let ready = reqwest::get(format!("http://127.0.0.1:{admin}/readyz")).await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not ready as nobody:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
