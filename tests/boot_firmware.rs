//! Every firmware path a site has, booted for real in QEMU (TCG) through nodeboot: UEFI with
//! the iPXE option ROM, UEFI Secure Boot through Debian's signed shim and GRUB (with the
//! firmware and shim really refusing an unsigned kernel), GRUB's wait loop, and arm64 UEFI
//! GRUB. Each test checks the kernel command line the node received and its cloud-init
//! documents. tests/boot_qemu.rs covers legacy BIOS iPXE.
//!
//! CI time (2 cores, TCG, assets cached under ~/.cache/nodeboot): a UEFI x86_64 boot takes
//! 20-25 s, the Secure Boot test about 90 s (two refused rounds, then the boot), the GRUB
//! wait loop about 80 s, arm64 about 60 s; VMs run two at a time, so the file adds about
//! 3 minutes of wall time. The first run also downloads ~60 MB of Debian packages.

mod support;

use std::path::Path;
use std::time::Duration;

use support::qemu::{
    Boot, Vm, arm64_images, asset, block, firmware_assets, grub_tftp_root, images, line,
};
use support::{Nodeboot, manifest_dir, rewrite};

/// A TCG boot under OVMF takes 20-25 s on an idle core; leave room for a loaded machine.
const BOOT_TIMEOUT_SECS: u64 = 300;

fn group(nodes: &str) -> String {
    format!(
        "apiVersion: nodeboot.io/v1alpha1\nkind: NodeGroup\nmetadata: {{name: rack, namespace: hpc}}\nspec:\n  labels: {{role: compute}}\n  metaData: {{syslog_aggregator: 10.1.0.5}}\n  nodes:\n{nodes}"
    )
}

/// A BootConfig booting `kernel_dir/vmlinuz` and its initrd from the image server, for nodes
/// matching `selector`.
fn config(name: &str, selector: &str, kernel: &str, initrd: &str) -> String {
    format!(
        "apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {{name: {name}, namespace: hpc}}\nspec:\n  nodeSelector: {selector}\n  kernel: {kernel}\n  initrd: {initrd}\n  params: \"console=ttyS0 console=ttyAMA0 image={name} panic=-1\"\n  cloudInit:\n    metaData: {{image: {name}}}\n    userData: |\n      #cloud-config\n      hostname: {{{{ node.hostname }}}}\n    vendorData: |\n      #cloud-config\n      bootcmd: [[echo, {name}]]\n"
    )
}

async fn serve(dir: &Path, extra: &[&str]) -> (Nodeboot, u16) {
    let port = support::free_port();
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--manifests".into(),
        dir.display().to_string(),
        "--advertise-url".into(),
        format!("http://10.0.2.2:{port}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let nb = Nodeboot::spawn_on(&args, &[], &dir.with_extension("log"), port).await;
    (nb, port)
}

/// What every booted node must show: its command line from nodeboot (autoParams included)
/// and its three cloud-init documents.
fn assert_booted(console: &str, port: u16, xname: &str, nid: u32, hostname: &str, image: &str) {
    let cmdline = block(console, "CMDLINE");
    for want in [
        format!("image={image}"),
        format!("xname={xname}"),
        format!("nid={nid}"),
        format!("ds=nocloud-net;s=http://10.0.2.2:{port}/cloud-init/{xname}/"),
    ] {
        assert!(cmdline.contains(&want), "{want} missing from {cmdline}");
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
            "{want} missing from meta-data:\n{meta}"
        );
    }
    assert!(
        block(console, "USER-DATA").contains(&format!("#cloud-config\nhostname: {hostname}")),
        "{console}"
    );
    assert!(
        block(console, "VENDOR-DATA").contains(&format!("bootcmd: [[echo, {image}]]")),
        "{console}"
    );
}

