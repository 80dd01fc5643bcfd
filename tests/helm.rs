//! The Helm chart (charts/nodeboot). It renders and lints; it installs, upgrades and uninstalls
//! on the real test API server; and its RBAC is exactly what `nodeboot run` needs: the operator,
//! run with a token of the chart's ServiceAccount and the Deployment's own flags, resolves the
//! example site, takes the Lease and publishes events without a single refusal, while the same
//! account can do nothing else.
//!
//! helm comes from hack/helm.sh (built from its Go module on first use, then cached).

mod support;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize as _;
use serde_json::{Value, json};
use support::apiserver::{self, TestApi, examples_in};
use support::process::{dies_with_spawning_thread, stdout_of};
use support::wait::eventually;
use support::{Nodeboot, REPO};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/nodeboot");
/// Longest one helm or kubectl call may take.
const CALL_LIMIT: Duration = Duration::from_secs(120);
/// Longest the first build of helm may take (a few minutes on two cores; cached afterwards).
const BUILD_LIMIT: Duration = Duration::from_secs(1800);

/// Runs `cmd` with a wall-clock limit; past it, kills the command's whole process group (so
/// hack/helm.sh's `go build` goes too) and fails the test.
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    dies_with_spawning_thread(&mut cmd)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .process_group(0);
    let what = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
            panic!(
                "{what} took longer than {limit:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    }
}

fn helm_bin() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let started = Instant::now();
        let out = run_bounded(Command::new(format!("{REPO}/hack/helm.sh")), BUILD_LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "hack/helm.sh failed:\n{stderr}");
        eprintln!("{}(helm ready after {:?})", stderr, started.elapsed());
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(stdout.lines().last().expect("helm path").trim())
    })
}

/// helm with a home of its own (no repositories, plugins or caches of the developer's), talking
/// to the test API server or, offline, to no cluster at all.
struct Helm {
    home: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Helm {
    /// For template and lint: the kubeconfig is empty, so no call can reach a real cluster.
    fn offline() -> Helm {
        let home = tempfile::tempdir().expect("tempdir");
        let kubeconfig = home.path().join("kubeconfig");
        std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\n").expect("kubeconfig");
        Helm { home, kubeconfig }
    }

    fn on(api: &TestApi) -> Helm {
        Helm {
            home: tempfile::tempdir().expect("tempdir"),
            kubeconfig: api.kubeconfig.clone(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(helm_bin());
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.home.path().join("cache"))
            .env("HELM_CONFIG_HOME", self.home.path().join("config"))
            .env("HELM_DATA_HOME", self.home.path().join("data"))
            .env_remove("HELM_NAMESPACE")
            .env_remove("HELM_KUBECONTEXT");
        run_bounded(cmd, CALL_LIMIT)
    }

    /// Runs helm and returns stdout; panics with stderr when it fails.
    fn ok(&self, args: &[&str]) -> String {
        stdout_of(format_args!("helm {args:?}"), &self.run(args))
    }

    /// `helm template` of the chart as release "nb" in `namespace`, parsed.
    fn template(&self, namespace: &str, sets: &[&str]) -> Vec<Value> {
        docs(&self.ok(&template_args(namespace, sets)))
    }

    /// The error of a `helm template` that must fail.
    fn template_err(&self, namespace: &str, sets: &[&str]) -> String {
        let out = self.run(&template_args(namespace, sets));
        assert!(!out.status.success(), "helm template {sets:?} rendered");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn template_args<'a>(namespace: &'a str, sets: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["template", "nb", CHART, "--namespace", namespace];
    for s in sets {
        args.extend(["--set", s]);
    }
    args
}

/// The objects of a multi-document YAML stream.
fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in:\n{objs:#?}"))
}

fn kinds(objs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = objs
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    k.sort();
    k
}

fn container(deploy: &Value) -> &Value {
    &deploy["spec"]["template"]["spec"]["containers"][0]
}

fn args(deploy: &Value) -> Vec<String> {
    container(deploy)["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_owned())
        .collect()
}

/// The binary takes the Deployment's arguments: run with a kubeconfig naming no cluster, it
/// gets past parsing them and stops at connecting (clap would exit 2 on a flag it does not know
/// or a value out of range).
fn assert_binary_accepts(args: &[String]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\n").expect("kubeconfig");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodeboot"));
    cmd.args(args.iter().map(|a| a.replace("$(POD_IP)", "127.0.0.1")))
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST");
    let out = run_bounded(cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1) && stderr.contains("cannot reach the Kubernetes API"),
        "nodeboot {args:?}: {:?}\n{stderr}",
        out.status
    );
}

#[test]
fn helm_lint_is_clean() {
    let helm = Helm::offline();
    let variants: [&[&str]; 4] = [
        &[],
        &[
            "serviceMonitor.enabled=true",
            "networkPolicy.enabled=true",
            "networkPolicy.egress.enabled=true",
        ],
        &[
            "hostNetwork=true",
            "boot.service.type=LoadBalancer",
            "boot.advertiseURL=http://10.1.0.10:8080",
        ],
        &[
            "watchNamespaces={hpc}",
            "replicaCount=1",
            "leaderElection.enabled=false",
        ],
    ];
    for sets in variants {
        let mut args = vec!["lint", "--strict", CHART];
        for s in sets {
            args.extend(["--set", s]);
        }
        let out = helm.ok(&args);
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{sets:?}:\n{out}"
        );
        // Nothing but the one suggestion we leave: an icon URL the project does not have.
        let remarks: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with('['))
            .filter(|l| *l != "[INFO] Chart.yaml: icon is recommended")
            .collect();
        assert!(remarks.is_empty(), "helm lint {sets:?}:\n{out}");
    }
}

