//! The real `nodeboot` binary on loopback ports, and a plain HTTP client for it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::dies_with_spawning_thread;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running `nodeboot`, killed when dropped.
pub struct Nodeboot {
    child: Child,
    pub boot: String,
    pub admin: String,
    pub log: PathBuf,
}

impl Nodeboot {
    /// Starts `nodeboot serve --manifests DIR` with `extra` flags and waits until it is ready.
    pub async fn serve(dir: &Path, extra: &[&str]) -> Nodeboot {
        let mut args = vec![
            "serve".to_owned(),
            "--manifests".to_owned(),
            dir.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Nodeboot::spawn(&args, &[], &dir.with_extension("log")).await
    }

    /// Starts `nodeboot ARGS` on fresh loopback ports, logging to `log`, and waits until ready.
    pub async fn spawn(args: &[String], env: &[(&str, &str)], log: &Path) -> Nodeboot {
        Nodeboot::spawn_on(args, env, log, free_port()).await
    }

    /// Like `spawn`, with the boot listener on `boot_port`.
    pub async fn spawn_on(
        args: &[String],
        env: &[(&str, &str)],
        log: &Path,
        boot_port: u16,
    ) -> Nodeboot {
        let admin_port = free_port();
        let log = log.to_owned();
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = dies_with_spawning_thread(&mut Command::new(env!("CARGO_BIN_EXE_nodeboot")))
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{boot_port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .env("RUST_LOG", "info,kube=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("nodeboot starts");
        let n = Nodeboot {
            child,
            boot: format!("http://127.0.0.1:{boot_port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            log,
        };
        wait_ready(&n.admin, || n.logs()).await;
        n
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> (u16, String, String) {
        get(&format!("{}{path}", self.boot)).await
    }

    pub async fn admin_get(&self, path: &str) -> (u16, String, String) {
        get(&format!("{}{path}", self.admin)).await
    }

    /// The admin endpoint's report of node `id` (name or MAC), parsed.
    pub async fn node_report(&self, id: &str) -> serde_json::Value {
        let (status, _, body) = self.admin_get(&format!("/nodes/{id}")).await;
        assert_eq!(status, 200, "/nodes/{id}: {body}");
        serde_json::from_str(&body).expect("report is JSON")
    }

    /// Waits until the process has logged `needle` (a reload's report, say).
    pub async fn wait_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.logs().contains(needle) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "never logged {needle:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls `path` until `pred` holds for its body; returns how long that took.
    pub async fn wait_for(&self, path: &str, pred: impl Fn(&str) -> bool) -> Duration {
        let start = Instant::now();
        loop {
            let (_, _, body) = self.get(path).await;
            if pred(&body) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{path} never changed; last body:\n{body}\nlogs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nodeboot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the admin listener at `admin` says ready; panics with `logs()` after 30 s.
pub async fn wait_ready(admin: &str, logs: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{admin}/readyz")).await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nodeboot did not become ready:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Status, content type and body of a GET.
pub async fn get(url: &str) -> (u16, String, String) {
    let r = reqwest::get(url).await.expect("request");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, ct, r.text().await.expect("body"))
}