/// Whether iPXE fetched `path` (its line: `URL... [progress] ok`).
fn ipxe_loaded(console: &str, path: &str) -> bool {
    console
        .lines()
        .any(|l| l.contains(&format!("{path}...")) && l.trim_end().ends_with(" ok"))
}

fn uefi_ipxe(port: u16) -> Boot {
    Boot {
        firmware: "ovmf",
        bootfile: format!("http://10.0.2.2:{port}/boot.ipxe"),
        tftp: None,
        no_rom: false,
        memory_mb: 512,
        timeout_secs: BOOT_TIMEOUT_SECS,
        extra: Vec::new(),
    }
}

/// OVMF with the iPXE EFI option ROM (Debian's efi-virtio.rom, QEMU's default for the NIC)
/// boots through `/boot.ipxe` and the bootscript; then the BootConfig changes and the next
/// boot of the same node loads the new kernel.
#[tokio::test(flavor = "multi_thread")]
async fn uefi_ipxe_boots_and_a_changed_bootconfig_boots_the_new_kernel() {
    let images = images();
    let dir = manifest_dir(&[]);
    let node =
        "  - {name: x3000c0s0b0n0, macs: [\"52:54:00:00:30:00\"], nid: 30, hostname: nid000030}\n";
    let selector = "{matchLabels: {role: compute}}";
    std::fs::write(dir.path().join("g.yaml"), group(node)).unwrap();
    let bc = dir.path().join("bc.yaml");
    let first = config(
        "first",
        selector,
        &images.url("signed/vmlinuz"),
        &images.url("signed/initrd.img"),
    );
    std::fs::write(&bc, &first).unwrap();
    let (nb, port) = serve(dir.path(), &[]).await;

    let console = Vm::start("52:54:00:00:30:00", "uefi-ipxe-1", &uefi_ipxe(port))
        .await
        .finish()
        .await;
    assert!(
        console.contains("Features:") && console.contains("EFI"),
        "{console}"
    );
    assert!(ipxe_loaded(&console, "/signed/vmlinuz"), "{console}");
    assert_booted(&console, port, "x3000c0s0b0n0", 30, "nid000030", "first");
    assert!(
        block(&console, "CMDLINE").contains("BOOTIF=01-52-54-00-00-30-00"),
        "{console}"
    );

    // Another kernel file (the same kernel with its signature removed: UEFI without Secure
    // Boot boots it) under another BootConfig name.
    rewrite(
        &bc,
        &config(
            "second",
            selector,
            &images.url("unsigned/vmlinuz"),
            &images.url("unsigned/initrd.img"),
        ),
    );
    // The folder is polled: boot again once nodeboot serves the change.
    nb.wait_for("/boot/v1/bootscript?mac=52:54:00:00:30:00", |s| {
        s.contains("/unsigned/vmlinuz")
    })
    .await;
    let console = Vm::start("52:54:00:00:30:00", "uefi-ipxe-2", &uefi_ipxe(port))
        .await
        .finish()
        .await;
    assert!(ipxe_loaded(&console, "/unsigned/vmlinuz"), "{console}");
    assert!(!console.contains("/signed/vmlinuz"), "{console}");
    assert_booted(&console, port, "x3000c0s0b0n0", 30, "nid000030", "second");
}

/// The Secure Boot netboot a site without its own signed iPXE has: OVMF with Microsoft's keys
/// enrolled loads Debian's signed shim over TFTP, shim loads Debian 13's signed grubnetx64,
/// whose `grub/grub.cfg` hands over to nodeboot's `/grub.cfg` over HTTP.
fn secure_grub(port: u16, tftp: &Path, firmware: &'static str) -> Boot {
    let fw = firmware_assets("amd64");
    grub_tftp_root(
        tftp,
        &[
            ("bootx64.efi", &asset(&fw, "SHIMX64")),
            ("grubx64.efi", &asset(&fw, "GRUBNETX64")),
        ],
        port,
    );
    Boot {
        firmware,
        bootfile: "bootx64.efi".into(),
        tftp: Some(tftp.to_owned()),
        no_rom: true,
        memory_mb: 512,
        timeout_secs: BOOT_TIMEOUT_SECS,
        extra: Vec::new(),
    }
}

