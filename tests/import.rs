//! `nodeboot import`: each OpenCHAMI format from files and from a live HTTP service, the
//! report, `--verify` and its exit code, and the manifests served by `nodeboot serve` (with
//! the drop-in reads `ochami` uses). The site is generated (tests/support/openchami.rs).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use support::Nodeboot;
use support::openchami::{self as site, Node};

fn import(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodeboot"))
        .arg("import")
        .args(args)
        .output()
        .expect("nodeboot runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn paths(p: &[PathBuf]) -> Vec<String> {
    p.iter().map(|p| p.display().to_string()).collect()
}

/// Runs an import of `sources` into a new `out` directory, with `extra` flags.
fn run_import(sources: &[String], out: &Path, extra: &[&str]) -> Output {
    let out_dir = out.display().to_string();
    let mut args: Vec<&str> = sources.iter().map(String::as_str).collect();
    args.extend(["--out", &out_dir]);
    args.extend(extra);
    import(&args)
}

/// Every written file by kind prefix (`nodegroup`, `bootconfig`, `secret`): name -> YAML.
fn written(out: &Path, kind: &str) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for entry in std::fs::read_dir(out).expect("out dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(&format!("{kind}-")) {
            let text = std::fs::read_to_string(&path).expect("read");
            map.insert(name, serde_yaml_ng::from_str(&text).expect("YAML"));
        }
    }
    map
}

