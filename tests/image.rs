//! The container image (Dockerfile, .dockerignore) against the project, without a container
//! engine: the build command is the one CI builds with, the Rust and Debian versions fit, and
//! the build context holds every file cargo needs. (tests/image_as_nobody.rs runs the binary as
//! the image does.)

use std::path::Path;
use std::process::Command;

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

/// The stages: the FROM line (build arguments replaced by their defaults, as a build without
/// --build-arg sees it) and the instructions under it.
fn stages(dockerfile: &str) -> Vec<(String, Vec<String>)> {
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    let mut defaults: Vec<(String, String)> = Vec::new();
    for i in instructions(dockerfile) {
        if stages.is_empty()
            && let Some((name, value)) = i.strip_prefix("ARG ").and_then(|a| a.split_once('='))
        {
            defaults.push((format!("${{{name}}}"), value.to_owned()));
        } else if i.starts_with("FROM ") {
            let from = defaults
                .iter()
                .fold(i, |from, (arg, value)| from.replace(arg, value));
            stages.push((from, Vec::new()));
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