/// Secure Boot is enforced for real: the kernel without its signature is refused by shim
/// (GRUB says "bad shim signature" and the loop asks again), and once the BootConfig names the
/// signed kernel the same VM boots it, and the kernel reports Secure Boot enabled.
#[tokio::test(flavor = "multi_thread")]
async fn secure_boot_through_shim_and_grub_refuses_unsigned_and_boots_signed() {
    let images = images();
    let dir = manifest_dir(&[]);
    let node =
        "  - {name: x3001c0s0b0n0, macs: [\"52:54:00:00:30:01\"], nid: 31, hostname: nid000031}\n";
    let selector = "{matchLabels: {role: compute}}";
    std::fs::write(dir.path().join("g.yaml"), group(node)).unwrap();
    let bc = dir.path().join("bc.yaml");
    std::fs::write(
        &bc,
        config(
            "unsigned",
            selector,
            &images.url("unsigned/vmlinuz"),
            &images.url("unsigned/initrd.img"),
        ),
    )
    .unwrap();
    let (_nb, port) = serve(dir.path(), &["--retry-max-delay", "1"]).await;
    let tftp = tempfile::tempdir().unwrap();
    let boot = secure_grub(port, tftp.path(), "ovmf-secure");
    let vm = Vm::start("52:54:00:00:30:01", "secure-boot", &boot).await;
    let refused = vm
        .wait_console(
            "bad shim signature",
            2,
            Duration::from_secs(BOOT_TIMEOUT_SECS),
        )
        .await;
    assert!(!refused.contains("NODEBOOT-INIT-START"), "{refused}");
    assert!(
        refused.contains("nodeboot: boot failed, asking again"),
        "{refused}"
    );

    rewrite(
        &bc,
        &config(
            "signed",
            selector,
            &images.url("signed/vmlinuz"),
            &images.url("signed/initrd.img"),
        ),
    );
    let console = vm.finish().await;
    assert_eq!(
        line(&console, "SECUREBOOT").trim_start_matches(|c| c != 's'),
        "secureboot: Secure boot enabled",
        "{console}"
    );
    let cmdline = block(&console, "CMDLINE");
    // GRUB names the kernel it loaded: the new BootConfig's, over GRUB's own HTTP.
    assert!(
        cmdline.starts_with(&format!(
            "BOOT_IMAGE=(http,10.0.2.2:{})/signed/vmlinuz ",
            images.port
        )),
        "{cmdline}"
    );
    assert!(cmdline.contains("BOOTIF=01-52-54-00-00-30-01"), "{cmdline}");
    assert_booted(&console, port, "x3001c0s0b0n0", 31, "nid000031", "signed");
}

