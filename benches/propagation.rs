//! The operator at scale, on the project's test API server: start to serving and to every status
//! written, its memory, the API requests one rebuild costs, and change propagation (time from a
//! BootConfig patch to the new script being served for every matched node).
//!
//! `hack/test-apiserver.sh start` first, then:
//! `KUBECONFIG=... cargo bench --bench propagation -- [NODES] [ROUNDS]` (default 20000, 20).
//! The site is nodeboot-bench's synthetic one: NodeGroups of 5000 nodes (100k nodes: 20 of
//! them). The snapshot is swapped whole, so every node changes at once; the bench still checks a
//! spread of nodes (first, last and every 997th) before it counts a round as served.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::Api;
use kube::runtime::{reflector, watcher};
use nodeboot_bench::synthetic;
use nodeboot_core::crd::{BootConfig, NodeGroup};

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

/// The API server's request counter for nodeboot.io objects, by verb, resource and subresource.
fn nodeboot_api_requests() -> std::collections::BTreeMap<String, f64> {
    let mut counts = std::collections::BTreeMap::new();
    for line in kubectl(&["get", "--raw", "/metrics"]).lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        if !labels.contains("group=\"nodeboot.io\"") {
            continue;
        }
        let label = |key: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let key = format!(
            "{} {}{}",
            label("verb"),
            label("resource"),
            match label("subresource").as_str() {
                "" => String::new(),
                sub => format!("/{sub}"),
            }
        );
        *counts.entry(key).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    counts
}

/// What changed between two readings of `nodeboot_api_requests`, non-zero entries only.
fn api_delta(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
) -> String {
    let parts: Vec<String> = after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0.0);
            (d > 0.0).then(|| format!("{k}: {d}"))
        })
        .collect();
    parts.join(", ")
}

/// The NodeGroups and BootConfigs of the bench's namespace, kept current by one watch per kind:
/// checking status in these stores costs the API server nothing, where listing 100k nodes'
/// objects every few hundred milliseconds would compete with the operator's own status writes.
struct Statuses {
    groups: reflector::Store<NodeGroup>,
    configs: reflector::Store<BootConfig>,
}

impl Statuses {
    async fn watch(client: &kube::Client, ns: &str) -> Statuses {
        fn follow<K>(api: Api<K>) -> reflector::Store<K>
        where
            K: kube::Resource<DynamicType = ()>
                + Clone
                + std::fmt::Debug
                + serde::de::DeserializeOwned
                + Send
                + Sync
                + 'static,
        {
            let (reader, writer) = reflector::store();
            let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()));
            tokio::spawn(stream.for_each(|_| async {}));
            reader
        }
        let statuses = Statuses {
            groups: follow(Api::namespaced(client.clone(), ns)),
            configs: follow(Api::namespaced(client.clone(), ns)),
        };
        statuses.groups.wait_until_ready().await.unwrap();
        statuses.configs.wait_until_ready().await.unwrap();
        statuses
    }

    fn config_has_kernel(&self, name: &str, kernel: &str) -> bool {
        self.configs
            .state()
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(name) && c.spec.kernel == kernel)
    }

    /// True when every NodeGroup and BootConfig has a status for its current generation, and
    /// every NodeGroup's status counts all its nodes.
    fn all_written(&self) -> bool {
        let groups = self.groups.state();
        let configs = self.configs.state();
        !groups.is_empty()
            && groups.iter().all(|g| {
                g.status.as_ref().is_some_and(|s| {
                    s.observed_generation == g.metadata.generation
                        && usize::try_from(s.node_count).ok() == Some(g.spec.nodes.len())
                })
            })
            && configs.iter().all(|c| {
                c.status
                    .as_ref()
                    .is_some_and(|s| s.observed_generation == c.metadata.generation)
            })
    }
}

/// VmRSS and VmHWM of process `pid`, in MiB.
fn rss_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
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

    // PROPAGATION_LOG=FILE keeps the operator's log (at info: rebuild and status-write times).
    let log = std::env::var_os("PROPAGATION_LOG").map(|path| std::fs::File::create(path).unwrap());
    let statuses = Statuses::watch(&kube::Client::try_default().await.unwrap(), &ns).await;
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
        .env("RUST_LOG", if log.is_some() { "info" } else { "warn" })
        .stdout(Stdio::null())
        .stderr(match &log {
            Some(file) => Stdio::from(file.try_clone().unwrap()),
            None => Stdio::inherit(),
        })
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
    let (rss, _) = rss_mib(op.id());
    println!(
        "{nodes} nodes: operator start to serving: {:?}; RSS {rss} MiB",
        start.elapsed()
    );
    while !statuses.all_written() {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "operator never wrote every status"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (rss, peak) = rss_mib(op.id());
    println!(
        "{nodes} nodes: operator start to every status written: {:?}; RSS {rss} MiB, peak {peak} MiB",
        start.elapsed()
    );

    let mut times = Vec::new();
    let mut requests_per_round = Vec::new();
    for round in 0..rounds {
        let api_before = nodeboot_api_requests();
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
        // The API requests this round cost once its status is written: kubectl's patch, and the
        // operator's status writes for its rebuild (batched; a second after the last one). The
        // watch must have seen the patch first, or the last round's status would count.
        while !statuses.all_written() || !statuses.config_has_kernel("compute", &kernel) {
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "round {round}: status never caught up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        requests_per_round.push(api_delta(&api_before, &nodeboot_api_requests()));
    }
    for (round, delta) in requests_per_round.iter().enumerate().take(3) {
        println!("API requests of round {round} (nodeboot.io objects): {delta}");
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
    let (rss, peak) = rss_mib(op.id());
    println!("operator RSS at the end: {rss} MiB, peak {peak} MiB");
    let _ = op.kill();
    let _ = op.wait();
}
