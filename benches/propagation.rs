//! Change propagation through the operator: time from a BootConfig patch (kubectl, on the
//! project's test API server) to the new script being served for every matched node.
//!
//! `hack/test-apiserver.sh start` first, then:
//! `KUBECONFIG=... cargo bench --bench propagation -- [NODES] [ROUNDS]` (default 20000, 20).
//! The snapshot is swapped whole, so every node changes at once; the bench still checks a
//! spread of nodes (first, last and every 997th) before it counts a round as served.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nodeboot_bench::synthetic;

/// The test API server's kubectl (KUBEBUILDER_ASSETS), else the one on PATH.
fn kubectl(args: &[&str]) -> String {
    let bin = std::env::var("KUBEBUILDER_ASSETS")
        .map(|dir| format!("{dir}/kubectl"))
        .unwrap_or_else(|_| "kubectl".into());
    let out = Command::new(bin).args(args).output().expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let nodes: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/");
    kubectl(&["apply", "--server-side", "--force-conflicts", "-f", crds]);
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/nodegroups.nodeboot.io",
        "crd/bootconfigs.nodeboot.io",
    ]);
    let ns = format!("propagation-{}", std::process::id());
    kubectl(&["create", "namespace", &ns]);

    let site = synthetic::site(nodes);
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in synthetic::site_manifests(&site).unwrap() {
        let text = text.replace(
            &format!("namespace: {}", synthetic::NAMESPACE),
            &format!("namespace: {ns}"),
        );
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    kubectl(&[
        "apply",
        "--server-side",
        "-n",
        &ns,
        "-f",
        &dir.path().display().to_string(),
    ]);

    let port = free_port();
    let admin = free_port();
    let mut op = Command::new(env!("CARGO_BIN_EXE_nodeboot"))
        .args(["run", "--namespace", &ns, "--leader-election", "off"])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("operator starts");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    // Nodes of cabinet 0, which the "compute" BootConfig boots (not GPU, not pinned).
    let sample: Vec<String> = (1..synthetic::CABINET_SIZE.min(nodes))
        .step_by(997)
        .chain([synthetic::CABINET_SIZE.min(nodes) - 1])
        .filter(|i| i % 7 != 0 || *i >= 35)
        .map(synthetic::node_mac)
        .collect();
    let served = |kernel: String| {
        let client = client.clone();
        let base = base.clone();
        let sample = sample.clone();
        async move {
            for mac in &sample {
                let body = match client
                    .get(format!("{base}/boot/v1/bootscript?mac={mac}"))
                    .send()
                    .await
                {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(_) => return false,
                };
                if !body.contains(&kernel) {
                    return false;
                }
            }
            true
        }
    };
    let start = Instant::now();
    while !served("http://images.example/compute/vmlinuz".into()).await {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "operator never served the site"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "{nodes} nodes: operator start to serving: {:?}",
        start.elapsed()
    );

    let mut times = Vec::new();
    for round in 0..rounds {
        let kernel = format!("http://images.example/compute-r{round}/vmlinuz");
        let patch = format!(r#"{{"spec":{{"kernel":"{kernel}"}}}}"#);
        let t = Instant::now();
        kubectl(&[
            "patch",
            "bootconfig",
            "compute",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            &patch,
        ]);
        while !served(kernel.clone()).await {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "round {round} never served"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "propagation over {rounds} patches ({nodes} nodes): median {:?}, p99 {:?}, min {:?}, max {:?} (includes kubectl's own start, ~{} ms)",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[0],
        times[times.len() - 1],
        {
            let t = Instant::now();
            kubectl(&["version", "--client"]);
            t.elapsed().as_millis()
        }
    );
    let _ = op.kill();
    let _ = op.wait();
}