/// A node nodeboot does not know loops through GRUB's `while`/`source` bootstrap for 40
/// rounds (nested `configfile` would die at 28), then is added and boots on its next round.
/// Secure Boot off here: the same shim and GRUB, under plain OVMF.
#[tokio::test(flavor = "multi_thread")]
async fn grub_wait_loop_survives_forty_rounds_then_boots_the_added_node() {
    let images = images();
    let dir = manifest_dir(&[]);
    let g = dir.path().join("g.yaml");
    std::fs::write(
        &g,
        group("  - {name: x3002c0s0b0n0, macs: [\"52:54:00:00:30:02\"], nid: 32}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bc.yaml"),
        config(
            "compute",
            "{matchLabels: {role: compute}}",
            &images.url("signed/vmlinuz"),
            &images.url("signed/initrd.img"),
        ),
    )
    .unwrap();
    let (nb, port) = serve(dir.path(), &["--retry-max-delay", "1"]).await;
    let tftp = tempfile::tempdir().unwrap();
    let boot = secure_grub(port, tftp.path(), "ovmf");
    let vm = Vm::start("52:54:00:00:30:77", "grub-wait", &boot).await;
    let waits = "nodeboot_http_requests_total{endpoint=\"grub_config\",outcome=\"wait\"}";
    let rounds = 40;
    let start = std::time::Instant::now();
    loop {
        let (_, _, metrics) = nb.admin_get("/metrics").await;
        let done = metrics
            .lines()
            .find_map(|l| l.strip_prefix(waits)?.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if done >= rounds {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(BOOT_TIMEOUT_SECS),
            "only {done} rounds:\n{}",
            vm.console()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("{rounds} GRUB waiting rounds in {:?}", start.elapsed());
    let console = vm.console();
    assert!(
        console.contains("nodeboot: this node is in no NodeGroup, retrying in 1s"),
        "{console}"
    );
    assert!(!console.contains("recursion"), "{console}");
    rewrite(
        &g,
        &group(
            "  - {name: x3002c0s0b0n0, macs: [\"52:54:00:00:30:02\"], nid: 32}\n  - {name: x3002c0s0b0n1, macs: [\"52:54:00:00:30:77\"], nid: 33, hostname: nid000033}\n",
        ),
    );
    let console = vm.finish().await;
    assert_booted(&console, port, "x3002c0s0b0n1", 33, "nid000033", "compute");
    assert_eq!(
        line(&console, "SECUREBOOT").trim_start_matches(|c| c != 's'),
        "secureboot: Secure boot disabled",
        "{console}"
    );
}

/// An arm64 node boots through the arm64 UEFI firmware (qemu-efi-aarch64) and Debian 13's
/// arm64 netboot GRUB, which asks with `grub_cpu=arm64`; the node's `arch` picks the arm64
/// BootConfig (and its arm64 kernel) over the x86_64 one. Emulated arm64 under TCG: about
/// 25 s on an idle core.
#[tokio::test(flavor = "multi_thread")]
async fn arm64_uefi_grub_boots_the_arm64_bootconfig() {
    let images = arm64_images();
    let dir = manifest_dir(&[]);
    std::fs::write(
        dir.path().join("g.yaml"),
        group(
            "  - {name: x3003c0s0b0n0, macs: [\"52:54:00:00:30:03\"], nid: 34, hostname: nid000034, arch: x86_64}\n  - {name: x3003c0s0b0n1, macs: [\"52:54:00:00:30:04\"], nid: 35, hostname: nid000035, arch: arm64}\n",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bc.yaml"),
        format!(
            "{}---\n{}",
            config(
                "x86",
                "{matchLabels: {nodeboot.io/arch: x86_64}}",
                &images.url("signed/vmlinuz"),
                &images.url("signed/initrd.img"),
            ),
            config(
                "aarch",
                "{matchLabels: {nodeboot.io/arch: arm64}}",
                &images.url("arm64/vmlinuz"),
                &images.url("arm64/initrd.img"),
            )
        ),
    )
    .unwrap();
    let (_nb, port) = serve(dir.path(), &[]).await;
    let fw = firmware_assets("arm64");
    let tftp = tempfile::tempdir().unwrap();
    grub_tftp_root(
        tftp.path(),
        &[("bootaa64.efi", &asset(&fw, "GRUBAA64"))],
        port,
    );
    let boot = Boot {
        firmware: "aavmf",
        bootfile: "bootaa64.efi".into(),
        tftp: Some(tftp.path().to_owned()),
        no_rom: true,
        memory_mb: 512,
        timeout_secs: BOOT_TIMEOUT_SECS,
        extra: Vec::new(),
    };
    let console = Vm::start("52:54:00:00:30:04", "arm64", &boot)
        .await
        .finish()
        .await;
    assert!(line(&console, "INIT-START").contains("-arm64"), "{console}");
    let cmdline = block(&console, "CMDLINE");
    assert!(
        cmdline.starts_with(&format!(
            "BOOT_IMAGE=(http,10.0.2.2:{})/arm64/vmlinuz ",
            images.port
        )),
        "{cmdline}"
    );
    assert_booted(&console, port, "x3003c0s0b0n1", 35, "nid000035", "aarch");
}

/// UEFI HTTP Boot, no TFTP and no iPXE build of the site's own: on a network of the test's
/// own (tests/boot/http-boot.sh, run under `unshare --net`: a bridge and a tap, dnsmasq as
/// the DHCP server), OVMF's HTTP Boot client gets Debian's snponly.efi by URL (vendor class
/// HTTPClient) from nodeboot's `--firmware-dir`, and that iPXE gets nodeboot's `/boot.ipxe`
/// (user class iPXE). About 50 s.
#[tokio::test(flavor = "multi_thread")]
async fn uefi_http_boot_through_dnsmasq_boots_a_node() {
    let images = images();
    let firmware = tempfile::tempdir().unwrap();
    std::fs::copy(
        "/usr/lib/ipxe/snponly.efi",
        firmware.path().join("snponly.efi"),
    )
    .expect("Debian's ipxe package");
    let dir = manifest_dir(&[]);
    std::fs::write(
        dir.path().join("g.yaml"),
        group("  - {name: x3004c0s0b0n0, macs: [\"52:54:00:00:30:05\"], nid: 36, hostname: nid000036}\n"),
    )
    .unwrap();
    // Inside the test's network namespace the image server is 10.77.0.1:8000 and nodeboot
    // 10.77.0.1:8080.
    std::fs::write(
        dir.path().join("bc.yaml"),
        config(
            "httpboot",
            "{matchLabels: {role: compute}}",
            "http://10.77.0.1:8000/signed/vmlinuz",
            "http://10.77.0.1:8000/signed/initrd.img",
        ),
    )
    .unwrap();
    let log = Vm::log_path("http-boot");
    let mut cmd = tokio::process::Command::new("unshare");
    cmd.arg("--net")
        .arg(format!("{}/tests/boot/http-boot.sh", support::REPO))
        .args(["--nodeboot", env!("CARGO_BIN_EXE_nodeboot")])
        .arg("--manifests")
        .arg(dir.path())
        .arg("--images")
        .arg(&images.dir)
        .arg("--firmware-dir")
        .arg(firmware.path())
        .args(["--mac", "52:54:00:00:30:05"])
        .args(["--timeout", &BOOT_TIMEOUT_SECS.to_string()])
        .arg("--log")
        .arg(&log)
        .arg("--stop-on-stdin-eof");
    let console = Vm::run(cmd, log.clone()).await.finish().await;
    assert!(
        console.contains("Start HTTP Boot over IPv4")
            && console.contains("URI: http://10.77.0.1:8080/firmware/snponly.efi"),
        "{console}"
    );
    assert!(
        console.contains("Filename: http://10.77.0.1:8080/boot.ipxe"),
        "{console}"
    );
    let cmdline = block(&console, "CMDLINE");
    assert!(cmdline.contains("BOOTIF=01-52-54-00-00-30-05"), "{cmdline}");
    // assert_booted's seed URL is 10.0.2.2's: check the same things against 10.77.0.1.
    assert!(
        cmdline.contains("ds=nocloud-net;s=http://10.77.0.1:8080/cloud-init/x3004c0s0b0n0/")
            && cmdline.contains("image=httpboot")
            && cmdline.contains("nid=36"),
        "{cmdline}"
    );
    let meta = block(&console, "META-DATA");
    assert!(
        meta.contains("instance-id: x3004c0s0b0n0") && meta.contains("image: httpboot"),
        "{meta}"
    );
    assert!(block(&console, "USER-DATA").contains("hostname: nid000036"));
    assert!(block(&console, "VENDOR-DATA").contains("bootcmd: [[echo, httpboot]]"));
}