fn nodes_in(groups: &BTreeMap<String, Value>) -> Vec<Value> {
    groups
        .values()
        .flat_map(|g| g["spec"]["nodes"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn bss_etcd_smd_and_cloud_init_from_files() {
    let nodes = site::nodes(3000);
    let dir = tempfile::tempdir().unwrap();
    let mut sources = site::write_smd(dir.path(), &nodes);
    sources.push(site::write_json(
        dir.path(),
        "bss.json",
        &site::bss_etcd(&nodes),
    ));
    sources.push(site::write_json(
        dir.path(),
        "ci-groups.json",
        &site::ci_groups(),
    ));
    sources.push(site::write_json(
        dir.path(),
        "ci-defaults.json",
        &site::ci_defaults(),
    ));
    sources.push(site::write_json(
        dir.path(),
        "ci-instances.json",
        &site::ci_instances(&nodes),
    ));
    let out = dir.path().join("out");
    let result = run_import(&paths(&sources), &out, &["--namespace", "hpc", "--verify"]);
    let stdout = text(&result);

    assert!(result.status.success(), "{stdout}");

    // The report: what each source was read as, and every object that did not map, with why.
    for needle in [
        "BSS bootparameters (etcd back end",
        "SMD State/Components (3002 components)",
        "cloud-init cluster defaults",
        "SMD component x1000c0s0b0: Type NodeBMC is not a node",
        "SMD component x1000: Type Cabinet is not a node",
        "ComponentID 'x1000c0s0b0' is no node in the inventory",
        "BSS key x9999c0s0b0n0: a host key no node in the inventory has",
        "BSS key 02:ff:ee:dd:cc:01: a host key no node",
        "BSS key Unknown-ppc64le: architecture 'ppc64le' is none nodeboot tells apart",
        "params token spire_join_token=${SPIRE_JOIN_TOKEN}: a SPIRE join token",
        "SMD group empty: none of its members is a node",
        "cloud-init group admins file: its file holds a 'passwd' key; vendor-data lives in BootConfigs",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    // A node with an xname key and a MAC key: BSS looks the xname up first.
    let both = nodes
        .iter()
        .find(|n| site::has_xname_key(n) && site::has_mac_key(n))
        .expect("a node with both keys");
    assert!(
        stdout.contains(&format!(
            "BSS key {}: node {} already takes BSS key {}",
            both.macs[0], both.xname, both.xname
        )),
        "{stdout}"
    );

    // The full report lists every input object: each node component, each BSS key.
    let report = std::fs::read_to_string(out.join("import-report.txt")).unwrap();
    for n in nodes.iter().step_by(97) {
        assert!(
            report.contains(&format!(
                "SMD component {} -> node {} of NodeGroup",
                n.xname, n.xname
            )),
            "{}",
            n.xname
        );
    }
    assert!(
        report.contains("BSS key Default -> BootConfig bss-default (every node, priority 100)")
    );
    assert!(report.contains("BSS key Application -> BootConfig bss-role-application"));
    assert!(
        report
            .contains("BSS image http://images.example/compute/vmlinuz -> its params are appended")
    );

    // NodeGroups hold every node once, cut by role and groups, at most 1000 each.
    let groups = written(&out, "nodegroup");
    let all = nodes_in(&groups);
    assert_eq!(all.len(), 3000);
    assert!(groups.values().all(|g| g["metadata"]["namespace"] == "hpc"));
    assert!(
        groups
            .values()
            .all(|g| g["spec"]["nodes"].as_array().unwrap().len() <= 1000)
    );
    let gpu = groups
        .values()
        .find(|g| g["spec"]["labels"]["group.openchami.io/gpu"] == "true")
        .expect("a gpu NodeGroup");
    assert_eq!(gpu["spec"]["labels"]["role"], "Compute");
    assert_eq!(
        gpu["spec"]["metaData"]["instance_data"]["v1"]["vendor_data"]["groups"]["gpu"]["cuda"],
        "12.4"
    );
    assert_eq!(gpu["spec"]["metaData"]["Global"]["ntp"], "10.1.0.2");
    assert_eq!(gpu["spec"]["metaData"]["cluster-name"], "demo");
    // The cloud-init server's host name rule, and instance info where it was given.
    let node = |xname: &str| all.iter().find(|n| n["name"] == xname).unwrap().clone();
    assert_eq!(node(&nodes[41].xname)["hostname"], "nid0042");
    assert_eq!(node(&nodes[101].xname)["hostname"], "login1");
    assert_eq!(node(&nodes[0].xname)["labels"]["subrole"], "Master");

    // BootConfigs: the precedence as priorities, discovery per arch.
    let configs = written(&out, "bootconfig");
    let config = |name: &str| configs[&format!("bootconfig-{name}.yaml")]["spec"].clone();
    assert_eq!(config("bss-default")["priority"], 100);
    assert_eq!(config("bss-default")["nodeSelector"], serde_json::json!({}));
    assert_eq!(config("bss-role-application")["priority"], 200);
    assert_eq!(
        config("bss-role-application")["params"],
        "root=live:http://images.example/uan/rootfs.squashfs"
    );
    assert_eq!(
        config("bss-unknown-x86-64")["nodeSelector"]["matchLabels"],
        serde_json::json!({"nodeboot.io/known": "false", "nodeboot.io/arch": "x86_64"})
    );
    // Image params appended, template markers kept literal.
    assert_eq!(
        config("bss-default")["params"],
        "root=live:http://images.example/compute/rootfs.squashfs quiet console=ttyS0,115200 rd.shell"
    );
    let debug = configs
        .values()
        .find(|c| {
            c["spec"]["kernel"] == site::K_DEBUG && c["spec"]["cloudInit"]["userData"].is_string()
        })
        .expect("the debug-image BootConfig");
    assert_eq!(debug["spec"]["priority"], 300);
    assert!(
        debug["spec"]["params"]
            .as_str()
            .unwrap()
            .starts_with("{% raw %}")
    );
    // Group files as one vendor-data document, a part per group.
    let vendor = config("bss-default")["cloudInit"]["vendorData"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        vendor.contains("\"group.openchami.io/gpu\" in node.labels"),
        "{vendor}"
    );
    assert!(
        vendor.contains("systemctl, enable, --now, slurmd"),
        "{vendor}"
    );

    // Secret material goes to a Secret opted in for nodeboot, never into a BootConfig.
    let secrets = written(&out, "secret");
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    let secret = secrets.values().next().unwrap();
    assert_eq!(
        secret["metadata"]["labels"]["nodeboot.io/user-data"],
        "true"
    );
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("secret-") {
            let body = std::fs::read_to_string(&path).unwrap();
            assert!(!body.contains(site::PASSWORD), "{name} holds the password");
        }
    }
    let secret_config = configs
        .values()
        .find(|c| !c["spec"]["cloudInit"]["userDataSecretRef"].is_null())
        .expect("the BootConfig that references it");
    assert_eq!(
        secret_config["spec"]["cloudInit"]["userDataSecretRef"]["name"],
        secret["metadata"]["name"]
    );

    // --verify: every node and MAC compared, only allowed differences.
    for needle in [
        "checked 3000 nodes, 4000 boot requests",
        "allowed",
        "BSS nid<N> key",
        "SPIRE join token",
        "BSS MAC key",
        "every difference is an allowed one",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("DIFFERS"), "{stdout}");
    let kept = std::fs::read_to_string(out.join("verify-report.txt")).unwrap();
    assert!(stdout.contains(&kept), "{kept}");
}

#[test]
fn a_node_that_would_boot_otherwise_fails_the_check() {
    // An s3:// image cannot be served by nodeboot: that key does not map, its node falls to
    // Default, and --verify says so and exits non-zero.
    let nodes = site::nodes(120);
    let dir = tempfile::tempdir().unwrap();
    let mut bss = site::bss_etcd(&nodes);
    let victim = &nodes[20];
    bss.as_array_mut().unwrap().push(serde_json::json!({
        "hosts": [victim.xname], "kernel": "s3://boot-images/special/vmlinuz",
        "params": "root=live:s3://boot-images/special/rootfs"}));
    let mut sources = site::write_smd(dir.path(), &nodes);
    sources.push(site::write_json(dir.path(), "bss.json", &bss));
    let out = dir.path().join("out");
    let result = run_import(&paths(&sources), &out, &["--verify"]);
    let stdout = text(&result);
    assert!(!result.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "BSS key {}: kernel s3://boot-images/special/vmlinuz is an s3:// URL",
            victim.xname
        )),
        "{stdout}"
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("DIFFERS") && l.contains("kernel differs"))
        .unwrap_or_else(|| panic!("no kernel row in:\n{stdout}"));
    assert!(line.contains(&victim.xname), "{line}");
    assert!(
        stdout.contains("requests differ beyond the allowed differences"),
        "{stdout}"
    );
    assert!(stdout.contains("nodeboot: --verify:"), "{stdout}");
}

#[test]
fn bss_postgres_export() {
    let nodes = site::nodes(1200);
    let dir = tempfile::tempdir().unwrap();
    let mut sources = site::write_smd(dir.path(), &nodes);
    sources.push(site::write_json(
        dir.path(),
        "bss-pg.json",
        &site::bss_postgres(&nodes),
    ));
    let out = dir.path().join("out");
    let result = run_import(&paths(&sources), &out, &["--verify"]);
    let stdout = text(&result);
    assert!(result.status.success(), "{stdout}");
    assert!(
        stdout.contains("BSS bootparameters (postgres back end, 3 elements)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("BSS key x9999c9s9b0n0: a host key no node"),
        "{stdout}"
    );
    assert!(
        stdout.contains("BSS Postgres entry by name or NID"),
        "{stdout}"
    );
    let configs = written(&out, "bootconfig");
    assert_eq!(configs.len(), 2, "{:?}", configs.keys());
    // Node 0 is named by host and its MAC is in the debug entry: the MAC wins (BSS's Postgres
    // back end answers a boot by MAC from MAC entries).
    let groups = written(&out, "nodegroup");
    let all = nodes_in(&groups);
    let label = |i: usize| {
        all.iter()
            .find(|n| n["name"] == nodes[i].xname.as_str())
            .unwrap()["labels"]["openchami.io/bss-params"]
            .clone()
    };
    let debug_name = configs
        .values()
        .find(|c| c["spec"]["kernel"] == site::K_DEBUG)
        .unwrap()["metadata"]["name"]
        .clone();
    assert_eq!(label(0), debug_name);
    assert_ne!(label(1), debug_name);
    // Nodes no entry names boot nothing in either.
    assert!(label(1002).is_null());
    assert!(
        stdout.contains("every difference is an allowed one"),
        "{stdout}"
    );
}

#[test]
fn inventory_boot_service_and_metadata_service() {
    let nodes = site::nodes(300);
    let dir = tempfile::tempdir().unwrap();
    let sources = vec![
        site::write_text(
            dir.path(),
            "inventory.yaml",
            &site::static_inventory(&nodes),
        ),
        site::write_text(dir.path(), "boot-service.yaml", &site::boot_service(&nodes)),
        site::write_text(
            dir.path(),
            "metadata-service.yaml",
            &site::metadata_service(&nodes),
        ),
    ];
    let out = dir.path().join("out");
    let result = run_import(&paths(&sources), &out, &["--verify"]);
    let stdout = text(&result);
    assert!(result.status.success(), "{stdout}");
    for needle in [
        "ochami static inventory (300 nodes, 0 BMCs)",
        "boot-service BootConfiguration s3-image: kernel s3://boot-images/uan/vmlinuz is an s3:// URL",
        "boot.openchami.io/v1 BMC x1000c0s0b0: a kind nodeboot does not import",
        "checked 300 nodes",
        "no differences",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    // Every object of every source has its line: a node described by the inventory and by
    // boot-service twice.
    let report = std::fs::read_to_string(out.join("import-report.txt")).unwrap();
    for object in [
        format!(
            "inventory node {x} -> node {x} of NodeGroup",
            x = nodes[7].xname
        ),
        format!(
            "boot.openchami.io/v1 Node {x} -> node {x} of NodeGroup",
            x = nodes[7].xname
        ),
    ] {
        assert!(report.contains(&object), "{object}");
    }
    let configs = written(&out, "bootconfig");
    let spec = |name: &str| configs[&format!("bootconfig-{name}.yaml")]["spec"].clone();
    // Winners carry a label naming their BootConfig. "*" matches every node with 50, so the
    // catch-all (1) wins for none: it is reported, not written.
    assert_eq!(spec("bs-one-mac")["priority"], 500);
    assert!(!configs.contains_key("bootconfig-bs-fallback.yaml"));
    assert!(
        stdout.contains("boot-service BootConfiguration fallback: it wins for no node"),
        "{stdout}"
    );
    let all = nodes_in(&written(&out, "nodegroup"));
    let winner = |i: usize| {
        all.iter()
            .find(|n| n["name"] == nodes[i].xname.as_str())
            .unwrap()["labels"]["openchami.io/boot-configuration"]
            .clone()
    };
    // MAC 100 beats everything; three-hosts (50, priority 90) beats "*" (50, priority 5).
    assert_eq!(winner(24), "bs-one-mac");
    assert_eq!(winner(25), "bs-one-nid");
    assert_eq!(winner(21), "bs-three-hosts");
    // A gpu node: gpu scores 50 (two groups), ties with "*" and wins on priority.
    assert_eq!(winner(16), "bs-three-hosts");
    assert_eq!(winner(32), "bs-gpu");
    // A compute-only node: "*" (50) outscores compute (25).
    assert_eq!(winner(5), "bs-everyone");
    // metadata-service's server-side template reaches the node as a Jinja part cloud-init
    // renders there.
    let vendor = spec("bs-one-mac")["cloudInit"]["vendorData"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        vendor.contains("Content-Type: text/jinja2")
            && vendor.contains("## template: jinja\n#cloud-config"),
        "{vendor}"
    );
    // Host names: boot-service's, else metadata-service's instance info.
    let host = |i: usize| {
        all.iter()
            .find(|n| n["name"] == nodes[i].xname.as_str())
            .unwrap()["hostname"]
            .clone()
    };
    assert_eq!(host(2), "special-one");
    assert_eq!(host(5), "cn006");
}

/// A tiny stand-in for a running OpenCHAMI: SMD, BSS (bootparameters and bootscript) and the
/// cloud-init server behind one bearer token. `lie` makes BSS answer one MAC with another
/// kernel.
async fn openchami_server(nodes: Vec<Node>, lie: Arc<AtomicBool>) -> String {
    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::get;

    #[derive(Clone)]
    struct S {
        nodes: Arc<Vec<Node>>,
        bss: Arc<Value>,
        lie: Arc<AtomicBool>,
    }
    fn authorized(h: &HeaderMap) -> bool {
        h.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer t0ken")
    }
    let bss = serde_json::json!([
        {"kernel": site::K_COMPUTE, "params": "console=ttyS0,115200"},
        {"hosts": ["Default"], "kernel": site::K_COMPUTE, "initrd": site::I_COMPUTE, "params": "root=live:http://images.example/compute/rootfs.squashfs"},
    ]);
    let state = S {
        nodes: Arc::new(nodes),
        bss: Arc::new(bss),
        lie,
    };
    let json = |f: fn(&S) -> Value| {
        move |State(s): State<S>, h: HeaderMap| async move {
            if !authorized(&h) {
                return StatusCode::UNAUTHORIZED.into_response();
            }
            axum::Json(f(&s)).into_response()
        }
    };
    // BSS's script for the Default key, as BSS writes it (referral token, its own ds=).
    let bootscript = |State(s): State<S>, Query(q): Query<BTreeMap<String, String>>| async move {
        let mac = q.get("mac").cloned().unwrap_or_default();
        let Some(n) = s.nodes.iter().find(|n| n.macs.contains(&mac)) else {
            return (
                StatusCode::OK,
                "#!ipxe\nsleep 10\nchain http://bss/boot/v1/bootscript\n".to_owned(),
            );
        };
        let kernel = if s.lie.load(Ordering::Relaxed) && n.i == 7 {
            site::K_DEBUG
        } else {
            site::K_COMPUTE
        };
        (
            StatusCode::OK,
            format!(
                "#!ipxe\nkernel --name kernel {kernel} initrd=initrd root=live:http://images.example/compute/rootfs.squashfs console=ttyS0,115200 xname={} nid={} bss_referral_token=8d2f ds=nocloud-net;s=http://bss.example:8081/ || goto boot_retry\ninitrd --name initrd {} || goto boot_retry\nboot || goto boot_retry\n:boot_retry\nsleep 30\nchain https://bss/boot/v1/bootscript?mac={mac}&retry=1\n",
                n.xname,
                n.nid,
                site::I_COMPUTE
            ),
        )
    };
    let app = axum::Router::new()
        .route(
            "/hsm/v2/State/Components",
            get(json(|s| site::smd_components(&s.nodes))),
        )
        .route(
            "/hsm/v2/Inventory/EthernetInterfaces",
            get(json(|s| site::smd_interfaces(&s.nodes))),
        )
        .route("/boot/v1/bootparameters", get(json(|s| (*s.bss).clone())))
        .route("/cloud-init/admin/groups", get(json(|_| site::ci_groups())))
        .route(
            "/cloud-init/admin/cluster-defaults",
            get(json(|_| site::ci_defaults())),
        )
        .route("/boot/v1/bootscript", get(bootscript))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread")]
async fn live_services_by_url_with_a_token_and_a_live_bss_check() {
    let nodes = site::nodes(150);
    let lie = Arc::new(AtomicBool::new(false));
    let base = openchami_server(nodes.clone(), lie.clone()).await;
    let urls: Vec<String> = [
        "/hsm/v2/State/Components",
        "/hsm/v2/Inventory/EthernetInterfaces",
        "/boot/v1/bootparameters",
        "/cloud-init/admin/groups",
        "/cloud-init/admin/cluster-defaults",
    ]
    .iter()
    .map(|p| format!("{base}{p}"))
    .collect();
    let dir = tempfile::tempdir().unwrap();
    let run = |out: PathBuf, extra: Vec<String>| {
        let urls = urls.clone();
        tokio::task::spawn_blocking(move || {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            run_import(&urls, &out, &extra)
        })
    };

    // Without the token the services refuse, and the error says what to do.
    let result = run(dir.path().join("no-token"), vec![]).await.unwrap();
    assert!(!result.status.success());
    assert!(
        text(&result).contains("401 Unauthorized (give an access token with --token)"),
        "{}",
        text(&result)
    );

    // With it: imported, and checked against the export and against BSS's live scripts.
    let bss = format!("--bss-url={base}");
    let out = dir.path().join("live");
    let result = run(
        out.clone(),
        vec!["--token=t0ken".into(), "--verify".into(), bss.clone()],
    )
    .await
    .unwrap();
    let stdout = text(&result);
    assert!(result.status.success(), "{stdout}");
    assert!(
        stdout.contains("checked 150 nodes, 200 boot requests"),
        "{stdout}"
    );
    assert!(stdout.contains("no differences"), "{stdout}");

    // The same data from files gives the same manifests.
    let files = tempfile::tempdir().unwrap();
    let mut sources = site::write_smd(files.path(), &nodes);
    sources.truncate(2);
    sources.push(site::write_json(
        files.path(),
        "bss.json",
        &serde_json::json!([
            {"kernel": site::K_COMPUTE, "params": "console=ttyS0,115200"},
            {"hosts": ["Default"], "kernel": site::K_COMPUTE, "initrd": site::I_COMPUTE, "params": "root=live:http://images.example/compute/rootfs.squashfs"},
        ]),
    ));
    sources.push(site::write_json(files.path(), "g.json", &site::ci_groups()));
    sources.push(site::write_json(
        files.path(),
        "d.json",
        &site::ci_defaults(),
    ));
    let from_files = files.path().join("out");
    let result = run_import(&paths(&sources), &from_files, &[]);
    assert!(result.status.success(), "{}", text(&result));
    for kind in ["nodegroup", "bootconfig"] {
        assert_eq!(written(&out, kind), written(&from_files, kind), "{kind}");
    }

    // When BSS serves a node something else, the live check finds it and fails.
    lie.store(true, Ordering::Relaxed);
    let result = run(
        dir.path().join("lie"),
        vec!["--token=t0ken".into(), "--verify".into(), bss],
    )
    .await
    .unwrap();
    let stdout = text(&result);
    assert!(!result.status.success(), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("DIFFERS") && l.contains("kernel differs"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.contains(&nodes[7].xname), "{row}");
    assert!(stdout.contains("BSS bootscript (live)"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn imported_manifests_served_with_the_reads_ochami_uses() {
    let nodes = site::nodes(600);
    let dir = tempfile::tempdir().unwrap();
    let mut sources = site::write_smd(dir.path(), &nodes);
    sources.push(site::write_json(
        dir.path(),
        "bss.json",
        &site::bss_etcd(&nodes),
    ));
    sources.push(site::write_json(
        dir.path(),
        "ci-defaults.json",
        &site::ci_defaults(),
    ));
    let out = dir.path().join("out");
    let result = run_import(&paths(&sources), &out, &[]);
    assert!(result.status.success(), "{}", text(&result));
    let nb = Nodeboot::serve(&out, &[]).await;

    // The boot scripts say what BSS said: Default, a role, an own key (its params literal).
    let plain = nodes
        .iter()
        .find(|n| {
            n.role == "Compute"
                && !site::has_xname_key(n)
                && !site::has_mac_key(n)
                && !site::has_nid_key(n)
        })
        .unwrap();
    let uan = nodes.iter().find(|n| n.role == "Application").unwrap();
    let debug = nodes
        .iter()
        .find(|n| site::has_xname_key(n) && !site::has_secret_user_data(n))
        .unwrap();
    for (n, kernel, params) in [
        (
            plain,
            site::K_COMPUTE,
            "root=live:http://images.example/compute/rootfs.squashfs quiet console=ttyS0,115200 rd.shell BOOTIF=",
        ),
        (
            uan,
            site::K_UAN,
            "root=live:http://images.example/uan/rootfs.squashfs BOOTIF=",
        ),
        (
            debug,
            site::K_DEBUG,
            "debug {{not-a-template}} rd.shell BOOTIF=",
        ),
    ] {
        let (status, _, body) = nb
            .get(&format!("/boot/v1/bootscript?mac={}", n.macs[0]))
            .await;
        assert_eq!(status, 200);
        let line = body.lines().nth(1).unwrap();
        assert!(
            line.starts_with(&format!("kernel --name kernel {kernel} initrd=initrd ")),
            "{line}"
        );
        assert!(line.contains(params), "{line}");
        assert!(
            line.contains(&format!("xname={} nid={}", n.xname, n.nid)),
            "{line}"
        );
    }
    // An unknown x86_64 machine gets the discovery kernel of Unknown-x86_64.
    let (_, _, body) = nb
        .get("/boot/v1/bootscript?mac=02:aa:00:00:00:01&arch=x86_64")
        .await;
    assert!(body.contains(site::K_DISCOVERY), "{body}");

    // `ochami bss boot params get --mac A,B --xname C --nid D`: one entry per node, stored params.
    let q = format!(
        "mac={},{}&name={}&nid={}&nid={}",
        plain.macs[0], uan.macs[0], debug.xname, plain.nid, uan.nid
    );
    let (status, ct, body) = nb.get(&format!("/boot/v1/bootparameters?{q}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with("application/json"), "{ct}");
    let entries: Vec<Value> = serde_json::from_str(&body).unwrap();
    let hosts: Vec<&str> = entries
        .iter()
        .map(|e| e["hosts"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        hosts,
        [
            plain.xname.as_str(),
            uan.xname.as_str(),
            debug.xname.as_str()
        ]
    );
    assert_eq!(
        entries[0]["params"],
        "root=live:http://images.example/compute/rootfs.squashfs quiet console=ttyS0,115200 rd.shell"
    );
    assert_eq!(entries[0]["nids"], serde_json::json!([plain.nid]));
    // Without a query: every node that boots, streamed.
    let (status, _, body) = nb.get("/boot/v1/bootparameters").await;
    assert_eq!(status, 200);
    let all: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(all.len(), 600);
    // Names nobody has: 404 naming them.
    let (status, _, body) = nb
        .get("/boot/v1/bootparameters?name=x1c0s0b0n0,x2c0s0b0n0")
        .await;
    assert_eq!(status, 404);
    assert!(
        body.contains("no node has boot parameters for name 'x1c0s0b0n0', name 'x2c0s0b0n0'"),
        "{body}"
    );

    // `ochami bss hosts get`, `bss service status|version`, `cloud-init service status`.
    let (status, _, body) = nb.get("/boot/v1/hosts").await;
    assert_eq!(status, 200);
    let hosts: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(hosts.len(), 600);
    let h = hosts
        .iter()
        .find(|h| h["ID"] == plain.xname.as_str())
        .unwrap();
    assert_eq!(h["Type"], "Node");
    assert_eq!(h["Role"], "Compute");
    assert_eq!(h["NID"], plain.nid);
    assert_eq!(h["MAC"][0], plain.macs[0].as_str());
    let (_, _, body) = nb.get(&format!("/boot/v1/hosts?mac={}", uan.macs[0])).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["SubRole"], "UAN");
    for (path, want) in [
        (
            "/boot/v1/service/status",
            serde_json::json!({"bss-status": "running"}),
        ),
        (
            "/boot/v1/service/version",
            serde_json::json!({"bss-version": env!("CARGO_PKG_VERSION")}),
        ),
    ] {
        let (status, _, body) = nb.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            want,
            "{path}"
        );
    }
    let (_, _, body) = nb.get("/boot/v1/service/status/all").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["bss-storage-backend"]["status"], "connected");
    assert_eq!(v["bss-status"], "running");
    let (_, _, body) = nb.get("/boot/v1/service/storage/status").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["bss-storage-backend"]["name"], "nodeboot");
    let (_, _, body) = nb.get("/boot/v1/service/hsm").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["bss-status-hsm"]
            .as_str()
            .unwrap()
            .starts_with("not used"),
        "{v}"
    );
    let (status, _, body) = nb.get("/cloud-init/version").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["version"],
        env!("CARGO_PKG_VERSION")
    );

    // `ochami cloud-init node get`: impersonation on the admin listener; a Secret's text is not
    // shown there.
    let secret_node = nodes
        .iter()
        .find(|n| site::has_secret_user_data(n))
        .unwrap();
    let (status, _, body) = nb
        .admin_get(&format!(
            "/cloud-init/admin/impersonation/{}/user-data",
            secret_node.xname
        ))
        .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("redacted") && !body.contains(site::PASSWORD),
        "{body}"
    );
    let (status, _, body) = nb
        .admin_get(&format!(
            "/cloud-init/admin/impersonation/{}/user-data",
            debug.xname
        ))
        .await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with("#cloud-config\n") && body.contains("/etc/debug-image"),
        "{body}"
    );
    let (_, _, body) = nb
        .admin_get(&format!(
            "/cloud-init/admin/impersonation/{}/meta-data",
            plain.xname
        ))
        .await;
    assert!(
        body.contains(&format!("local-hostname: nid{:04}", plain.nid)),
        "{body}"
    );
    assert!(body.contains("Global: {\"ntp\":\"10.1.0.2\""), "{body}");
    // The node itself does get the Secret's text (from its own address: no ip check here,
    // the request comes from loopback and the node's ip is 10.100.x.y, so ask the admin way
    // is all a test can do; the boot listener refuses other addresses).
    let (status, _, _) = nb
        .get(&format!("/cloud-init/{}/user-data", secret_node.xname))
        .await;
    assert_eq!(status, 403);

    // Writes answer 405 with the way to change boot parameters now.
    let r = reqwest::Client::new()
        .post(format!("{}/boot/v1/bootparameters", nb.boot))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET,HEAD");
    let problem: Value = r.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("kubectl") && detail.contains("nodeboot import"),
        "{detail}"
    );
}

#[test]
fn refuses_what_it_cannot_read_and_a_directory_in_use() {
    let dir = tempfile::tempdir().unwrap();
    // YAML aliases could expand without bound: refused before any value is built.
    let bomb = site::write_text(
        dir.path(),
        "bomb.yaml",
        "a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n",
    );
    let result = run_import(&paths(&[bomb]), &dir.path().join("out1"), &[]);
    assert!(!result.status.success());
    assert!(
        text(&result).contains("bomb.yaml: document 1:"),
        "{}",
        text(&result)
    );
    assert!(!dir.path().join("out1").exists());
    // Something that is no OpenCHAMI export says so.
    let other = other_path(dir.path());
    let result = run_import(&paths(&[other]), &dir.path().join("out2"), &[]);
    assert!(!result.status.success());
    assert!(
        text(&result).contains("an object that matches no OpenCHAMI export nodeboot reads"),
        "{}",
        text(&result)
    );
    // A CA file that is not there.
    let result = run_import(
        &paths(&[other_path(dir.path())]),
        &dir.path().join("out3"),
        &["--cacert", "/nonexistent/ca.pem"],
    );
    assert!(!result.status.success());
    assert!(
        text(&result).contains("--cacert /nonexistent/ca.pem: "),
        "{}",
        text(&result)
    );
    // An output directory that already holds files: an earlier import's would be applied too.
    let nodes = site::nodes(10);
    let sources = site::write_smd(dir.path(), &nodes);
    let used = dir.path().join("used");
    std::fs::create_dir(&used).unwrap();
    std::fs::write(used.join("old.yaml"), "x: 1\n").unwrap();
    let result = run_import(&paths(&sources), &used, &[]);
    assert!(!result.status.success());
    assert!(text(&result).contains("is not empty"), "{}", text(&result));
}

fn other_path(dir: &Path) -> PathBuf {
    site::write_json(dir, "other.json", &serde_json::json!({"kind": "x"}))
}
