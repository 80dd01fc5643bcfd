//! Real firmware in QEMU for the boot tests: the image server, a VM that boots from the
//! network through one firmware path, and the markers the test initrd prints
//! (tests/boot/README.md). The scripts under tests/boot/ build the assets and run each VM.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::REPO;

/// Two cores: more VMs at once only slow every one of them down.
static VM_SLOTS: Semaphore = Semaphore::const_new(2);

/// Kernel and initrd served over HTTP on loopback, as a site's image server would. Kept in a
/// `static`, which is never dropped: the server exits when this process closes its stdin,
/// which the kernel does when the process exits, however it ends.
pub struct Images {
    pub port: u16,
    pub dir: PathBuf,
    _server: Child,
    _lifeline: ChildStdin,
}

impl Images {
    /// The URL of `path` under the image root, as a VM reaches it.
    pub fn url(&self, path: &str) -> String {
        format!("http://10.0.2.2:{}/{path}", self.port)
    }
}

/// Starts `tests/boot/httpd.py` on `dir`.
pub fn image_server(dir: &Path) -> Images {
    let port_file = dir.join("port");
    let _ = std::fs::remove_file(&port_file);
    let mut server = Command::new("python3")
        .arg(format!("{REPO}/tests/boot/httpd.py"))
        .args(["--root", &dir.display().to_string(), "--port", "0"])
        .args(["--stop-on-stdin-eof", "--port-file"])
        .arg(&port_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("image server starts");
    let start = Instant::now();
    let port = loop {
        if let Ok(p) = std::fs::read_to_string(&port_file)
            && let Ok(p) = p.trim().parse()
        {
            break p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "image server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    Images {
        port,
        dir: dir.to_owned(),
        _lifeline: server.stdin.take().expect("piped stdin"),
        _server: server,
    }
}

/// The x86_64 images: Debian's signed cloud kernel and the test initrd under `signed/`, and
/// the same kernel with its signature removed (`sbattach --remove`) under `unsigned/`.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("nodeboot-fw-images-{}", std::process::id()));
        run_ok(Command::new(format!("{REPO}/tests/boot/build-assets.sh")).arg(&dir));
        for image in ["signed", "unsigned"] {
            std::fs::create_dir_all(dir.join(image)).unwrap();
            let _ = std::fs::hard_link(dir.join("initrd.img"), dir.join(image).join("initrd.img"));
        }
        let _ = std::fs::hard_link(dir.join("vmlinuz"), dir.join("signed/vmlinuz"));
        let unsigned = dir.join("unsigned/vmlinuz");
        std::fs::copy(dir.join("vmlinuz"), &unsigned).unwrap();
        run_ok(Command::new("sbattach").arg("--remove").arg(&unsigned));
        image_server(&dir)
    })
}

/// The arm64 images, beside the x86_64 ones under `arm64/`: Debian's arm64 cloud kernel and
/// the same test initrd built with an arm64 busybox (tests/boot/firmware-assets.sh arm64).
pub fn arm64_images() -> &'static Images {
    static ARM64: OnceLock<()> = OnceLock::new();
    let images = images();
    ARM64.get_or_init(|| {
        let fw = firmware_assets("arm64");
        run_ok(
            Command::new(format!("{REPO}/tests/boot/build-assets.sh"))
                .arg(images.dir.join("arm64"))
                .env("NODEBOOT_KERNEL_DIR", asset(&fw, "KERNEL_ARM64_PKG"))
                .env("NODEBOOT_BUSYBOX", asset(&fw, "BUSYBOX_ARM64")),
        );
    });
    images
}