#[test]
fn default_render_is_hardened_and_least_privilege() {
    let objs = Helm::offline().template("site", &[]);
    assert_eq!(
        kinds(&objs),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "RoleBinding",
            "Secret",
            "Service",
            "Service",
            "Service",
            "ServiceAccount",
            "ValidatingWebhookConfiguration",
        ],
        "{objs:#?}"
    );
    let cluster_scoped = [
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
    ];
    for o in &objs {
        if cluster_scoped.contains(&o["kind"].as_str().unwrap_or_default()) {
            assert!(o["metadata"]["namespace"].is_null(), "{o:#}");
        } else {
            assert_eq!(o["metadata"]["namespace"], "site", "{o:#}");
        }
    }

    let deploy = find(&objs, "Deployment", "nb-nodeboot");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let a = args(deploy);
    for expected in [
        "run",
        "--namespace=site",
        "--leader-election=on",
        "--lease-name=nb-nodeboot-leader",
        "--lease-namespace=site",
        "--listen=0.0.0.0:8080",
        "--admin-listen=0.0.0.0:9090",
        "--advertise-url=http://$(POD_IP):8080",
        "--cloud-init-source-check=on",
        "--log-format=json",
        "--webhook-listen=0.0.0.0:9443",
        "--webhook-configuration=site-nb-nodeboot",
        "--webhook-service=nb-nodeboot-webhook",
        "--webhook-cert-secret=nb-nodeboot-webhook-cert",
    ] {
        assert!(a.iter().any(|x| x == expected), "{expected} not in {a:?}");
    }
    assert_binary_accepts(&a);
    let c = container(deploy);
    let env_from = |name: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["valueFrom"]["fieldRef"]["fieldPath"].clone())
    };
    assert_eq!(env_from("POD_NAME"), Some(json!("metadata.name")));
    assert_eq!(env_from("POD_NAMESPACE"), Some(json!("metadata.namespace")));
    assert_eq!(env_from("POD_IP"), Some(json!("status.podIP")));
    let ports = &c["ports"];
    assert_eq!(
        ports[0],
        json!({"name": "boot", "containerPort": 8080, "protocol": "TCP"})
    );
    assert_eq!(
        ports[1],
        json!({"name": "admin", "containerPort": 9090, "protocol": "TCP"})
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "admin"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "admin"})
    );

    // Security contexts: non-root, nothing to escalate to, read-only root, RuntimeDefault.
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}));
    assert!(pod["hostNetwork"].is_null());

    // RBAC: the verbs the operator uses, nothing cluster-wide.
    assert_eq!(
        find(&objs, "Role", "nb-nodeboot")["rules"],
        json!([
            {"apiGroups": ["nodeboot.io"], "resources": ["nodegroups", "bootconfigs"], "verbs": ["list", "watch"]},
            {"apiGroups": ["nodeboot.io"], "resources": ["nodegroups/status", "bootconfigs/status"], "verbs": ["patch"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch", "create", "patch", "delete"]},
        ])
    );
    assert_eq!(
        find(&objs, "Role", "nb-nodeboot-leader-election")["rules"],
        json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["nb-nodeboot-leader"], "verbs": ["get", "patch"]},
        ])
    );
    // The webhook: its certificate Secret and its own configuration, by name only.
    assert_eq!(
        find(&objs, "Role", "nb-nodeboot-webhook")["rules"],
        json!([
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["nb-nodeboot-webhook-cert"], "verbs": ["get", "patch"]},
        ])
    );
    assert_eq!(
        find(&objs, "ClusterRole", "site-nb-nodeboot-webhook")["rules"],
        json!([
            {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"], "resourceNames": ["site-nb-nodeboot"], "verbs": ["get", "patch"]},
        ])
    );
    let webhooks = &find(&objs, "ValidatingWebhookConfiguration", "site-nb-nodeboot")["webhooks"];
    for webhook in webhooks.as_array().expect("webhooks") {
        assert_eq!(webhook["failurePolicy"], "Fail");
        assert_eq!(
            webhook["clientConfig"]["service"],
            json!({"name": "nb-nodeboot-webhook", "namespace": "site", "path": "/validate", "port": 443})
        );
        assert_eq!(
            webhook["namespaceSelector"]["matchExpressions"][0]["values"],
            json!(["site"])
        );
    }
    for binding in [
        "nb-nodeboot",
        "nb-nodeboot-leader-election",
        "nb-nodeboot-webhook",
    ] {
        let b = find(&objs, "RoleBinding", binding);
        assert_eq!(b["roleRef"]["name"], binding);
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "name": "nb-nodeboot", "namespace": "site"}])
        );
    }

    // Services: the boot listener and the admin listener, both reaching the pods by port name.
    let boot = find(&objs, "Service", "nb-nodeboot-boot");
    assert_eq!(boot["spec"]["type"], "ClusterIP");
    assert_eq!(boot["spec"]["ports"][0]["targetPort"], "boot");
    // Only NodePort and LoadBalancer Services take a traffic policy.
    assert!(boot["spec"]["externalTrafficPolicy"].is_null());
    let admin = find(&objs, "Service", "nb-nodeboot-admin");
    assert_eq!(admin["spec"]["ports"][0]["targetPort"], "admin");
    let pdb = find(&objs, "PodDisruptionBudget", "nb-nodeboot");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn optional_objects_and_options_render() {
    let helm = Helm::offline();

    // ServiceMonitor: off by default (its CRD may not exist), scrapes the admin Service.
    let objs = helm.template("site", &["serviceMonitor.enabled=true"]);
    let sm = find(&objs, "ServiceMonitor", "nb-nodeboot");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        sm["spec"]["endpoints"][0],
        json!({"port": "admin", "path": "/metrics", "interval": "30s"})
    );
    let admin = find(&objs, "Service", "nb-nodeboot-admin");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&admin["metadata"]["labels"][k], v, "label {k}");
    }

    // NetworkPolicy: the boot port from anywhere, the admin port from listed peers only.
    let objs = helm.template(
        "site",
        &[
            "networkPolicy.enabled=true",
            "networkPolicy.egress.enabled=true",
        ],
    );
    let np = find(&objs, "NetworkPolicy", "nb-nodeboot");
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        np["spec"]["ingress"][0],
        json!({"ports": [{"port": "boot", "protocol": "TCP"}]})
    );
    assert_eq!(
        np["spec"]["ingress"][1]["from"],
        json!([{"podSelector": {}}])
    );
    // The API server calls the webhook from an address the chart cannot know.
    assert_eq!(
        np["spec"]["ingress"][2],
        json!({"ports": [{"port": "webhook", "protocol": "TCP"}]})
    );

    // Boot networks: hostNetwork, a LoadBalancer keeping source addresses, a NodePort.
    let objs = helm.template(
        "site",
        &[
            "hostNetwork=true",
            "boot.service.type=LoadBalancer",
            "boot.service.nodePort=30080",
            "boot.advertiseURL=http://10.1.0.10:8080",
            "boot.trustedProxies={10.0.0.0/8,192.168.0.1/32}",
            "boot.cloudInitSourceCheck=false",
        ],
    );
    let deploy = find(&objs, "Deployment", "nb-nodeboot");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    let a = args(deploy);
    for expected in [
        "--advertise-url=http://10.1.0.10:8080",
        "--trusted-proxies=10.0.0.0/8,192.168.0.1/32",
        "--cloud-init-source-check=off",
    ] {
        assert!(a.iter().any(|x| x == expected), "{expected} not in {a:?}");
    }
    assert_binary_accepts(&a);
    let boot = find(&objs, "Service", "nb-nodeboot-boot");
    assert_eq!(boot["spec"]["type"], "LoadBalancer");
    assert_eq!(boot["spec"]["externalTrafficPolicy"], "Local");
    assert_eq!(boot["spec"]["ports"][0]["nodePort"], 30080);

    // Another namespace watched: its Role is there, the Lease's stays in the release namespace,
    // and no Secrets are readable in the release namespace.
    let objs = helm.template("site", &["watchNamespaces={hpc}"]);
    let role = find(&objs, "Role", "nb-nodeboot");
    assert_eq!(role["metadata"]["namespace"], "hpc");
    assert_eq!(
        find(&objs, "RoleBinding", "nb-nodeboot")["subjects"][0]["namespace"],
        "site"
    );
    let lease_role = find(&objs, "Role", "nb-nodeboot-leader-election");
    assert_eq!(lease_role["metadata"]["namespace"], "site");
    assert!(!lease_role.to_string().contains("secrets"));
    let a = args(find(&objs, "Deployment", "nb-nodeboot"));
    assert!(a.contains(&"--namespace=hpc".to_owned()), "{a:?}");
    assert!(a.contains(&"--lease-namespace=site".to_owned()), "{a:?}");

    // One replica without election: no Lease, no Role for it.
    let objs = helm.template("site", &["replicaCount=1", "leaderElection.enabled=false"]);
    let a = args(find(&objs, "Deployment", "nb-nodeboot"));
    assert!(a.contains(&"--leader-election=off".to_owned()), "{a:?}");
    assert_binary_accepts(&a);
    assert!(!a.iter().any(|x| x.starts_with("--lease")), "{a:?}");
    assert!(!objs.iter().any(|o| o.to_string().contains("leases")));

    // cert-manager issues the webhook's certificate: mounted, and its CA injected; nodeboot
    // then needs no rights on Secrets or on the webhook configuration.
    let objs = helm.template(
        "site",
        &[
            "webhook.certManager.enabled=true",
            "webhook.certManager.issuerRef.kind=ClusterIssuer",
            "webhook.certManager.issuerRef.name=site-ca",
        ],
    );
    let a = args(find(&objs, "Deployment", "nb-nodeboot"));
    assert!(
        a.contains(&"--webhook-cert-dir=/var/run/nodeboot/webhook".to_owned()),
        "{a:?}"
    );
    assert_binary_accepts(&a);
    let cert = find(&objs, "Certificate", "nb-nodeboot-webhook");
    assert_eq!(cert["spec"]["secretName"], "nb-nodeboot-webhook-cert");
    assert_eq!(
        cert["spec"]["issuerRef"],
        json!({"kind": "ClusterIssuer", "name": "site-ca"})
    );
    assert_eq!(
        find(&objs, "ValidatingWebhookConfiguration", "site-nb-nodeboot")["metadata"]["annotations"]
            ["cert-manager.io/inject-ca-from"],
        "site/nb-nodeboot-webhook"
    );
    assert!(
        !objs
            .iter()
            .any(|o| o["kind"] == "Issuer" || o["kind"] == "ClusterRole")
    );
    assert!(!objs.iter().any(|o| o["kind"] == "Secret"));

    // Refused with a reason: two writers, two namespaces (the binary watches one), bad values.
    let err = helm.template_err("site", &["leaderElection.enabled=false"]);
    assert!(err.contains("needs replicaCount 1"), "{err}");
    let err = helm.template_err("site", &["watchNamespaces={a,b}"]);
    assert!(err.contains("nodeboot watches one namespace"), "{err}");
    let err = helm.template_err("site", &["logFormat=xml"]);
    assert!(err.contains("/logFormat"), "{err}");
    let err = helm.template_err("site", &["boot.advertiseURL=ftp://x"]);
    assert!(err.contains("/boot/advertiseURL"), "{err}");
    let err = helm.template_err("site", &["leaderElection.leaseDuration=1"]);
    assert!(err.contains("/leaderElection/leaseDuration"), "{err}");
}

