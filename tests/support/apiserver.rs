//! The real test API server (etcd + kube-apiserver, built by hack/envtest-assets.sh and
//! started by hack/test-apiserver.sh on loopback) and kubectl against it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use super::REPO;
use super::manifests::{EXAMPLES_CONFIGS, EXAMPLES_SITE};
use super::process::{OnExit, stdout_of};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hack/test-apiserver.sh");

pub struct TestApi {
    pub state: PathBuf,
    pub kubeconfig: PathBuf,
    pub assets: PathBuf,
    /// Stops the server when dropped or when the test process exits; `None` for a server
    /// someone else started (hack/test.sh), which is theirs to stop.
    stop: Option<OnExit>,
}

/// Starts the server of `state`, or reuses it when it runs already.
fn start(state: &Path) -> TestApi {
    let out = Command::new(SCRIPT)
        .arg("start")
        .env("NODEBOOT_TEST_STATE", state)
        .stderr(Stdio::inherit())
        .output()
        .expect("hack/test-apiserver.sh runs");
    assert!(out.status.success(), "the test API server did not start");
    let env = String::from_utf8_lossy(&out.stdout).to_string();
    let value = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .map(|v| PathBuf::from(v.trim_matches('\'')))
            .unwrap_or_else(|| panic!("{name} missing from:\n{env}"))
    };
    TestApi {
        state: state.to_owned(),
        kubeconfig: value("KUBECONFIG"),
        assets: value("KUBEBUILDER_ASSETS"),
        stop: None,
    }
}

fn is_running(state: &Path) -> bool {
    Command::new(SCRIPT)
        .arg("status")
        .env("NODEBOOT_TEST_STATE", state)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A server in a state directory of this process's own, stopped when the returned value is
/// dropped or, at the latest, when the test process exits.
fn owned(name: &str) -> TestApi {
    let state = std::env::temp_dir().join(format!(
        "nodeboot-test-apiserver-{name}-{}",
        std::process::id()
    ));
    // Armed before the start, so that a start that fails half-way is cleaned up too. The logs
    // stay for a failed test to be read; etcd's data (most of the 60 MB) goes.
    let stop = OnExit::run(
        "bash",
        &[
            "-c",
            "\"$0\" stop; rm -rf \"$NODEBOOT_TEST_STATE/etcd-data\"",
            SCRIPT,
        ],
        &[("NODEBOOT_TEST_STATE", state.as_os_str())],
    );
    let mut api = start(&state);
    api.stop = Some(stop);
    api
}

/// The API server shared by the tests of one run, with nodeboot's CRDs installed: the one at
/// `NODEBOOT_TEST_STATE` (default /tmp/nodeboot-test-apiserver) when it runs (hack/test.sh
/// starts it, and stops it after every test binary), else one of this process's own.
pub fn shared() -> &'static TestApi {
    static API: OnceLock<TestApi> = OnceLock::new();
    API.get_or_init(|| {
        let state = std::env::var_os("NODEBOOT_TEST_STATE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/nodeboot-test-apiserver"));
        // Never start a server at a shared path: the next test binary could take it over just
        // before this one's exit stops it.
        let api = if is_running(&state) {
            start(&state)
        } else {
            owned("shared")
        };
        api.install_crds();
        api
    })
}

/// An API server of the test's own, for tests that stop it; stopped when dropped.
pub fn dedicated(name: &str) -> TestApi {
    let api = dedicated_without_crds(name);
    api.install_crds();
    api
}

/// Like `dedicated`, without nodeboot's CRDs: a new cluster, as an installer finds it.
pub fn dedicated_without_crds(name: &str) -> TestApi {
    owned(name)
}

impl TestApi {
    fn install_crds(&self) {
        self.kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            &format!("{REPO}/crds/"),
        ]);
        self.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd/nodegroups.nodeboot.io",
            "crd/bootconfigs.nodeboot.io",
        ]);
    }

    pub fn kubectl_bin(&self) -> PathBuf {
        self.assets.join("kubectl")
    }

    /// kubectl talking to this server, with a cache of its own.
    fn kubectl_command(&self) -> Command {
        let mut cmd = Command::new(self.kubectl_bin());
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.state.join("kubectl-cache"));
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_command()
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    /// Runs kubectl and returns stdout; panics with stderr when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        stdout_of(format_args!("kubectl {args:?}"), &self.kubectl(args))
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, namespace: &str, yaml: &str) -> Output {
        super::process::output_with_stdin(
            self.kubectl_command()
                .args(["apply", "-n", namespace, "-f", "-"]),
            yaml,
        )
    }

    pub fn apply_ok(&self, namespace: &str, yaml: &str) {
        stdout_of("kubectl apply", &self.apply(namespace, yaml));
    }

    /// A namespace no other test uses.
    pub fn fresh_namespace(&self, prefix: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let ns = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.kubectl_ok(&["create", "namespace", &ns]);
        ns
    }

    pub fn get_json(&self, namespace: &str, what: &str) -> serde_json::Value {
        let out = self.kubectl_ok(&["get", "-n", namespace, what, "-o", "json"]);
        serde_json::from_str(&out).expect("kubectl json")
    }

    /// `kubectl patch --type=merge` of `what` (e.g. `bc/compute`) with the JSON `patch`.
    pub fn patch_merge(&self, namespace: &str, what: &str, patch: &str) {
        self.kubectl_ok(&["patch", what, "-n", namespace, "--type=merge", "-p", patch]);
    }

    pub fn kubeconfig_str(&self) -> String {
        self.kubeconfig.display().to_string()
    }
}

/// The example site, moved into `namespace`.
pub fn examples_in(namespace: &str) -> String {
    format!("{EXAMPLES_SITE}\n---\n{EXAMPLES_CONFIGS}")
        .replace("namespace: hpc", &format!("namespace: {namespace}"))
}
