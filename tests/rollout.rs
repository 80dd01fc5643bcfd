//! Boot tracking on the real API server, with two `nodeboot run` replicas behind "one Service"
//! (the test sends each node's requests to either): BootConfig rollout counts and per-node
//! records come out right however the requests were spread, start again for a new generation,
//! survive a restart of every replica, and `nodeboot adopt` takes a discovered MAC into a
//! NodeGroup.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Nodeboot;
use support::apiserver::{self, TestApi, examples_in};
use support::wait::eventually;

/// The example site's compute-rocky9 nodes (no address: they may phone home from loopback).
const COMPUTE: [(&str, &str); 4] = [
    ("x1000c0s0b0n0", "02:00:00:00:10:00"),
    ("x1000c0s0b0n1", "02:00:00:00:10:01"),
    ("x1000c0s1b0n0", "02:00:00:00:10:10"),
    ("x1000c0s1b0n1", "02:00:00:00:10:11"),
];

async fn replica(api: &TestApi, ns: &str, identity: &str) -> Nodeboot {
    let args: Vec<String> = [
        "run",
        "--namespace",
        ns,
        "--leader-election",
        "on",
        "--lease-namespace",
        ns,
        "--lease-duration",
        "3",
        "--identity",
        identity,
        "--tracking-interval",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = std::env::temp_dir().join(format!(
        "nodeboot-rollout-{ns}-{identity}-{}.log",
        support::free_port()
    ));
    Nodeboot::spawn(&args, &[("KUBECONFIG", &api.kubeconfig_str())], &log).await
}

async fn phone_home(replica: &Nodeboot, id: &str) {
    let body = format!(
        "pub_key_rsa=ssh-rsa+AAAA&pub_key_ed25519=ssh-ed25519+AAAA&instance_id={id}&hostname={id}&fqdn={id}.example"
    );
    let reply = reqwest::Client::new()
        .post(format!("{}/cloud-init/{id}/phone-home", replica.boot))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("phone-home");
    assert_eq!(reply.status(), 200, "{:?}", reply.text().await);
}

async fn fetch_script(replica: &Nodeboot, mac: &str) -> String {
    let (status, _, body) = replica.get(&format!("/boot/v1/bootscript?mac={mac}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn rollout(api: &TestApi, ns: &str, bc: &str) -> Value {
    api.get_json(ns, &format!("bc/{bc}"))["status"]["rollout"].clone()
}

async fn wait_rollout(api: &TestApi, ns: &str, bc: &str, want: Value) {
    let what = format!("{bc} rollout {want}");
    eventually(&what, Duration::from_secs(60), || {
        (rollout(api, ns, bc) == want).then_some(())
    })
    .await
}

/// The `/metrics` value of series `series`, 0 when absent.
async fn metric(replica: &Nodeboot, series: &str) -> i64 {
    let (_, _, text) = replica.admin_get("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.parse().expect("a number"))
}

fn adopt(api: &TestApi, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nodeboot"))
        .arg("adopt")
        .args(args)
        .env("KUBECONFIG", api.kubeconfig_str())
        .output()
        .expect("nodeboot adopt runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_counts_with_two_replicas_survive_restart_and_adopt_takes_discovered_macs() {
    let api = apiserver::shared();
    let ns = api.fresh_namespace("rollout");
    api.apply_ok(&ns, &examples_in(&ns));
    let replicas = [replica(api, &ns, "r1").await, replica(api, &ns, "r2").await];
    wait_rollout(
        api,
        &ns,
        "compute-rocky9",
        serde_json::json!({"generation": 1, "served": 0, "booted": 0}),
    )
    .await;

    // Each node fetches its script from one replica and phones home through the other; the
    // last node never phones home.
    let started = Instant::now();
    for (i, (name, mac)) in COMPUTE.iter().enumerate() {
        let script = fetch_script(&replicas[i % 2], mac).await;
        assert!(script.contains("rocky9/vmlinuz"), "{script}");
        let (_, _, meta) = replicas[i % 2]
            .get(&format!("/cloud-init/{name}/meta-data"))
            .await;
        assert!(meta.contains(name), "{meta}");
        if i < 3 {
            phone_home(&replicas[(i + 1) % 2], name).await;
        }
    }
    wait_rollout(
        api,
        &ns,
        "compute-rocky9",
        serde_json::json!({"generation": 1, "served": 4, "booted": 3}),
    )
    .await;
    eprintln!("rollout status after {:?}", started.elapsed());
    assert_eq!(
        rollout(api, &ns, "gpu-rocky9"),
        serde_json::json!({"generation": 1, "served": 0, "booted": 0})
    );
    let table = api.kubectl_ok(&["get", "bc", "-n", &ns]);
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("SERVED") && header.contains("BOOTED"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("compute-rocky9"))
        .unwrap();
    assert!(row.contains(" 4 ") && row.contains(" 3 "), "{table}");

    // Every replica reports every node, whichever replica the node asked.
    for replica in &replicas {
        let mut seen = 0;
        for _ in 0..100 {
            let report = replica.node_report("x1000c0s0b0n1").await;
            if report["lastBootScript"]["generation"] == 1 && report["lastPhoneHome"].is_object() {
                assert_eq!(report["lastBootScript"]["bootConfig"], "compute-rocky9");
                assert!(report["lastCloudInit"]["meta-data"].is_string(), "{report}");
                seen += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            seen, 1,
            "replica {} never showed the merged record",
            replica.boot
        );
        let series = "nodeboot_rollout_nodes{namespace=\"".to_owned()
            + &ns
            + "\",bootconfig=\"compute-rocky9\",generation=\"1\",state=\"booted\"}";
        assert_eq!(metric(replica, &series).await, 3);
    }
    let last = replicas[0].node_report("x1000c0s1b0n1").await;
    assert!(last.get("lastPhoneHome").is_none(), "{last}");
    // The records are in ConfigMaps of each replica, owned by the NodeGroup.
    let maps = api.kubectl_ok(&[
        "get",
        "cm",
        "-n",
        &ns,
        "-l",
        "nodeboot.io/boot-records=nodes",
        "-o",
        "name",
    ]);
    assert!(
        maps.contains("cabinet-x1000.boots-0.r1") && maps.contains("cabinet-x1000.boots-0.r2"),
        "{maps}"
    );

    // A new generation: counts start again, and climb as nodes boot it.
    api.patch_merge(
        &ns,
        "bc/compute-rocky9",
        r#"{"spec":{"kernel":"http://images.example/rocky10/vmlinuz"}}"#,
    );
    wait_rollout(
        api,
        &ns,
        "compute-rocky9",
        serde_json::json!({"generation": 2, "served": 0, "booted": 0}),
    )
    .await;
    for (i, (name, mac)) in COMPUTE.iter().take(2).enumerate() {
        replicas[i % 2]
            .wait_for(&format!("/boot/v1/bootscript?mac={mac}"), |b| {
                b.contains("rocky10")
            })
            .await;
        if i == 0 {
            phone_home(&replicas[1], name).await;
        }
    }
    wait_rollout(
        api,
        &ns,
        "compute-rocky9",
        serde_json::json!({"generation": 2, "served": 2, "booted": 1}),
    )
    .await;

    // NodeGroup status shows, per node, the generation last served and last booted.
    eventually(
        "per-node generations in NodeGroup status",
        Duration::from_secs(30),
        || {
            let g = api.get_json(&ns, "ng/cabinet-x1000");
            let node = |name: &str| {
                g["status"]["nodes"]
                    .as_array()
                    .and_then(|nodes| nodes.iter().find(|n| n["name"] == name))
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            let generations = |name: &str| {
                let n = node(name);
                (n["servedGeneration"].clone(), n["bootedGeneration"].clone())
            };
            (generations("x1000c0s0b0n0") == (2.into(), 2.into())
                && generations("x1000c0s1b0n0") == (1.into(), 1.into())
                && generations("x1000c0s1b0n1") == (1.into(), Value::Null))
                .then_some(())
        },
    )
    .await;

    // Every replica restarts (new names, as a Deployment's new pods have): the records stay.
    drop(replicas);
    let r3 = replica(api, &ns, "r3").await;
    let series = "nodeboot_rollout_nodes{namespace=\"".to_owned()
        + &ns
        + "\",bootconfig=\"compute-rocky9\",generation=\"2\",state=\"served\"}";
    let mut served = 0;
    for _ in 0..100 {
        served = metric(&r3, &series).await;
        if served == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served, 2, "{}", r3.logs());
    let report = r3.node_report("x1000c0s0b0n0").await;
    assert_eq!(report["lastBootScript"]["generation"], 2, "{report}");
    assert_eq!(report["lastPhoneHome"]["generation"], 2, "{report}");
    // `nodeboot explain` reads the same records from the cluster.
    let out = Command::new(env!("CARGO_BIN_EXE_nodeboot"))
        .args([
            "explain",
            "x1000c0s0b0n0",
            "--namespace",
            &ns,
            "--output",
            "json",
        ])
        .env("KUBECONFIG", api.kubeconfig_str())
        .output()
        .expect("nodeboot explain runs");
    let explained: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(explained["lastBootScript"]["generation"], 2, "{explained}");
    assert_eq!(explained["lastPhoneHome"]["generation"], 2, "{explained}");
    // The new leader's status says the same as before the restart, not zero.
    tokio::time::sleep(Duration::from_secs(4)).await;
    wait_rollout(
        api,
        &ns,
        "compute-rocky9",
        serde_json::json!({"generation": 2, "served": 2, "booted": 1}),
    )
    .await;

    // An unknown node asks: listed at /discovered and in its discovery BootConfig's status.
    let stranger = "02:00:00:99:00:07";
    let script = fetch_script(&r3, &format!("{stranger}&arch=x86_64")).await;
    fetch_script(&r3, stranger).await;
    assert!(!script.contains("rocky10"), "{script}");
    let (_, _, listed) = r3.admin_get("/discovered").await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["mac"], stranger, "{listed}");
    assert_eq!(listed[0]["count"], 2, "{listed}");
    assert_eq!(listed[0]["source"], "127.0.0.1", "{listed}");
    eventually(
        "discovered MAC in the discovery BootConfig's status",
        Duration::from_secs(30),
        || {
            let bc = api.get_json(&ns, "bc/discovery");
            (bc["status"]["discovered"][0]["mac"] == stranger).then_some(())
        },
    )
    .await;

    // adopt refuses what is claimed, naming the claimant; --dry-run changes nothing.
    for (args, needle) in [
        (
            vec!["02-00-00-00-10-00", "--name", "new"],
            "MAC 02:00:00:00:10:00 is already claimed by node x1000c0s0b0n0 in NodeGroup cabinet-x1000",
        ),
        (
            vec![stranger, "--name", "x1001c0s0b0n0"],
            "name x1001c0s0b0n0 is already claimed by node x1001c0s0b0n0 in NodeGroup cabinet-x1001",
        ),
        (
            vec![stranger, "--name", "new", "--nid", "101"],
            "NID 101 is already claimed by node x1001c0s0b0n0",
        ),
        (
            vec!["02:00:00:99:00:07", "--name", "n", "--group", "nope"],
            "NodeGroup",
        ),
    ] {
        let mut all = vec!["--namespace", ns.as_str()];
        if !args.contains(&"--group") {
            all.extend(["--group", "cabinet-x1000"]);
        }
        all.extend(args);
        let out = adopt(api, &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{all:?} was accepted");
        assert!(
            stderr.contains(needle),
            "{all:?}: expected {needle:?} in {stderr}"
        );
    }
    let nodes = |api: &TestApi| {
        api.get_json(&ns, "ng/cabinet-x1000")["spec"]["nodes"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let out = adopt(
        api,
        &[
            stranger,
            "--namespace",
            &ns,
            "--group",
            "cabinet-x1000",
            "--name",
            "x1000c9s0b0n0",
            "--nid",
            "77",
            "--dry-run",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("dry run")
            && stdout.contains("x1000c9s0b0n0")
            && stdout.contains("02:00:00:99:00:07"),
        "{stdout}"
    );
    assert_eq!(nodes(api), 4);

    // Two adoptions at once into the same NodeGroup: neither is lost (one retries on 409).
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            adopt(
                api,
                &[
                    stranger,
                    "--namespace",
                    &ns,
                    "--group",
                    "cabinet-x1000",
                    "--name",
                    "x1000c9s0b0n0",
                    "--nid",
                    "77",
                ],
            )
        });
        let b = s.spawn(|| {
            adopt(
                api,
                &[
                    "02:00:00:99:00:08",
                    "--namespace",
                    &ns,
                    "--group",
                    "cabinet-x1000",
                    "--name",
                    "x1000c9s0b0n1",
                ],
            )
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert_eq!(nodes(api), 6);

    // The adopted node now boots its real configuration, and is no longer "discovered".
    r3.wait_for(&format!("/boot/v1/bootscript?mac={stranger}"), |b| {
        b.contains("rocky10/vmlinuz") && b.contains("xname=x1000c9s0b0n0")
    })
    .await;
    let (_, _, listed) = r3.admin_get("/discovered").await;
    assert!(!listed.contains(stranger), "{listed}");
}
