//! The real test API server (etcd + kube-apiserver, built by hack/envtest-assets.sh and
//! started by hack/test-apiserver.sh on loopback) and kubectl against it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub struct TestApi {
    pub state: PathBuf,
    pub kubeconfig: PathBuf,
    pub assets: PathBuf,
    owned: bool,
}

fn start(state: &Path) -> TestApi {
    let out = Command::new(format!("{REPO}/hack/test-apiserver.sh"))
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
        owned: false,
    }
}

/// The API server shared by the tests of one run, with nodeboot's CRDs installed.
pub fn shared() -> &'static TestApi {
    static API: OnceLock<TestApi> = OnceLock::new();
    API.get_or_init(|| {
        let state = std::env::var("NODEBOOT_TEST_STATE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from("/tmp/nodeboot-test-apiserver"));
        let api = start(&state);
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
    let state = std::env::temp_dir().join(format!(
        "nodeboot-test-apiserver-{name}-{}",
        std::process::id()
    ));
    let mut api = start(&state);
    api.owned = true;
    api
}

impl Drop for TestApi {
    fn drop(&mut self) {
        if self.owned {
            let _ = Command::new(format!("{REPO}/hack/test-apiserver.sh"))
                .arg("stop")
                .env("NODEBOOT_TEST_STATE", &self.state)
                .status();
        }
    }
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

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(self.kubectl_bin())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.state.join("kubectl-cache"))
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    /// Runs kubectl and returns stdout; panics with stderr when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, namespace: &str, yaml: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(self.kubectl_bin())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.state.join("kubectl-cache"))
            .args(["apply", "-n", namespace, "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("write manifest");
        child.wait_with_output().expect("kubectl finishes")
    }

    pub fn apply_ok(&self, namespace: &str, yaml: &str) {
        let out = self.apply(namespace, yaml);
        assert!(
            out.status.success(),
            "apply failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
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
    let site = std::fs::read_to_string(format!("{REPO}/examples/site.yaml")).expect("examples");
    let configs =
        std::fs::read_to_string(format!("{REPO}/examples/bootconfigs.yaml")).expect("examples");
    format!("{site}\n---\n{configs}").replace("namespace: hpc", &format!("namespace: {namespace}"))
}