/// Writes `yaml` to a temporary file for `kubectl -f`.
fn manifest_file(yaml: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), yaml).expect("write manifest");
    file
}

#[test]
fn every_variant_passes_server_side_validation_and_pod_security() {
    let api = apiserver::shared();
    let helm = Helm::offline();
    let variants: [&[&str]; 5] = [
        &[],
        &[
            "networkPolicy.enabled=true",
            "networkPolicy.egress.enabled=true",
        ],
        &[
            "boot.service.type=LoadBalancer",
            "boot.service.loadBalancerSourceRanges={10.1.0.0/16}",
            "boot.advertiseURL=http://10.1.0.10:8080",
        ],
        &[
            "boot.service.type=NodePort",
            "replicaCount=1",
            "leaderElection.enabled=false",
        ],
        &["hostNetwork=true", "boot.service.enabled=false"],
    ];
    for sets in variants {
        // A namespace under the "restricted" Pod Security Standard, warning on violations, for
        // the release and one watched besides it.
        let ns = api.fresh_namespace("psa");
        let watched = api.fresh_namespace("psa-watched");
        api.kubectl_ok(&[
            "label",
            "namespace",
            &ns,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted",
        ]);
        let watch = format!("watchNamespaces={{{watched}}}");
        let mut all_sets = sets.to_vec();
        all_sets.push(&watch);
        let rendered = helm.ok(&template_args(&ns, &all_sets));
        let file = manifest_file(&rendered);
        let out = api.kubectl(&[
            "create",
            "--dry-run=server",
            "--validate=strict",
            "-f",
            &file.path().display().to_string(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{sets:?} refused:\n{stderr}");
        let created = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            created.lines().count(),
            docs(&rendered).len(),
            "{sets:?}: {created}"
        );
        if sets.contains(&"hostNetwork=true") {
            // The price of hostNetwork, said in values.yaml: the pods are outside "restricted".
            assert!(
                stderr.contains("would violate PodSecurity") && stderr.contains("hostNetwork"),
                "{stderr}"
            );
        } else {
            assert!(!stderr.contains("PodSecurity"), "{sets:?}:\n{stderr}");
        }
    }
}

/// A release that is uninstalled when the test ends, passed or not.
struct Release<'a> {
    helm: &'a Helm,
    name: &'static str,
    namespace: String,
    installed: bool,
}

impl Release<'_> {
    fn uninstall(&mut self) -> String {
        self.installed = false;
        self.helm.ok(&[
            "uninstall",
            self.name,
            "--namespace",
            &self.namespace,
            "--timeout",
            "60s",
        ])
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if self.installed {
            let _ = self
                .helm
                .run(&["uninstall", self.name, "--namespace", &self.namespace]);
        }
    }
}

