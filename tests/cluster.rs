//! nodeboot on a real single-node cluster (hack/cluster.sh: kubelet, containerd, kube-proxy,
//! controller-manager, scheduler): the image built from the project's Dockerfile, the chart's
//! pods Ready by their own probes, boot scripts and cloud-init data through the boot Service's
//! ClusterIP, a QEMU VM booting through that ClusterIP, the admission webhook through its
//! Service, a leader hand-over, a rolling upgrade to a new image with a client asking all the
//! while, and an uninstall that leaves CRDs and inventory.
//!
//! One test, in order: the cluster and the image cost minutes, and each step needs the last.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::REPO;
use support::apiserver::examples_in;
use support::process::{OnExit, output_with_stdin, stdout_of};
use support::qemu::{Boot, Images, Vm, block, image_server, line, run_ok};
use support::wait::eventually;

const NS: &str = "nodeboot-e2e";
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/nodeboot");
/// The boot Service's address, fixed at install (`boot.service.clusterIP`) so that
/// `boot.advertiseURL` can name it in the same install: inside hack/cluster.sh's service range
/// (10.231.0.0/16), in its lowest 256 addresses, which Kubernetes hands out last.
const BOOT_IP: &str = "10.231.0.80";
/// The MAC of the QEMU VM, in a NodeGroup of its own.
const VM_MAC: &str = "52:54:00:00:30:00";
const VM_NODE: &str = "x3000c0s0b0n0";
/// A boot takes ~10 s under emulation on an idle core; leave room for a loaded machine.
const VM_TIMEOUT_SECS: u64 = 240;

struct Cluster {
    kubeconfig: String,
    kubectl: PathBuf,
    containerd: String,
    helm: PathBuf,
    _down: Option<OnExit>,
}

