//! Real network boots: QEMU virtual machines with Debian's iPXE ROM ask nodeboot for their
//! boot script, load the kernel and initrd it names, and fetch their cloud-init data. The
//! scripts under tests/boot/ install QEMU, build the kernel and initrd, and run one VM.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::qemu::{Boot, Images, Vm, block, image_server, run_ok};
use support::{Nodeboot, REPO, manifest_dir, rewrite};

/// A boot takes ~10 s under emulation on an idle core; leave room for a loaded machine.
const BOOT_TIMEOUT_SECS: u64 = 240;

/// The kernel and test initrd under three image names (the same files), so BootConfigs can
/// point at different images, served by tests/boot/httpd.py.
fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("nodeboot-boot-images-{}", std::process::id()));
        run_ok(Command::new(format!("{REPO}/tests/boot/build-assets.sh")).arg(&dir));
        for image in ["compute", "gpu", "discovery"] {
            std::fs::create_dir_all(dir.join(image)).unwrap();
            for f in ["vmlinuz", "initrd.img"] {
                let _ = std::fs::hard_link(dir.join(f), dir.join(image).join(f));
            }
        }
        image_server(&dir)
    })
}

/// A legacy-BIOS VM with Debian's iPXE ROM, chaining from nodeboot's `/boot.ipxe`.
async fn boot_vm(mac: &str, nodeboot_port: u16, name: &str) -> Vm {
    let boot = Boot::bios_ipxe(
        format!("http://10.0.2.2:{nodeboot_port}/boot.ipxe"),
        BOOT_TIMEOUT_SECS,
    );
    Vm::start(mac, name, &boot).await
}

fn site(images_port: u16, extra_nodes: &str, discovery: bool) -> Vec<(String, String)> {
    let img = |name: &str| format!("http://10.0.2.2:{images_port}/{name}");
    let group = |name: &str, labels: &str, nodes: &str| {
        format!(
            "apiVersion: nodeboot.io/v1alpha1\nkind: NodeGroup\nmetadata: {{name: {name}, namespace: hpc}}\nspec:\n  labels: {labels}\n  metaData: {{syslog_aggregator: 10.1.0.5}}\n  nodes:\n{nodes}"
        )
    };
    let config = |name: &str, priority: i32, selector: &str, kernel: &str| {
        format!(
            "apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {{name: {name}, namespace: hpc}}\nspec:\n  nodeSelector: {selector}\n  priority: {priority}\n  kernel: {kernel}\n  initrd: {}\n  params: \"console=ttyS0 image={name} panic=-1\"\n  cloudInit:\n    metaData: {{image: {name}}}\n    userData: |\n      #cloud-config\n      hostname: {{{{ node.hostname }}}}\n    vendorData: |\n      #cloud-config\n      bootcmd: [[echo, {name}]]\n",
            img(&format!("{name}/initrd.img"))
        )
    };
    let mut files = vec![
        (
            "compute.yaml".to_owned(),
            group(
                "cabinet-x1000",
                "{role: compute}",
                &format!(
                    "  - {{name: x1000c0s0b0n0, macs: [\"52:54:00:00:10:00\"], nid: 1, hostname: nid000001}}\n{extra_nodes}"
                ),
            ),
        ),
        (
            "gpu.yaml".to_owned(),
            group(
                "cabinet-x1001",
                "{role: compute, gpu: a100}",
                "  - {name: x1001c0s0b0n0, macs: [\"52:54:00:00:11:00\"], nid: 101, hostname: nid000101}\n",
            ),
        ),
        (
            "bc-compute.yaml".to_owned(),
            config(
                "compute",
                0,
                "{matchLabels: {role: compute}}",
                &img("compute/vmlinuz"),
            ),
        ),
        (
            "bc-gpu.yaml".to_owned(),
            config("gpu", 10, "{matchLabels: {gpu: a100}}", &img("gpu/vmlinuz")),
        ),
    ];
    if discovery {
        files.push((
            "bc-discovery.yaml".to_owned(),
            config(
                "discovery",
                0,
                "{matchLabels: {nodeboot.io/known: \"false\"}}",
                &img("discovery/vmlinuz"),
            ),
        ));
    }
    files
}