fn install<'a>(helm: &'a Helm, namespace: &str, sets: &[&str]) -> Release<'a> {
    let mut args = vec![
        "install",
        "nb",
        CHART,
        "--namespace",
        namespace,
        "--timeout",
        "60s",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = helm.ok(&args);
    assert!(out.contains("STATUS: deployed"), "{out}");
    Release {
        helm,
        name: "nb",
        namespace: namespace.to_owned(),
        installed: true,
    }
}

/// `kubectl get` name of an object: kind.group, so that same-named kinds never mix.
fn resource_of(obj: &Value) -> String {
    let kind = obj["kind"].as_str().unwrap().to_lowercase();
    match obj["apiVersion"].as_str().unwrap().split_once('/') {
        Some((group, _)) => format!("{kind}.{group}"),
        None => kind,
    }
}

/// A kubeconfig for the test API server that authenticates with `token` only.
fn token_kubeconfig(api: &TestApi, token: &str, dir: &Path) -> PathBuf {
    let server = api.kubectl_ok(&[
        "config",
        "view",
        "--raw",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    let ca = api.kubectl_ok(&[
        "config",
        "view",
        "--raw",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ]);
    let path = dir.join("serviceaccount.kubeconfig");
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "sa"}}],
        "current-context": "test",
    });
    std::fs::write(&path, config.to_string()).expect("kubeconfig");
    path
}