pub fn run_ok(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// `tests/boot/firmware-assets.sh ARCH`: its NAME=PATH lines.
pub fn firmware_assets(arch: &str) -> Vec<(String, String)> {
    let out = Command::new(format!("{REPO}/tests/boot/firmware-assets.sh"))
        .arg(arch)
        .stderr(Stdio::inherit())
        .output()
        .expect("firmware-assets.sh runs");
    assert!(out.status.success(), "firmware-assets.sh {arch} failed");
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

pub fn asset(assets: &[(String, String)], name: &str) -> String {
    assets
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("firmware-assets.sh gave no {name}"))
}

/// A TFTP root as a site serves Secure Boot netboot from: shim as the boot file, GRUB beside
/// it (shim loads `grubx64.efi` from its own directory), and `grub/grub.cfg` (grubnetx64's
/// prefix is `/grub`) holding the one line that hands over to nodeboot over HTTP.
pub fn grub_tftp_root(dir: &Path, files: &[(&str, &str)], nodeboot_port: u16) {
    std::fs::create_dir_all(dir.join("grub")).unwrap();
    for (name, from) in files {
        std::fs::copy(from, dir.join(name)).unwrap_or_else(|e| panic!("{from}: {e}"));
    }
    std::fs::write(
        dir.join("grub/grub.cfg"),
        format!("source (http,10.0.2.2:{nodeboot_port})/grub.cfg\n"),
    )
    .unwrap();
}

/// How a VM boots: the firmware and what its DHCP hands out.
#[derive(Debug, Clone)]
pub struct Boot {
    /// `bios`, `ovmf`, `ovmf-secure` or `aavmf` (run-vm.sh --firmware).
    pub firmware: &'static str,
    /// The DHCP boot file: a URL for iPXE, a file name in `tftp`.
    pub bootfile: String,
    pub tftp: Option<PathBuf>,
    /// The firmware's own PXE stack instead of the iPXE option ROM.
    pub no_rom: bool,
    pub memory_mb: u32,
    pub timeout_secs: u64,
    pub extra: Vec<String>,
}

impl Boot {
    /// Legacy BIOS with Debian's iPXE option ROM, whose DHCP boot file is `bootfile` (a URL).
    pub fn bios_ipxe(bootfile: String, timeout_secs: u64) -> Boot {
        Boot {
            firmware: "bios",
            bootfile,
            tftp: None,
            no_rom: false,
            memory_mb: 256,
            timeout_secs,
            extra: Vec::new(),
        }
    }
}

/// A VM booting; dropping it (the test ended or panicked) stops it: run-vm.sh stops QEMU when
/// its stdin closes, which also happens when this process dies.
pub struct Vm {
    log: PathBuf,
    child: tokio::process::Child,
    /// Held apart from `child`: waiting on a child closes the stdin it holds.
    _lifeline: tokio::process::ChildStdin,
    _slot: tokio::sync::SemaphorePermit<'static>,
}

impl Vm {
    /// The console log of VM `name`, removed if a former run left it.
    pub fn log_path(name: &str) -> PathBuf {
        let log =
            std::env::temp_dir().join(format!("nodeboot-vm-{name}-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&log);
        log
    }

    pub async fn start(mac: &str, name: &str, boot: &Boot) -> Vm {
        let log = Vm::log_path(name);
        let mut cmd = tokio::process::Command::new(format!("{REPO}/tests/boot/run-vm.sh"));
        cmd.args(["--mac", mac, "--firmware", boot.firmware])
            .args(["--boot-url", &boot.bootfile])
            .args(["--timeout", &boot.timeout_secs.to_string()])
            .args(["--memory", &boot.memory_mb.to_string()])
            .arg("--log")
            .arg(&log)
            .arg("--stop-on-stdin-eof");
        if let Some(tftp) = &boot.tftp {
            cmd.arg("--tftp").arg(tftp);
        }
        if boot.no_rom {
            cmd.arg("--no-rom");
        }
        if !boot.extra.is_empty() {
            cmd.arg("--").args(&boot.extra);
        }
        Vm::run(cmd, log).await
    }

    /// Runs `cmd` (run-vm.sh, or a script that ends in it, given `--stop-on-stdin-eof`),
    /// which writes the console to `log`, in one of the VM slots.
    pub async fn run(mut cmd: tokio::process::Command, log: PathBuf) -> Vm {
        let slot = VM_SLOTS.acquire().await.expect("semaphore");
        let mut child = cmd
            .stdin(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run-vm.sh starts");
        Vm {
            log,
            _lifeline: child.stdin.take().expect("piped stdin"),
            child,
            _slot: slot,
        }
    }

    /// The serial console so far, without carriage returns and terminal escapes.
    pub fn console(&self) -> String {
        let raw = std::fs::read(&self.log).unwrap_or_default();
        strip_escapes(&String::from_utf8_lossy(&raw))
    }

    /// Waits for the VM to power off by itself; returns its console.
    pub async fn finish(mut self) -> String {
        let status = self.child.wait().await.expect("run-vm.sh");
        let console = self.console();
        assert!(
            status.success(),
            "VM did not power off by itself ({status}):\n{console}"
        );
        console
    }

    /// Waits until the console shows `needle` `times` times.
    pub async fn wait_console(&self, needle: &str, times: usize, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let console = self.console();
            if console.matches(needle).count() >= times {
                return console;
            }
            assert!(
                start.elapsed() < limit,
                "console never showed {needle:?} {times} times:\n{console}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Firmware consoles draw with ANSI escapes; the markers are plain lines.
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for e in chars.by_ref() {
                        if e.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The text between two markers the test initrd prints.
pub fn block<'a>(console: &'a str, name: &str) -> &'a str {
    let begin = format!("NODEBOOT-{name}-BEGIN\n");
    let end = format!("NODEBOOT-{name}-END");
    let Some(start) = console.find(&begin) else {
        panic!("no {name} block in console:\n{console}")
    };
    let rest = &console[start + begin.len()..];
    &rest[..rest.find(&end).unwrap_or(rest.len())]
}

/// The line the test initrd prints after `NODEBOOT-{name} `.
pub fn line<'a>(console: &'a str, name: &str) -> &'a str {
    let tag = format!("NODEBOOT-{name} ");
    console
        .lines()
        .find_map(|l| l.strip_prefix(&tag))
        .unwrap_or_else(|| panic!("no {tag} line in console:\n{console}"))
}