impl Cluster {
    /// Starts the cluster (or joins the one running) and stops it when the test ends.
    fn up() -> Cluster {
        let script = format!("{REPO}/hack/cluster.sh");
        let running = Command::new(&script)
            .arg("status")
            .status()
            .is_ok_and(|s| s.success());
        // Armed before `up`, so that a start that fails half-way is undone too.
        let down = (!running).then(|| OnExit::run(&script, &["down"], &[]));
        let out = Command::new(&script)
            .arg("up")
            .stderr(Stdio::inherit())
            .output()
            .expect("hack/cluster.sh runs");
        let env = stdout_of("hack/cluster.sh up", &out);
        let value = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .map(|v| v.trim_matches('\'').to_owned())
                .unwrap_or_else(|| panic!("{name} missing from:\n{env}"))
        };
        let helm = Command::new(format!("{REPO}/hack/helm.sh"))
            .output()
            .expect("hack/helm.sh runs");
        let helm = stdout_of("hack/helm.sh", &helm)
            .lines()
            .last()
            .expect("helm path")
            .trim()
            .into();
        Cluster {
            kubeconfig: value("KUBECONFIG"),
            kubectl: value("NODEBOOT_CLUSTER_KUBECTL").into(),
            containerd: value("NODEBOOT_CLUSTER_CONTAINERD"),
            helm,
            _down: down,
        }
    }

    /// Builds localhost/nodeboot:TAG from the Dockerfile and hands it to containerd; returns
    /// the image's ID.
    fn image(&self, tag: &str) -> String {
        self.images_script(&["nodeboot", &self.containerd, tag])
    }

    /// localhost/nodeboot:TO, a distinct image (another ID) made from localhost/nodeboot:FROM;
    /// returns its ID.
    fn image_variant(&self, from: &str, to: &str) -> String {
        self.images_script(&["variant", &self.containerd, from, to])
    }

    fn images_script(&self, args: &[&str]) -> String {
        let out = Command::new(format!("{REPO}/hack/cluster-images.sh"))
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .expect("hack/cluster-images.sh runs");
        let id = stdout_of(format_args!("hack/cluster-images.sh {args:?}"), &out)
            .trim()
            .to_owned();
        assert!(id.starts_with("sha256:"), "not an image ID: {id:?}");
        id
    }

    /// The image IDs the running (not terminating) pods' containers run, as the kubelet says.
    fn pod_image_ids(&self) -> Vec<String> {
        let pods = self.json("pods");
        pods["items"]
            .as_array()
            .expect("pods")
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .map(|p| {
                p["status"]["containerStatuses"][0]["imageID"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        stdout_of(format_args!("kubectl {args:?}"), &self.kubectl(args))
    }

    fn json(&self, what: &str) -> Value {
        serde_json::from_str(&self.kubectl_ok(&["get", "-n", NS, what, "-o", "json"]))
            .expect("kubectl json")
    }

    fn apply(&self, yaml: &str) -> Output {
        output_with_stdin(
            Command::new(&self.kubectl)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(["apply", "-n", NS, "-f", "-"]),
            yaml,
        )
    }

    fn helm(&self, args: &[&str]) -> String {
        let out = Command::new(&self.helm)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("helm runs");
        stdout_of(format_args!("helm {args:?}"), &out)
    }

    fn lease_holder(&self) -> String {
        self.kubectl_ok(&[
            "get",
            "lease",
            "nb-nodeboot-leader",
            "-n",
            NS,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
    }
}

/// One request on a connection of its own, as firmware makes them.
async fn boot_script(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let r = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.text().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_runs_serves_through_its_services_rolls_and_uninstalls() {
    let cluster = Cluster::up();
    let v1 = cluster.image("v1");

    // helm install --wait: both replicas Ready by the chart's own probes.
    cluster.helm(&[
        "install",
        "nb",
        CHART,
        "--namespace",
        NS,
        "--create-namespace",
        "--set",
        "image.repository=localhost/nodeboot",
        "--set",
        "image.tag=v1",
        "--set",
        "image.pullPolicy=Never",
        // The host's requests reach the pods masqueraded: no node address to check against.
        "--set",
        "boot.cloudInitSourceCheck=false",
        // Nodes reach the boot Service at its ClusterIP (here: QEMU's user-mode network, which
        // connects from the host, where kube-proxy's rules apply): fixed, so that the scripts
        // can name it.
        "--set",
        &format!("boot.service.clusterIP={BOOT_IP}"),
        "--set",
        &format!("boot.advertiseURL=http://{BOOT_IP}:8080"),
        "--wait",
        "--timeout",
        "300s",
    ]);
    let deploy = cluster.json("deployment/nb-nodeboot");
    assert_eq!(deploy["status"]["readyReplicas"], 2, "{deploy:#}");
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["image"], "localhost/nodeboot:v1");
    assert_eq!(cluster.pod_image_ids(), [v1.as_str(); 2]);

    // The inventory, through the webhook served by the pods; a broken BootConfig refused.
    eventually(
        "the webhook admits the examples",
        Duration::from_secs(60),
        || {
            cluster
                .apply(&examples_in(NS))
                .status
                .success()
                .then_some(())
        },
    )
    .await;
    let refused = cluster.apply(
        "apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {name: broken}\nspec:\n  kernel: http://images.example/vmlinuz\n  params: \"{{ node.name\"\n",
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("denied the request"),
        "{stderr}"
    );

    // Scripts and cloud-init through the boot Service's ClusterIP (kube-proxy's rules).
    let ip = cluster.kubectl_ok(&[
        "get",
        "service",
        "nb-nodeboot-boot",
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(ip, BOOT_IP);
    let base = format!("http://{ip}:8080");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let script_url = format!("{base}/boot/v1/bootscript?mac=02:00:00:00:10:00");
    let mut script = String::new();
    for _ in 0..150 {
        match boot_script(&client, &script_url).await {
            Ok(body) if body.contains("vmlinuz") => {
                script = body;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert!(script.contains("rocky9"), "no boot script: {script}");
    let meta = boot_script(
        &client,
        &format!("{base}/cloud-init/x1000c0s0b0n0/meta-data"),
    )
    .await
    .expect("meta-data");
    assert!(meta.contains("instance-id"), "{meta}");
    let user = boot_script(
        &client,
        &format!("{base}/cloud-init/x1000c0s0b0n0/user-data"),
    )
    .await
    .expect("user-data");
    assert!(user.starts_with("#cloud-config"), "{user}");

    // A VM boots through the ClusterIP: iPXE chains /boot.ipxe, loads the kernel and initrd
    // the BootConfig names (the test's image server), and the initrd fetches its cloud-init
    // data from the seed URL on the kernel command line, through the Service again.
    let vm_images = vm_images();
    let images = &vm_images.server;
    let applied = cluster.apply(&vm_inventory(images));
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let vm_script_url = format!("{base}/boot/v1/bootscript?mac={VM_MAC}");
    let mut vm_script = String::new();
    for _ in 0..150 {
        match boot_script(&client, &vm_script_url).await {
            Ok(body) if body.contains(&images.url("vmlinuz")) => {
                vm_script = body;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert!(
        vm_script.contains(&images.url("initrd.img")),
        "the pods never served the VM's BootConfig: {vm_script}"
    );
    assert_vm_booted(&boot_vm().await.finish().await);
    drop(vm_images);

    // Deleting the leader's pod hands status writing to the other replica.
    let leader = eventually("a leader", Duration::from_secs(60), || {
        Some(cluster.lease_holder()).filter(|h| !h.is_empty())
    })
    .await;
    cluster.kubectl_ok(&["delete", "pod", &leader, "-n", NS, "--wait=false"]);
    let next = eventually("a new leader", Duration::from_secs(60), || {
        Some(cluster.lease_holder()).filter(|h| !h.is_empty() && *h != leader)
    })
    .await;
    cluster.kubectl_ok(&[
        "patch",
        "bootconfig/compute-rocky9",
        "-n",
        NS,
        "--type=merge",
        "-p",
        r#"{"spec":{"priority":11}}"#,
    ]);
    eventually(
        format!("status of the changed BootConfig written by {next}"),
        Duration::from_secs(60),
        || {
            let bc = cluster.json("bootconfig/compute-rocky9");
            let generation = &bc["metadata"]["generation"];
            bc["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["observedGeneration"] == *generation)
                .then_some(())
        },
    )
    .await;
    cluster.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/nb-nodeboot",
        "-n",
        NS,
        "--timeout=120s",
    ]);

    // helm upgrade to a new image while a client asks for scripts all the time.
    let v2 = cluster.image_variant("v1", "v2");
    assert_ne!(v1, v2, "v2 is the same image as v1");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let asking = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let (client, url) = (client.clone(), script_url.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match boot_script(&client, &url).await {
                    Ok(body) if body.contains("vmlinuz") => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        failures.push(format!("{other:?}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            failures
        })
    };
    let upgrade = {
        let args: Vec<String> = [
            "upgrade",
            "nb",
            CHART,
            "--namespace",
            NS,
            "--reuse-values",
            "--set",
            "image.tag=v2",
            "--wait",
            "--timeout",
            "300s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (helm, kubeconfig) = (cluster.helm.clone(), cluster.kubeconfig.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(helm)
                .args(args)
                .env("KUBECONFIG", kubeconfig)
                .output()
                .expect("helm runs")
        })
        .await
        .expect("helm upgrade")
    };
    stdout_of("helm upgrade", &upgrade);
    cluster.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/nb-nodeboot",
        "-n",
        NS,
        "--timeout=120s",
    ]);
    stop.store(true, Ordering::Relaxed);
    let failures = asking.await.expect("client task");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("during the rollout: {ok} answers, {failed} failed");
    assert_eq!(failed, 0, "failed answers during the rollout: {failures:?}");
    assert!(ok > 50, "too few answers to tell: {ok}");
    let pods = cluster.json("pods");
    let images: Vec<&str> = pods["items"]
        .as_array()
        .expect("pods")
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["spec"]["containers"][0]["image"].as_str())
        .collect();
    assert_eq!(images, ["localhost/nodeboot:v2"; 2], "{pods:#}");
    assert_eq!(cluster.pod_image_ids(), [v2.as_str(); 2], "{pods:#}");

    // helm uninstall: the release goes, CRDs and the inventory stay.
    cluster.helm(&["uninstall", "nb", "--namespace", NS, "--wait"]);
    for crd in ["nodegroups.nodeboot.io", "bootconfigs.nodeboot.io"] {
        cluster.kubectl_ok(&["get", "crd", crd]);
    }
    // The examples' and the VM's.
    assert_eq!(
        cluster.json("nodegroups")["items"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(
        cluster.json("bootconfigs")["items"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    let out = cluster.kubectl(&[
        "get",
        "validatingwebhookconfiguration",
        &format!("{NS}-nb-nodeboot"),
    ]);
    assert!(
        !out.status.success(),
        "the webhook configuration outlived the release"
    );
    cluster.kubectl_ok(&["delete", "namespace", NS, "--wait=false"]);
}

/// The test kernel and initrd (tests/boot/build-assets.sh) on an image server on the host,
/// which the VM reaches as 10.0.2.2. Dropped in field order: the server stops (its stdin
/// closes), then the directory goes.
struct VmImages {
    server: Images,
    _dir: tempfile::TempDir,
}

fn vm_images() -> VmImages {
    let dir = tempfile::Builder::new()
        .prefix("nodeboot-cluster-images-")
        .tempdir()
        .expect("temporary directory");
    run_ok(Command::new(format!("{REPO}/tests/boot/build-assets.sh")).arg(dir.path()));
    VmImages {
        server: image_server(dir.path()),
        _dir: dir,
    }
}

/// A NodeGroup with the VM, and the BootConfig it boots: the test images and cloud-init data.
fn vm_inventory(images: &Images) -> String {
    format!(
        r#"apiVersion: nodeboot.io/v1alpha1
kind: NodeGroup
metadata: {{name: vms}}
spec:
  labels: {{role: vm}}
  metaData: {{rack: vm-rack}}
  nodes:
  - {{name: {VM_NODE}, macs: ["{VM_MAC}"], nid: 3000, hostname: nid003000}}
---
apiVersion: nodeboot.io/v1alpha1
kind: BootConfig
metadata: {{name: vm}}
spec:
  nodeSelector: {{matchLabels: {{role: vm}}}}
  kernel: {kernel}
  initrd: {initrd}
  params: "console=ttyS0 image=vm panic=-1"
  cloudInit:
    metaData: {{image: vm}}
    userData: |
      #cloud-config
      hostname: {{{{ node.hostname }}}}
"#,
        kernel = images.url("vmlinuz"),
        initrd = images.url("initrd.img"),
    )
}

/// A legacy-BIOS VM with Debian's iPXE ROM whose DHCP boot file is the boot Service's
/// `/boot.ipxe`.
async fn boot_vm() -> Vm {
    let boot = Boot::bios_ipxe(format!("http://{BOOT_IP}:8080/boot.ipxe"), VM_TIMEOUT_SECS);
    Vm::start(VM_MAC, "cluster", &boot).await
}

/// What the test initrd printed: the kernel booted with the BootConfig's and nodeboot's
/// parameters, and the cloud-init documents came from the seed URL behind the ClusterIP.
fn assert_vm_booted(console: &str) {
    // iPXE's own lines: the boot file and the script it chains, both through the ClusterIP.
    for fetched in ["boot.ipxe", "boot/v1/bootscript"] {
        let want = format!("http://{BOOT_IP}:8080/{fetched}... ok");
        assert!(console.contains(&want), "no {want:?} in:\n{console}");
    }
    let seed = format!("http://{BOOT_IP}:8080/cloud-init/{VM_NODE}/");
    let cmdline = block(console, "CMDLINE");
    for want in [
        "image=vm".to_owned(),
        format!("BOOTIF=01-{}", VM_MAC.replace(':', "-")),
        format!("xname={VM_NODE}"),
        "nid=3000".to_owned(),
        format!("ds=nocloud-net;s={seed}"),
    ] {
        assert!(cmdline.contains(&want), "{want} missing from {cmdline}");
    }
    assert_eq!(line(console, "SEED"), seed);
    let meta = block(console, "META-DATA");
    for want in [
        &format!("instance-id: {VM_NODE}"),
        "hostname: nid003000",
        "rack: vm-rack",
        "image: vm",
    ] {
        assert!(
            meta.contains(want),
            "{want} missing from meta-data:\n{meta}"
        );
    }
    let user = block(console, "USER-DATA");
    assert!(
        user.contains("#cloud-config\nhostname: nid003000"),
        "{user}"
    );
}