fn write_site(dir: &Path, files: &[(String, String)]) {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

async fn serve(dir: &Path, extra: &[&str]) -> (Nodeboot, u16) {
    let port = support::free_port();
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--manifests".into(),
        dir.display().to_string(),
    ];
    args.extend(["--advertise-url".into(), format!("http://10.0.2.2:{port}")]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let nb = Nodeboot::spawn_on(&args, &[], &dir.with_extension("log"), port).await;
    (nb, port)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_in_different_groups_boot_their_own_images() {
    let started = Instant::now();
    let images = images();
    let dir = manifest_dir(&[]);
    write_site(dir.path(), &site(images.port, "", false));
    let (_nb, port) = serve(dir.path(), &[]).await;
    let compute = boot_vm("52:54:00:00:10:00", port, "compute").await;
    let gpu = boot_vm("52:54:00:00:11:00", port, "gpu").await;
    let (compute, gpu) = tokio::join!(compute.finish(), gpu.finish());

    for (console, xname, nid, image, hostname, mac) in [
        (
            &compute,
            "x1000c0s0b0n0",
            "1",
            "compute",
            "nid000001",
            "52-54-00-00-10-00",
        ),
        (
            &gpu,
            "x1001c0s0b0n0",
            "101",
            "gpu",
            "nid000101",
            "52-54-00-00-11-00",
        ),
    ] {
        let cmdline = block(console, "CMDLINE");
        for want in [
            format!("image={image}"),
            format!("BOOTIF=01-{mac}"),
            format!("xname={xname}"),
            format!("nid={nid}"),
            format!("ds=nocloud-net;s=http://10.0.2.2:{port}/cloud-init/{xname}/"),
        ] {
            assert!(
                cmdline.contains(&want),
                "{xname}: {want} missing from {cmdline}"
            );
        }
        let meta = block(console, "META-DATA");
        for want in [
            format!("instance-id: {xname}"),
            format!("hostname: {hostname}"),
            "syslog_aggregator: 10.1.0.5".to_owned(),
            format!("image: {image}"),
        ] {
            assert!(
                meta.contains(&want),
                "{xname}: {want} missing from meta-data:\n{meta}"
            );
        }
        let user = block(console, "USER-DATA");
        assert!(
            user.contains(&format!("#cloud-config\nhostname: {hostname}")),
            "{user}"
        );
        let vendor = block(console, "VENDOR-DATA");
        assert!(
            vendor.contains(&format!("bootcmd: [[echo, {image}]]")),
            "{vendor}"
        );
    }
    eprintln!("two VMs booted in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_node_boots_discovery_image() {
    let images = images();
    let dir = manifest_dir(&[]);
    write_site(dir.path(), &site(images.port, "", true));
    let (_nb, port) = serve(dir.path(), &[]).await;
    let console = boot_vm("52:54:00:00:99:01", port, "discovery")
        .await
        .finish()
        .await;
    let cmdline = block(&console, "CMDLINE");
    assert!(
        cmdline.contains("image=discovery") && cmdline.contains("BOOTIF=01-52-54-00-00-99-01"),
        "{cmdline}"
    );
    assert!(!cmdline.contains("xname="), "{cmdline}");
    let meta = block(&console, "META-DATA");
    // Digit-leading strings are quoted in meta-data so no YAML reader takes them for numbers.
    assert!(
        meta.contains("instance-id: \"52-54-00-00-99-01\""),
        "{meta}"
    );
}

/// Reads a counter from nodeboot's metrics.
async fn counter(nb: &Nodeboot, series: &str) -> u64 {
    let (_, _, metrics) = nb.admin_get("/metrics").await;
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_node_boots_when_added_even_after_dozens_of_rounds() {
    let images = images();
    let dir = manifest_dir(&[]);
    write_site(dir.path(), &site(images.port, "", false));
    let (nb, port) = serve(dir.path(), &["--retry-max-delay", "1"]).await;
    let vm = boot_vm("52:54:00:00:77:01", port, "late").await;
    let waits = "nodeboot_http_requests_total{endpoint=\"bootscript\",outcome=\"wait\"}";
    let start = Instant::now();
    let rounds = 40;
    while counter(&nb, waits).await < rounds {
        assert!(
            start.elapsed() < Duration::from_secs(BOOT_TIMEOUT_SECS),
            "only {} rounds:\n{}",
            counter(&nb, waits).await,
            vm.console()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("{rounds} waiting rounds in {:?}", start.elapsed());
    assert!(
        vm.console()
            .contains("nodeboot: this node is in no NodeGroup, retrying in 1s"),
        "{}",
        vm.console()
    );
    // The administrator adds it: it boots on its next round, without a restart of nodeboot.
    let added =
        "  - {name: x1000c0s9b0n0, macs: [\"52:54:00:00:77:01\"], nid: 77, hostname: nid000077}\n";
    rewrite(
        &dir.path().join("compute.yaml"),
        &site(images.port, added, false)[0].1,
    );
    let console = vm.finish().await;
    let cmdline = block(&console, "CMDLINE");
    assert!(
        cmdline.contains("xname=x1000c0s9b0n0") && cmdline.contains("image=compute"),
        "{cmdline}"
    );
    assert!(block(&console, "META-DATA").contains("instance-id: x1000c0s9b0n0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_kernel_url_reaches_the_retry_path() {
    let images = images();
    let dir = manifest_dir(&[]);
    let mut files = site(images.port, "", false);
    files[2].1 = files[2]
        .1
        .replace("compute/vmlinuz", "compute/no-such-kernel");
    write_site(dir.path(), &files);
    let (_nb, port) = serve(dir.path(), &["--retry-max-delay", "1"]).await;
    let vm = boot_vm("52:54:00:00:10:00", port, "badkernel").await;
    vm.wait_console(
        "nodeboot: boot failed, retrying in",
        1,
        Duration::from_secs(BOOT_TIMEOUT_SECS),
    )
    .await;
    // Fixing the BootConfig lets the same VM boot on its next round.
    rewrite(
        &dir.path().join("bc-compute.yaml"),
        &site(images.port, "", false)[2].1,
    );
    let console = vm.finish().await;
    assert!(block(&console, "CMDLINE").contains("image=compute"));
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_on_the_test_api_server_boots_a_node() {
    let api = support::apiserver::shared();
    let images = images();
    let ns = api.fresh_namespace("qemu");
    let yaml: String = site(images.port, "", false)
        .into_iter()
        .map(|(_, text)| text.replace("namespace: hpc", &format!("namespace: {ns}")) + "---\n")
        .collect();
    api.apply_ok(&ns, &yaml);
    let port = support::free_port();
    let args: Vec<String> = [
        "run",
        "--namespace",
        &ns,
        "--leader-election",
        "off",
        "--advertise-url",
        &format!("http://10.0.2.2:{port}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = std::env::temp_dir().join(format!("nodeboot-qemu-operator-{ns}.log"));
    let nb = Nodeboot::spawn_on(&args, &[("KUBECONFIG", &api.kubeconfig_str())], &log, port).await;
    nb.wait_for("/boot/v1/bootscript?mac=52:54:00:00:11:00", |b| {
        b.contains("gpu/vmlinuz")
    })
    .await;
    let console = boot_vm("52:54:00:00:11:00", port, "operator")
        .await
        .finish()
        .await;
    let cmdline = block(&console, "CMDLINE");
    assert!(
        cmdline.contains("image=gpu") && cmdline.contains("xname=x1001c0s0b0n0"),
        "{cmdline}"
    );
    assert!(block(&console, "META-DATA").contains("instance-id: x1001c0s0b0n0"));
}

/// The example compute BootConfig, its user-data configuring cloud-init's `phone_home` (the
/// snippet README.md documents).
fn phone_home_config(ns: &str, images_port: u16) -> String {
    let img = |f: &str| format!("http://10.0.2.2:{images_port}/compute/{f}");
    format!(
        "apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {{name: compute, namespace: {ns}}}\nspec:\n  nodeSelector: {{matchLabels: {{role: compute}}}}\n  kernel: {}\n  initrd: {}\n  params: \"console=ttyS0 image=compute panic=-1\"\n  cloudInit:\n    userData: |\n      #cloud-config\n      hostname: {{{{ node.hostname }}}}\n      phone_home:\n        url: {{{{ server.url }}}}/cloud-init/$INSTANCE_ID/phone-home\n        post: all\n        tries: 10\n",
        img("vmlinuz"),
        img("initrd.img")
    )
}

/// An unknown VM loops asking; it shows in `/discovered`; `nodeboot adopt` adds it; it boots
/// its real configuration on its next round, phones home, and counts as booted.
#[tokio::test(flavor = "multi_thread")]
async fn discovered_vm_is_adopted_boots_and_phones_home() {
    let api = support::apiserver::shared();
    let images = images();
    let ns = api.fresh_namespace("adopt");
    let group = site(images.port, "", false)[0]
        .1
        .replace("namespace: hpc", &format!("namespace: {ns}"));
    api.apply_ok(&ns, &group);
    api.apply_ok(&ns, &phone_home_config(&ns, images.port));
    let port = support::free_port();
    let args: Vec<String> = [
        "run",
        "--namespace",
        &ns,
        "--leader-election",
        "off",
        "--tracking-interval",
        "1",
        "--retry-max-delay",
        "2",
        "--advertise-url",
        &format!("http://10.0.2.2:{port}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = std::env::temp_dir().join(format!("nodeboot-qemu-adopt-{ns}.log"));
    let nb = Nodeboot::spawn_on(&args, &[("KUBECONFIG", &api.kubeconfig_str())], &log, port).await;
    let mac = "52:54:00:00:88:01";
    let vm = boot_vm(mac, port, "adopt").await;

    // The stranger loops; it is listed as discovered, with the arch iPXE reported.
    let start = Instant::now();
    let listed = loop {
        let (_, _, body) = nb.admin_get("/discovered").await;
        let list: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        if let Some(entry) = list
            .as_array()
            .and_then(|l| l.iter().find(|e| e["mac"] == mac))
        {
            break entry.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(BOOT_TIMEOUT_SECS),
            "{mac} never discovered:\n{}",
            vm.console()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(listed["arch"], "x86_64", "{listed}");
    assert_eq!(listed["source"], "127.0.0.1", "{listed}");

    let out = Command::new(env!("CARGO_BIN_EXE_nodeboot"))
        .args(["adopt", mac, "--namespace", &ns, "--group", "cabinet-x1000"])
        .args(["--name", "x1000c0s9b0n0", "--nid", "90"])
        .env("KUBECONFIG", api.kubeconfig_str())
        .output()
        .expect("nodeboot adopt runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let waits = "nodeboot_http_requests_total{endpoint=\"bootscript\",outcome=\"wait\"}";
    let waited_before = counter(&nb, waits).await;
    let console = vm.finish().await;
    // Within one retry round: at most the one wait already under way when it was adopted.
    assert!(
        counter(&nb, waits).await <= waited_before + 1,
        "{} waits after adoption (from {waited_before})",
        counter(&nb, waits).await
    );
    let cmdline = block(&console, "CMDLINE");
    assert!(
        cmdline.contains("xname=x1000c0s9b0n0") && cmdline.contains("image=compute"),
        "{cmdline}"
    );
    assert!(
        console.contains("NODEBOOT-PHONE-HOME ok url=http://10.0.2.2:"),
        "{console}"
    );

    // The phone-home makes it booted: in the node's report and the BootConfig's rollout.
    let report = nb.node_report("x1000c0s9b0n0").await;
    assert_eq!(
        report["lastPhoneHome"]["generation"], report["lastBootScript"]["generation"],
        "{report}"
    );
    let rollout = support::wait::eventually(
        "compute rollout counts the VM as booted",
        Duration::from_secs(30),
        || {
            let bc = api.get_json(&ns, "bc/compute");
            (bc["status"]["rollout"]["booted"] == 1).then_some(bc["status"]["rollout"].clone())
        },
    )
    .await;
    assert_eq!(rollout["served"], 1, "{rollout}");
    let (_, _, discovered) = nb.admin_get("/discovered").await;
    assert!(!discovered.contains(mac), "{discovered}");
}