/// `kubectl auth can-i` as the chart's ServiceAccount.
fn can(api: &TestApi, sa_ns: &str, verb: &str, resource: &str, extra: &[&str]) -> bool {
    let user = format!("--as=system:serviceaccount:{sa_ns}:nb-nodeboot");
    let mut args = vec!["auth", "can-i", verb, resource, &user];
    args.extend(extra);
    let out = api.kubectl(&args);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        answer == "yes" || answer == "no",
        "can-i {args:?}: {answer}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    answer == "yes"
}

#[tokio::test(flavor = "multi_thread")]
async fn chart_installs_its_rbac_is_enough_and_it_upgrades_and_uninstalls() {
    let api = apiserver::shared();
    let ns = api.fresh_namespace("helm");
    let elsewhere = api.fresh_namespace("helm-elsewhere");
    let helm = Helm::on(api);
    // The operator runs outside the cluster here, where the API server cannot call its
    // webhook through the Service: Ignore lets the examples in (tests/webhook.rs covers Fail).
    let mut release = install(
        &helm,
        &ns,
        &[
            "leaderElection.leaseDuration=6",
            "webhook.failurePolicy=Ignore",
        ],
    );

    // Every object of the release is in the cluster.
    let manifest = docs(&helm.ok(&["get", "manifest", "nb", "--namespace", &ns]));
    assert_eq!(manifest.len(), 16, "{manifest:#?}");
    for obj in &manifest {
        let name = obj["metadata"]["name"].as_str().unwrap();
        api.kubectl_ok(&["get", &resource_of(obj), name, "-n", &ns]);
    }

    // The operator, out of cluster, with the ServiceAccount's token and the Deployment's flags
    // (the listen addresses replaced by loopback ports).
    api.apply_ok(&ns, &examples_in(&ns));
    let token = api.kubectl_ok(&["create", "token", "nb-nodeboot", "-n", &ns, "--duration=1h"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = token_kubeconfig(api, token.trim(), dir.path());
    let deploy = api.get_json(&ns, "deployment/nb-nodeboot");
    let op_args: Vec<String> = args(&deploy)
        .into_iter()
        .filter(|a| !a.starts_with("--listen=") && !a.starts_with("--admin-listen="))
        .map(|a| a.replace("$(POD_IP)", "127.0.0.1"))
        .map(|a| match a.starts_with("--webhook-listen=") {
            true => format!("--webhook-listen=127.0.0.1:{}", support::free_port()),
            false => a,
        })
        .collect();
    let pod = "nb-nodeboot-7d4b9c-test0";
    let kubeconfig_str = kubeconfig.display().to_string();
    let op = Nodeboot::spawn(
        &op_args,
        &[
            ("KUBECONFIG", &kubeconfig_str),
            ("POD_NAME", pod),
            ("POD_NAMESPACE", &ns),
        ],
        // Outside `dir`, so it outlives a failed test.
        &std::env::temp_dir().join(format!("nodeboot-helm-operator-{ns}.log")),
    )
    .await;

    let watching = format!(
        "status of both NodeGroups (operator log: {})",
        op.log.display()
    );
    eventually(&watching, Duration::from_secs(60), || {
        let g = api.get_json(&ns, "nodegroup/cabinet-x1000");
        let g2 = api.get_json(&ns, "nodegroup/cabinet-x1001");
        (g["status"]["assignedCount"] == 4 && g2["status"]["assignedCount"] == 2).then_some(())
    })
    .await;
    let bc = api.get_json(&ns, "bootconfig/gpu-rocky9");
    assert_eq!(bc["status"]["matchedNodes"], 2, "{bc:#}");
    let holder = api.kubectl_ok(&[
        "get",
        "lease",
        "nb-nodeboot-leader",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, pod);
    let (status, _, body) = op.get("/boot/v1/bootscript?mac=02:00:00:00:11:00").await;
    assert_eq!(status, 200);
    assert!(body.contains("rocky9-gpu/vmlinuz"), "{body}");

    // A tie makes the operator publish Warning events.
    api.apply_ok(&ns, "apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {name: rival}\nspec:\n  nodeSelector: {matchLabels: {cabinet: x1000}}\n  kernel: http://images.example/rival/vmlinuz\n");
    let watching = format!(
        "Conflict events from nodeboot (operator log: {})",
        op.log.display()
    );
    eventually(&watching, Duration::from_secs(30), || {
        let evs = api.get_json(&ns, "events.events.k8s.io");
        evs["items"]
            .as_array()?
            .iter()
            .any(|e| {
                e["reason"] == "Conflict"
                    && e["reportingController"] == "nodeboot"
                    && e["regarding"]["name"] == "cabinet-x1000"
            })
            .then_some(())
    })
    .await;

    // The leader issued the webhook's certificate into the chart's Secret and its CA into the
    // chart's webhook configuration, with the account's rights.
    let webhook_configuration = format!("{ns}-nb-nodeboot");
    eventually(
        "the webhook's CA in its configuration",
        Duration::from_secs(30),
        || {
            let ca = api.get_json(&ns, "secret/nb-nodeboot-webhook-cert")["data"]["ca.crt"].clone();
            let config: Value = serde_json::from_str(&api.kubectl_ok(&[
                "get",
                "validatingwebhookconfiguration",
                &webhook_configuration,
                "-o",
                "json",
            ]))
            .ok()?;
            (ca.is_string() && config["webhooks"][0]["clientConfig"]["caBundle"] == ca)
                .then_some(())
        },
    )
    .await;

    // `nodeboot explain` reads the cluster with the same account.
    let explain = Command::new(env!("CARGO_BIN_EXE_nodeboot"))
        .args(["explain", "--namespace", &ns, "x1001c0s0b0n0"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("explain runs");
    assert!(stdout_of("nodeboot explain", &explain).contains("gpu-rocky9"));

    // Not one refusal on the way.
    let logs = op.logs();
    for refusal in ["Forbidden", "forbidden", "403"] {
        assert!(
            !logs.contains(refusal),
            "{refusal} in the operator log:\n{logs}"
        );
    }
    drop(op);

    // What the account may do, and what it may not.
    let webhook_config_resource = format!(
        "validatingwebhookconfigurations.admissionregistration.k8s.io/{webhook_configuration}"
    );
    let sa = ns.as_str();
    let status = ["--subresource=status"];
    let here = ["-n", sa];
    let there = ["-n", elsewhere.as_str()];
    for (verb, resource, extra) in [
        ("list", "nodegroups.nodeboot.io", &here[..]),
        ("watch", "bootconfigs.nodeboot.io", &here[..]),
        ("list", "secrets", &here[..]),
        ("watch", "secrets", &here[..]),
        ("create", "events.events.k8s.io", &here[..]),
        ("patch", "events.events.k8s.io", &here[..]),
        // Boot records (ConfigMaps of its own, found by label).
        ("list", "configmaps", &here[..]),
        ("watch", "configmaps", &here[..]),
        ("create", "configmaps", &here[..]),
        ("patch", "configmaps", &here[..]),
        ("delete", "configmaps", &here[..]),
        ("create", "leases.coordination.k8s.io", &here[..]),
        (
            "get",
            "leases.coordination.k8s.io/nb-nodeboot-leader",
            &here[..],
        ),
        (
            "patch",
            "leases.coordination.k8s.io/nb-nodeboot-leader",
            &here[..],
        ),
        ("get", "secrets/nb-nodeboot-webhook-cert", &here[..]),
        ("patch", "secrets/nb-nodeboot-webhook-cert", &here[..]),
        ("get", &webhook_config_resource, &[][..]),
        ("patch", &webhook_config_resource, &[][..]),
    ] {
        assert!(
            can(api, sa, verb, resource, extra),
            "cannot {verb} {resource}"
        );
    }
    for resource in ["nodegroups.nodeboot.io", "bootconfigs.nodeboot.io"] {
        let args = [&here[..], &status[..]].concat();
        assert!(
            can(api, sa, "patch", resource, &args),
            "cannot patch {resource}/status"
        );
        assert!(
            !can(api, sa, "update", resource, &args),
            "may update {resource}/status"
        );
    }
    for (verb, resource, extra) in [
        // Secrets: nowhere but in the watched namespace, and never written.
        ("get", "secrets", &there[..]),
        ("list", "secrets", &there[..]),
        ("list", "secrets", &["--all-namespaces"][..]),
        ("create", "secrets", &here[..]),
        ("update", "secrets", &here[..]),
        ("delete", "secrets", &here[..]),
        // Specs are the users': no writes, no deletes.
        ("delete", "nodegroups.nodeboot.io", &here[..]),
        ("deletecollection", "nodegroups.nodeboot.io", &here[..]),
        ("create", "nodegroups.nodeboot.io", &here[..]),
        ("patch", "nodegroups.nodeboot.io", &here[..]),
        ("update", "bootconfigs.nodeboot.io", &here[..]),
        ("delete", "bootconfigs.nodeboot.io", &here[..]),
        ("list", "nodegroups.nodeboot.io", &there[..]),
        (
            "patch",
            "nodegroups.nodeboot.io",
            &[&there[..], &status[..]].concat()[..],
        ),
        // Unrelated resources.
        ("get", "pods", &here[..]),
        ("create", "pods", &here[..]),
        ("list", "deployments.apps", &here[..]),
        ("get", "configmaps", &here[..]),
        ("list", "configmaps", &there[..]),
        ("create", "events", &here[..]),
        ("create", "events.events.k8s.io", &there[..]),
        (
            "patch",
            "leases.coordination.k8s.io/someone-elses",
            &here[..],
        ),
        (
            "delete",
            "leases.coordination.k8s.io/nb-nodeboot-leader",
            &here[..],
        ),
        // The webhook's rights reach its own Secret and configuration, nothing else.
        ("get", "secrets/someone-elses", &here[..]),
        ("patch", "secrets/someone-elses", &here[..]),
        ("delete", "secrets/nb-nodeboot-webhook-cert", &here[..]),
        (
            "list",
            "validatingwebhookconfigurations.admissionregistration.k8s.io",
            &[][..],
        ),
        (
            "create",
            "validatingwebhookconfigurations.admissionregistration.k8s.io",
            &[][..],
        ),
        (
            "patch",
            "validatingwebhookconfigurations.admissionregistration.k8s.io/someone-elses",
            &[][..],
        ),
        (
            "patch",
            "mutatingwebhookconfigurations.admissionregistration.k8s.io",
            &[][..],
        ),
        ("delete", &webhook_config_resource, &[][..]),
        ("create", "roles.rbac.authorization.k8s.io", &here[..]),
        (
            "create",
            "rolebindings.rbac.authorization.k8s.io",
            &here[..],
        ),
        ("list", "nodes", &[][..]),
        (
            "get",
            "customresourcedefinitions.apiextensions.k8s.io",
            &[][..],
        ),
        ("*", "*", &here[..]),
    ] {
        assert!(
            !can(api, sa, verb, resource, extra),
            "may {verb} {resource} {extra:?}"
        );
    }

    // An upgrade with changed values reaches the Deployment.
    let out = helm.ok(&[
        "upgrade",
        "nb",
        CHART,
        "--namespace",
        &ns,
        "--reuse-values",
        "--set",
        "replicaCount=3",
        "--set",
        "boot.retryMaxDelay=120",
        "--timeout",
        "60s",
    ]);
    assert!(out.contains("REVISION: 2"), "{out}");
    let deploy = api.get_json(&ns, "deployment/nb-nodeboot");
    assert_eq!(deploy["spec"]["replicas"], 3);
    let a = args(&deploy);
    assert!(a.contains(&"--retry-max-delay=120".to_owned()), "{a:?}");
    // --reuse-values kept the value given at install.
    assert!(a.contains(&"--lease-duration=6".to_owned()), "{a:?}");

    // Uninstall removes the release's objects and leaves the CRDs and the users' resources.
    release.uninstall();
    for obj in &manifest {
        let name = obj["metadata"]["name"].as_str().unwrap();
        let out = api.kubectl(&["get", &resource_of(obj), name, "-n", &ns]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("NotFound"),
            "{} {name} left behind",
            resource_of(obj)
        );
    }
    for crd in ["nodegroups.nodeboot.io", "bootconfigs.nodeboot.io"] {
        api.kubectl_ok(&["get", "crd", crd]);
    }
    let groups = api.get_json(&ns, "nodegroups");
    assert_eq!(groups["items"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_install_alone_creates_the_crds_and_uninstall_keeps_them() {
    // A cluster of this test's own, without nodeboot's CRDs, as a new cluster would be.
    let api = apiserver::dedicated_without_crds("helm-crds");
    for crd in ["nodegroups.nodeboot.io", "bootconfigs.nodeboot.io"] {
        assert!(
            !api.kubectl(&["get", "crd", crd]).status.success(),
            "{crd} exists already"
        );
    }
    let ns = api.fresh_namespace("crds");
    let helm = Helm::on(&api);
    // No pods run here to answer the webhook: Ignore lets the examples in.
    let mut release = install(&helm, &ns, &["webhook.failurePolicy=Ignore"]);
    api.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/nodegroups.nodeboot.io",
        "crd/bootconfigs.nodeboot.io",
    ]);
    // The CEL rules of the chart's CRDs are in force.
    let refused = api.apply(&ns, "apiVersion: nodeboot.io/v1alpha1\nkind: NodeGroup\nmetadata: {name: bad}\nspec:\n  nodes:\n  - {name: n1, macs: [\"02:00:00:00:00:01\"], ip: 10.0.0.300}\n");
    assert!(!refused.status.success());
    api.apply_ok(&ns, &examples_in(&ns));

    let out = release.uninstall();
    assert!(out.contains("uninstalled"), "{out}");
    for crd in ["nodegroups.nodeboot.io", "bootconfigs.nodeboot.io"] {
        api.kubectl_ok(&["get", "crd", crd]);
    }
    let groups = api.get_json(&ns, "nodegroups");
    assert_eq!(groups["items"].as_array().map(Vec::len), Some(2));
    // Deleting them is a separate, deliberate step (docs/install.md).
    api.kubectl_ok(&[
        "delete",
        "-f",
        &format!("{CHART}/crds/"),
        "--wait=true",
        "--timeout=60s",
    ]);
    assert!(
        !api.kubectl(&["get", "crd", "nodegroups.nodeboot.io"])
            .status
            .success()
    );
}
