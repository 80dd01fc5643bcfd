//! `nodeboot run` against a real kube-apiserver and etcd on loopback.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::apiserver::{self, TestApi, examples_in};
use support::process::dies_with_spawning_thread;
use support::wait::eventually;
use support::{Nodeboot, get};

async fn operator(api: &TestApi, namespace: &str, extra: &[&str]) -> Nodeboot {
    let mut args: Vec<String> = ["run", "--namespace", namespace]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    if !extra.contains(&"--leader-election") {
        args.extend(["--leader-election".into(), "off".into()]);
    }
    let log = std::env::temp_dir().join(format!(
        "nodeboot-operator-{namespace}-{}.log",
        support::free_port()
    ));
    Nodeboot::spawn(&args, &[("KUBECONFIG", &api.kubeconfig_str())], &log).await
}

fn group_status(api: &TestApi, ns: &str, name: &str) -> Value {
    api.get_json(ns, &format!("nodegroup/{name}"))
}

fn node_status<'a>(group: &'a Value, node: &str) -> &'a Value {
    group["status"]["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["name"] == node))
        .unwrap_or(&Value::Null)
}

fn ready(obj: &Value) -> Option<&Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
}

fn events(api: &TestApi, ns: &str) -> Vec<Value> {
    api.get_json(ns, "events")["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn crds_install_and_document_their_fields() {
    let api = apiserver::shared();
    // The API server publishes a new CRD's OpenAPI a few seconds after it is established.
    let explain = eventually("kubectl explain nodegroup", Duration::from_secs(60), || {
        let out = api.kubectl(&["explain", "nodegroup.spec.nodes"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await;
    for field in [
        "macs",
        "nid",
        "hostname",
        "metaData",
        "MAC addresses of the node",
    ] {
        assert!(
            explain.contains(field),
            "{field} not documented:\n{explain}"
        );
    }
    let explain = api.kubectl_ok(&["explain", "bootconfig.spec"]);
    for field in [
        "nodeSelector",
        "priority",
        "kernel",
        "autoParams",
        "cloudInit",
    ] {
        assert!(
            explain.contains(field),
            "{field} not documented:\n{explain}"
        );
    }
    let names = api.kubectl_ok(&[
        "get",
        "crd",
        "nodegroups.nodeboot.io",
        "-o",
        "jsonpath={.spec.names.shortNames}",
    ]);
    assert!(names.contains("ng"), "{names}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_objects_are_refused_with_clear_messages() {
    let api = apiserver::shared();
    let ns = api.fresh_namespace("refuse");
    let group = |nodes: &str, labels: &str| {
        format!(
            "apiVersion: nodeboot.io/v1alpha1\nkind: NodeGroup\nmetadata: {{name: g}}\nspec:\n  labels: {labels}\n  nodes:\n{nodes}"
        )
    };
    let ok_node = "  - {name: n1, macs: [\"02:00:00:00:00:01\"]}\n";
    let five_thousand_and_one: String = (0..5001)
        .map(|i| {
            format!(
                "  - {{name: n{i}, macs: [\"02:00:00:{:02x}:{:02x}:{:02x}\"]}}\n",
                i >> 16,
                (i >> 8) & 0xff,
                i & 0xff
            )
        })
        .collect();
    let cases = [
        ("malformed MAC", group("  - {name: n1, macs: [\"02:00:00:00:00:0g\"]}\n", "{}"), "spec.nodes[0].macs[0]: Invalid value"),
        ("reserved label prefix", group(ok_node, "{nodeboot.io/known: \"true\"}"), "the nodeboot.io/ label prefix is reserved"),
        ("bad label key", group(ok_node, "{\"bad key\": x}"), "label keys must be Kubernetes qualified names"),
        ("bad label value", group(ok_node, "{role: \"x || y\"}"), "spec.labels.role: Invalid value"),
        ("bad IP", group("  - {name: n1, macs: [\"02:00:00:00:00:01\"], ip: 10.0.0.300}\n", "{}"), "must be an IPv4 or IPv6 address"),
        ("duplicate node name", group(&format!("{ok_node}{ok_node}"), "{}"), "Duplicate value"),
        ("5001 nodes", group(&five_thousand_and_one, "{}"), "must have at most 5000 items"),
        (
            "userData and userDataSecretRef",
            "apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {name: b}\nspec:\n  kernel: http://i/k\n  cloudInit:\n    userData: \"#cloud-config\"\n    userDataSecretRef: {name: s, key: k}\n".to_owned(),
            "set userData or userDataSecretRef, not both",
        ),
        (
            "ftp kernel",
            "apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {name: b}\nspec:\n  kernel: ftp://i/k\n".to_owned(),
            "spec.kernel: Invalid value",
        ),
        (
            "selector operator",
            "apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {name: b}\nspec:\n  kernel: http://i/k\n  nodeSelector: {matchExpressions: [{key: role, operator: Equals, values: [x]}]}\n".to_owned(),
            "supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\"",
        ),
        (
            "selector key",
            "apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {name: b}\nspec:\n  kernel: http://i/k\n  nodeSelector: {matchLabels: {\"bad key!\": x}}\n".to_owned(),
            "label keys must be Kubernetes qualified names",
        ),
        (
            "Exists with values",
            "apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {name: b}\nspec:\n  kernel: http://i/k\n  nodeSelector: {matchExpressions: [{key: role, operator: Exists, values: [x]}]}\n".to_owned(),
            "In and NotIn need at least one value; Exists and DoesNotExist take none",
        ),
    ];
    for (what, yaml, needle) in cases {
        let out = api.apply(&ns, &yaml);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} was accepted");
        assert!(
            stderr.contains(needle),
            "{what}: expected {needle:?} in:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_resolves_writes_status_and_serves_what_it_says() {
    let api = apiserver::shared();
    let ns = api.fresh_namespace("site");
    api.apply_ok(&ns, &examples_in(&ns));
    let mut op = operator(api, &ns, &[]).await;

    let started = Instant::now();
    eventually("status of both NodeGroups", Duration::from_secs(60), || {
        let g = group_status(api, &ns, "cabinet-x1000");
        let g2 = group_status(api, &ns, "cabinet-x1001");
        (g["status"]["assignedCount"] == 4 && g2["status"]["assignedCount"] == 2).then_some(())
    })
    .await;
    eprintln!(
        "example site resolved into status after {:?}",
        started.elapsed()
    );
    let g = group_status(api, &ns, "cabinet-x1000");
    assert_eq!(
        g["status"]["observedGeneration"],
        g["metadata"]["generation"]
    );
    assert_eq!(ready(&g).unwrap()["status"], "True");
    assert_eq!(node_status(&g, "x1000c0s0b0n0")["phase"], "Assigned");
    assert_eq!(
        node_status(&g, "x1000c0s0b0n0")["bootConfig"],
        "compute-rocky9"
    );
    let g2 = group_status(api, &ns, "cabinet-x1001");
    assert_eq!(
        node_status(&g2, "x1001c0s0b0n0")["bootConfig"],
        "gpu-rocky9"
    );
    let table = api.kubectl_ok(&["get", "ng,bc", "-n", &ns]);
    let row = table.lines().find(|l| l.contains("cabinet-x1000")).unwrap();
    assert_eq!(
        row.split_whitespace().skip(1).take(4).collect::<Vec<_>>(),
        ["4", "4", "0", "True"],
        "{table}"
    );
    let row = table.lines().find(|l| l.contains("gpu-rocky9")).unwrap();
    assert!(
        row.contains("http://images.example/rocky9-gpu/vmlinuz")
            && row.contains(" 2 ")
            && row.contains("True"),
        "{table}"
    );

    // The boot listener serves what status says.
    let (status, _, body) = op.get("/boot/v1/bootscript?mac=02:00:00:00:11:00").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("http://images.example/rocky9-gpu/vmlinuz")
            && body.contains("xname=x1001c0s0b0n0"),
        "{body}"
    );
    let (_, _, body) = op.get("/cloud-init/x1000c0s0b0n0/user-data").await;
    assert!(body.contains("*.* @@10.1.0.5:514"), "{body}");

    // One patch re-targets every matched node.
    api.patch_merge(
        &ns,
        "bc/compute-rocky9",
        r#"{"spec":{"kernel":"http://images.example/rocky10/vmlinuz"}}"#,
    );
    let started = Instant::now();
    for mac in [
        "02:00:00:00:10:00",
        "02:00:00:00:10:01",
        "02:00:00:00:10:10",
        "02:00:00:00:10:11",
    ] {
        op.wait_for(&format!("/boot/v1/bootscript?mac={mac}"), |b| {
            b.contains("rocky10/vmlinuz")
        })
        .await;
    }
    eprintln!(
        "kernel patch served to all 4 nodes after {:?}",
        started.elapsed()
    );
    let (_, _, gpu) = op.get("/boot/v1/bootscript?mac=02:00:00:00:11:00").await;
    assert!(gpu.contains("rocky9-gpu/vmlinuz"));
    eventually(
        "observedGeneration 2 on compute-rocky9",
        Duration::from_secs(30),
        || {
            (api.get_json(&ns, "bc/compute-rocky9")["status"]["observedGeneration"] == 2)
                .then_some(())
        },
    )
    .await;

    // A tie: Conflict in NodeGroup status, on both BootConfigs, and as events.
    api.apply_ok(&ns, "apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {name: rival}\nspec:\n  nodeSelector: {matchLabels: {cabinet: x1000}}\n  kernel: http://images.example/rival/vmlinuz\n");
    let g = eventually("tie reported", Duration::from_secs(30), || {
        let g = group_status(api, &ns, "cabinet-x1000");
        (g["status"]["conflictCount"] == 4).then_some(g)
    })
    .await;
    let n = node_status(&g, "x1000c0s0b0n0");
    assert_eq!(n["phase"], "Conflict");
    assert!(
        n["message"]
            .as_str()
            .unwrap()
            .contains("BootConfigs compute-rocky9, rival tie at priority 0"),
        "{n}"
    );
    assert_eq!(ready(&g).unwrap()["status"], "False");
    op.wait_for("/boot/v1/bootscript?mac=02:00:00:00:10:00", |b| {
        b.contains("in conflict")
    })
    .await;
    let rival = eventually("rival status", Duration::from_secs(30), || {
        let bc = api.get_json(&ns, "bc/rival");
        ready(&bc).is_some().then_some(bc)
    })
    .await;
    assert_eq!(ready(&rival).unwrap()["reason"], "Conflict");
    assert!(
        rival["status"]["message"]
            .as_str()
            .unwrap()
            .contains("ties with compute-rocky9 on 4 nodes"),
        "{rival}"
    );
    eventually("Conflict events", Duration::from_secs(30), || {
        let evs = events(api, &ns);
        let on = |kind: &str, name: &str| {
            evs.iter().any(|e| {
                e["reason"] == "Conflict"
                    && e["involvedObject"]["kind"] == kind
                    && e["involvedObject"]["name"] == name
            })
        };
        (on("NodeGroup", "cabinet-x1000") && on("BootConfig", "rival")).then_some(())
    })
    .await;
    api.kubectl_ok(&["delete", "bc", "rival", "-n", &ns]);

    // A duplicate MAC across NodeGroups: Conflict for both nodes, named in the message.
    api.apply_ok(&ns, "apiVersion: nodeboot.io/v1alpha1\nkind: NodeGroup\nmetadata: {name: spares}\nspec:\n  labels: {role: compute}\n  nodes:\n  - {name: spare0, macs: [\"02-00-00-00-11-01\"]}\n");
    let g2 = eventually("duplicate MAC reported", Duration::from_secs(30), || {
        let g = group_status(api, &ns, "cabinet-x1001");
        (g["status"]["conflictCount"] == 1).then_some(g)
    })
    .await;
    let n = node_status(&g2, "x1001c0s0b0n1");
    assert!(
        n["message"]
            .as_str()
            .unwrap()
            .contains("MAC 02:00:00:00:11:01 is also claimed by spare0 (NodeGroup spares)"),
        "{n}"
    );
    let (_, _, body) = op.get("/boot/v1/bootscript?mac=02:00:00:00:11:01").await;
    assert!(
        body.contains("in conflict") && !body.contains("kernel "),
        "{body}"
    );

    // A template that stops compiling: Ready=False naming the served generation, event, and
    // the last good version keeps being served.
    let (_, _, before) = op.get("/boot/v1/bootscript?mac=02:00:00:00:11:00").await;
    api.patch_merge(
        &ns,
        "bc/gpu-rocky9",
        r#"{"spec":{"params":"console={{ oops"}}"#,
    );
    let bc = eventually("InvalidSpec on gpu-rocky9", Duration::from_secs(30), || {
        let bc = api.get_json(&ns, "bc/gpu-rocky9");
        (ready(&bc).is_some_and(|c| c["reason"] == "InvalidSpec")).then_some(bc)
    })
    .await;
    let msg = ready(&bc).unwrap()["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("template params: syntax error") && msg.contains("still serving generation 1"),
        "{msg}"
    );
    assert_eq!(
        op.get("/boot/v1/bootscript?mac=02:00:00:00:11:00").await.2,
        before
    );
    eventually("InvalidSpec event", Duration::from_secs(30), || {
        events(api, &ns)
            .iter()
            .any(|e| e["reason"] == "InvalidSpec" && e["involvedObject"]["name"] == "gpu-rocky9")
            .then_some(())
    })
    .await;

    // SIGTERM: drain and exit cleanly.
    let exit = op.terminate();
    assert!(exit.success(), "{exit:?}:\n{}", op.logs());
}

fn lease_holder(api: &TestApi, ns: &str, lease: &str) -> Option<String> {
    let out = api.kubectl(&[
        "get",
        "lease",
        lease,
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    let holder = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !holder.is_empty()).then_some(holder)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_one_leader_both_serve_and_hand_over() {
    let api = apiserver::shared();
    let ns = api.fresh_namespace("ha");
    api.apply_ok(&ns, &examples_in(&ns));
    let lease = "nodeboot-leader";
    let election = |id| {
        [
            "--leader-election",
            "on",
            "--lease-namespace",
            ns.as_str(),
            "--lease-duration",
            "6",
            "--identity",
            id,
        ]
    };
    let a = operator(api, &ns, &election("replica-a")).await;
    eventually("replica-a leads", Duration::from_secs(30), || {
        (lease_holder(api, &ns, lease).as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let b = operator(api, &ns, &election("replica-b")).await;
    eventually("status written", Duration::from_secs(30), || {
        (group_status(api, &ns, "cabinet-x1000")["status"]["assignedCount"] == 4).then_some(())
    })
    .await;
    // Both serve the same answers.
    for mac in [
        "02:00:00:00:10:00",
        "02:00:00:00:11:01",
        "02:00:00:00:99:99",
    ] {
        let path = format!("/boot/v1/bootscript?mac={mac}");
        let (_, _, from_a) = a.get(&path).await;
        let (_, _, from_b) = b.get(&path).await;
        let normalize = |s: &str, base: &str| s.replace(base, "BASE");
        assert_eq!(
            normalize(&from_a, &a.boot),
            normalize(&from_b, &b.boot),
            "{mac}"
        );
    }
    // Only the leader wrote status: every status field is managed by replica-a's manager.
    assert_eq!(lease_holder(api, &ns, lease).as_deref(), Some("replica-a"));
    assert!(
        !b.logs().contains("status written"),
        "the follower wrote status:\n{}",
        b.logs()
    );

    // The leader dies without releasing the lease; the follower takes over, serving all along.
    let killed_at = Instant::now();
    let pid = a.pid();
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let mut served = 0;
    loop {
        let (status, _, body) = b.get("/boot/v1/bootscript?mac=02:00:00:00:10:00").await;
        assert!(
            status == 200 && body.contains("kernel --name kernel"),
            "serving stopped: {status} {body}"
        );
        served += 1;
        if lease_holder(api, &ns, lease).as_deref() == Some("replica-b") {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "no hand-over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "hand-over after {:?} (lease duration 6 s), {served} requests served meanwhile",
        killed_at.elapsed()
    );
    // The new leader writes status.
    api.patch_merge(&ns, "bc/compute-rocky9", r#"{"spec":{"priority":1}}"#);
    eventually("replica-b writes status", Duration::from_secs(30), || {
        (api.get_json(&ns, "bc/compute-rocky9")["status"]["observedGeneration"] == 2).then_some(())
    })
    .await;
    drop(a);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_operator_serves_a_broken_bootconfigs_last_good_version() {
    let api = apiserver::shared();
    let ns = api.fresh_namespace("lastgood");
    api.apply_ok(&ns, &examples_in(&ns));
    let mut op = operator(api, &ns, &[]).await;
    eventually("lastGood recorded", Duration::from_secs(60), || {
        (api.get_json(&ns, "bc/compute-rocky9")["status"]["lastGood"]["generation"] == 1)
            .then_some(())
    })
    .await;
    // A change whose template does not compile: generation 1 goes on being served...
    api.patch_merge(
        &ns,
        "bc/compute-rocky9",
        r#"{"spec":{"kernel":"http://images.example/broken/vmlinuz","params":"x={{ oops"}}"#,
    );
    eventually("InvalidSpec", Duration::from_secs(60), || {
        let bc = api.get_json(&ns, "bc/compute-rocky9");
        (ready(&bc).is_some_and(|c| c["reason"] == "InvalidSpec")
            && bc["status"]["observedGeneration"] == 2)
            .then_some(())
    })
    .await;
    let bc = api.get_json(&ns, "bc/compute-rocky9");
    assert_eq!(bc["status"]["lastGood"]["generation"], 1, "{bc}");
    let script = "/boot/v1/bootscript?mac=02:00:00:00:10:00";
    let (_, _, body) = op.get(script).await;
    assert!(body.contains("rocky9/vmlinuz"), "{body}");
    // ...also by an operator that starts now, knowing only what the cluster holds.
    assert!(op.terminate().success());
    let op = operator(api, &ns, &[]).await;
    let (status, _, body) = op.get(script).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("http://images.example/rocky9/vmlinuz"),
        "the restarted operator lost the last good version:\n{body}\n{}",
        op.logs()
    );
    let report = op.node_report("x1000c0s0b0n0").await;
    assert_eq!(report["servedGeneration"], 1, "{report}");
}

/// How long the outage test keeps kube-apiserver down.
const OUTAGE: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread")]
async fn serving_survives_an_api_server_outage_and_catches_up() {
    let api = apiserver::dedicated("outage");
    let ns = api.fresh_namespace("outage");
    api.apply_ok(&ns, &examples_in(&ns));
    let op = operator(&api, &ns, &[]).await;
    eventually("status", Duration::from_secs(60), || {
        (group_status(&api, &ns, "cabinet-x1000")["status"]["assignedCount"] == 4).then_some(())
    })
    .await;

    // Stop kube-apiserver (etcd keeps its data), remembering how to start it again.
    let pid_file = api.state.join("kube-apiserver.pid");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // An abrupt stop, as a crash or a network cut would be.
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    // Gone, or a zombie nobody reaps (the script that started it has exited).
    eventually("kube-apiserver gone", Duration::from_secs(30), || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        matches!(state, None | Some("Z" | "X")).then_some(())
    })
    .await;
    assert!(
        !api.kubectl(&["get", "ns", "--request-timeout=2s"])
            .status
            .success(),
        "API server still answers"
    );

    // Boot answers go on from the last state, for an outage long enough that a watch backoff
    // which grows with it (kube's default: 0.8 s doubling to 30 s) would wait about 25 s after
    // the API server returns.
    let outage = Instant::now();
    while outage.elapsed() < OUTAGE {
        let (status, _, body) = op.get("/boot/v1/bootscript?mac=02:00:00:00:10:00").await;
        assert_eq!(status, 200);
        assert!(
            body.contains("http://images.example/rocky9/vmlinuz"),
            "{body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(get(&format!("{}/readyz", op.admin)).await.0, 200);

    // Back again: the operator reconnects by itself and follows new changes.
    let log = std::fs::File::options()
        .append(true)
        .create(true)
        .open(api.state.join("kube-apiserver.log"))
        .unwrap();
    // Stopped by `drop(api)` through the pid file, or by the kernel if the test process dies.
    let mut child = dies_with_spawning_thread(&mut std::process::Command::new(&argv[0]))
        .args(&argv[1..])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    std::fs::write(&pid_file, child.id().to_string()).unwrap();
    eventually("API server back", Duration::from_secs(60), || {
        api.kubectl(&["get", "--raw", "/readyz"])
            .status
            .success()
            .then_some(())
    })
    .await;
    api.patch_merge(
        &ns,
        "bc/compute-rocky9",
        r#"{"spec":{"kernel":"http://images.example/after/vmlinuz"}}"#,
    );
    let took = op
        .wait_for("/boot/v1/bootscript?mac=02:00:00:00:10:00", |b| {
            b.contains("after/vmlinuz")
        })
        .await;
    eprintln!(
        "after a {OUTAGE:?} API server outage, a BootConfig patch made once it was back was served after {took:?}"
    );
    // The watches retry at most 2 s apart, so the change is served within the issue's 5 s;
    // the bound is looser to stay clear of a loaded machine, and far below the ~25 s of a
    // backoff that grows with the outage.
    assert!(
        took < Duration::from_secs(10),
        "a change after the outage took {took:?} to be served"
    );
    eventually("status caught up", Duration::from_secs(60), || {
        (api.get_json(&ns, "bc/compute-rocky9")["status"]["observedGeneration"] == 2).then_some(())
    })
    .await;
    drop(op);
    // Stops etcd and the restarted API server (its pid is in the state directory now).
    drop(api);
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_nodes_in_four_groups() {
    let api = apiserver::shared();
    let ns = api.fresh_namespace("scale");
    let mut yaml = String::from(
        "apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {name: compute}\nspec:\n  nodeSelector: {matchLabels: {role: compute}}\n  kernel: http://img/compute/vmlinuz\n  initrd: http://img/compute/initrd\n  params: console=ttyS0\n",
    );
    for g in 0..4u32 {
        yaml.push_str(&format!(
            "---\napiVersion: nodeboot.io/v1alpha1\nkind: NodeGroup\nmetadata: {{name: cab{g}}}\nspec:\n  labels: {{role: compute}}\n  nodes:\n"
        ));
        for n in 0..5000u32 {
            let i = g * 5000 + n;
            // The last group is as full as a real inventory: with its managedFields the spec
            // leaves no room in the object for a 5000-entry status list.
            let extra = if g == 3 {
                format!(
                    ", ip: 10.3.{}.{}, hostname: nid{i:06}, arch: x86_64",
                    n >> 8,
                    n & 0xff
                )
            } else {
                String::new()
            };
            yaml.push_str(&format!(
                "  - {{name: x{g}c0s{n}b0n0, macs: [\"02:10:00:{:02x}:{:02x}:{:02x}\"], nid: {i}{extra}}}\n",
                i >> 16,
                (i >> 8) & 0xff,
                i & 0xff
            ));
        }
    }
    let path = std::env::temp_dir().join(format!("nodeboot-scale-{}.yaml", std::process::id()));
    std::fs::write(&path, &yaml).unwrap();
    // Server-side apply: a 5000-node object is too big for kubectl's last-applied annotation.
    api.kubectl_ok(&[
        "apply",
        "--server-side",
        "-n",
        &ns,
        "-f",
        &path.display().to_string(),
    ]);
    let started = Instant::now();
    let op = operator(api, &ns, &[]).await;
    eventually("20,000 nodes in status", Duration::from_secs(300), || {
        (0..4)
            .all(|g| group_status(api, &ns, &format!("cab{g}"))["status"]["assignedCount"] == 5000)
            .then_some(())
    })
    .await;
    eprintln!(
        "20,000 nodes: operator start to all status written: {:?}",
        started.elapsed()
    );
    let (_, _, body) = op.get("/boot/v1/bootscript?mac=02:10:00:00:4e:1f").await;
    assert!(body.contains("xname=x3c0s4999b0n0 nid=19999"), "{body}");
    let (_, _, body) = op.get("/boot/v1/bootscript?nid=12345").await;
    assert!(body.contains("xname=x2c0s2345b0n0"), "{body}");
    let _ = std::fs::remove_file(path);
}
