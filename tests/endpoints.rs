//! Every endpoint of the boot and admin listeners, in process: the routers nodeboot serves,
//! called with requests directly (no socket, no other program) over a snapshot built from a
//! manifest directory the way `nodeboot serve` reads it. tests/serve_http.rs checks the same
//! wire behaviour through the real binary; this file covers every case, fast.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request};
use nodeboot::http::admin::{AdminState, Readiness};
use nodeboot::http::boot::BootState;
use nodeboot::http::client_addr::Peer;
use nodeboot::http::{AccessPolicy, Limits, SharedSnapshot, admin_router, boot_router};
use nodeboot::manifests::ManifestFolder;
use nodeboot::metrics::Metrics;
use nodeboot::tracking::Tracker;
use nodeboot_core::compile::ConfigCompiler;
use nodeboot_core::render::RenderSettings;
use nodeboot_core::snapshot::build;
use serde_json::{Value, json};
use support::manifest_dir;
use support::manifests::{config, group};
use tower::ServiceExt as _;

/// The advertised URL every script is rendered with.
const SERVER: &str = "http://boot.example:8080";
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
/// A client that is no node of any site here (TEST-NET-1).
const STRANGER: &str = "192.0.2.10:40000";

/// The boot and admin routers over one snapshot, put together as `nodeboot serve` does.
struct Server {
    boot: Router,
    admin: Router,
    readiness: Arc<Readiness>,
}

impl Server {
    fn new(dir: &Path, access: AccessPolicy) -> Server {
        let desired = ManifestFolder::open(dir.to_owned())
            .and_then(|mut folder| folder.read())
            .expect("manifests read");
        let settings = RenderSettings {
            server_url: SERVER.to_owned(),
            retry_max_delay: 60,
        };
        let (snapshot, _) = build(&desired, &mut ConfigCompiler::default(), &settings);
        let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(snapshot));
        let metrics = Metrics::new();
        let limits = Limits::default();
        let readiness = Arc::new(Readiness::default());
        let tracker = Tracker::new();
        tracker.follow(&snapshot.load_full());
        let boot = boot_router(
            BootState::new(
                snapshot.clone(),
                access,
                &settings,
                metrics.clone(),
                tracker.clone(),
            ),
            &metrics,
            &limits,
        );
        let admin = admin_router(
            AdminState {
                snapshot,
                metrics,
                readiness: readiness.clone(),
                tracker: tracker.clone(),
            },
            &limits,
        );
        Server {
            boot,
            admin,
            readiness,
        }
    }

    /// The example site, with the source check on and no trusted proxies (the defaults).
    fn examples() -> Server {
        Server::new(Path::new(EXAMPLES), source_check())
    }

    /// GET `path` on the boot router from a client that is no node.
    async fn get(&self, path: &str) -> Reply {
        self.get_from(path, STRANGER, &[]).await
    }

    /// GET `path` on the boot router from `peer` (the TCP peer the accept loop would record),
    /// with `headers`.
    async fn get_from(&self, path: &str, peer: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, path, peer, headers).await
    }

    /// `method` on `path` of the boot router from `peer` with `headers`.
    async fn send(
        &self,
        method: Method,
        path: &str,
        peer: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(Body::empty()).expect("request");
        let peer: SocketAddr = peer.parse().expect("peer address");
        request.extensions_mut().insert(Peer(peer));
        call(&self.boot, request).await
    }

    /// POST a form body (as cloud-init's `phone_home` sends it) to `path` from `peer`.
    async fn post_form(&self, path: &str, peer: &str, form: &str) -> Reply {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form.to_owned()))
            .expect("request");
        let peer: SocketAddr = peer.parse().expect("peer address");
        request.extensions_mut().insert(Peer(peer));
        call(&self.boot, request).await
    }

    async fn admin(&self, path: &str) -> Reply {
        self.admin_send(Method::GET, path).await
    }

    async fn admin_send(&self, method: Method, path: &str) -> Reply {
        let request = Request::builder().method(method).uri(path);
        call(&self.admin, request.body(Body::empty()).expect("request")).await
    }

    /// One series of `/metrics` (`name{labels}`), 0 when absent.
    async fn metric(&self, series: &str) -> u64 {
        let metrics = self.admin("/metrics").await.ok();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0, |v| v.parse().expect("a whole number"))
    }
}

fn source_check() -> AccessPolicy {
    AccessPolicy {
        trusted_proxies: Vec::new(),
        source_check: true,
    }
}

async fn call(router: &Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_owned())
    };
    let content_type = header("content-type").unwrap_or_default();
    let cache_control = header("cache-control");
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    Reply {
        status,
        content_type,
        cache_control,
        body: String::from_utf8(body.to_vec()).expect("UTF-8 body"),
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    cache_control: Option<String>,
    body: String,
}

impl Reply {
    /// The body of a 200 answer.
    fn ok(self) -> String {
        assert_eq!(self.status, 200, "{self:?}");
        self.body
    }

    /// The body of a 200 plain-text answer that no cache may keep (it changes with the
    /// inventory).
    fn text(self) -> String {
        assert_eq!(self.content_type, "text/plain; charset=utf-8", "{self:?}");
        assert_eq!(self.cache_control.as_deref(), Some("no-store"), "{self:?}");
        self.ok()
    }

    /// The body of a 200 JSON answer, parsed.
    fn json(self) -> Value {
        assert_eq!(self.content_type, "application/json", "{self:?}");
        serde_json::from_str(&self.ok()).expect("JSON body")
    }

    /// The detail of an RFC 9457 problem answer with status `status`.
    fn problem(self, status: u16) -> String {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.content_type, "application/problem+json", "{self:?}");
        let problem: Value = serde_json::from_str(&self.body).expect("JSON problem");
        assert_eq!(problem["type"], "about:blank", "{problem}");
        assert_eq!(problem["status"], status, "{problem}");
        assert!(problem["title"].is_string(), "{problem}");
        problem["detail"].as_str().expect("detail").to_owned()
    }
}

/// The default script of a booting node: BSS's shape, then the retry tail for round `retry`
/// (sleeping `delay` seconds) asking again by `mac`.
fn boot_script(kernel_line: &str, initrd: &str, mac: &str, retry: u32, delay: u32) -> String {
    format!(
        "#!ipxe\n\
         kernel --name kernel {kernel_line} || goto boot_retry\n\
         initrd --name initrd {initrd} || goto boot_retry\n\
         boot || goto boot_retry\n\
         :boot_retry\n\
         echo nodeboot: boot failed, retrying in {delay}s\n\
         imgfree\n\
         sleep {delay}\n\
         chain --replace {SERVER}/boot/v1/bootscript?mac={mac}&arch=${{buildarch}}&retry={} || goto boot_retry\n",
        retry + 1
    )
}

/// The script of a node told to wait: only the retry tail, asking again with `asking`
/// (`mac=…`, `name=…` or `nid=…`).
fn wait_script(why: &str, asking: &str, retry: u32, delay: u32) -> String {
    format!(
        "#!ipxe\n\
         :boot_retry\n\
         echo nodeboot: {why}, retrying in {delay}s\n\
         imgfree\n\
         sleep {delay}\n\
         chain --replace {SERVER}/boot/v1/bootscript?{asking}&arch=${{buildarch}}&retry={} || goto boot_retry\n",
        retry + 1
    )
}

/// The kernel line of example node x1000c0s0b0n0 (compute-rocky9), booting from `mac`.
fn compute_kernel_line(bootif: &str, xname: &str, nid: u32) -> String {
    format!(
        "http://images.example/rocky9/vmlinuz initrd=initrd \
         root=live:http://images.example/rocky9/rootfs.squashfs ip=dhcp console=ttyS0,115200 \
         BOOTIF=01-{bootif} xname={xname} nid={nid} ds=nocloud-net;s={SERVER}/cloud-init/{xname}/"
    )
}

const COMPUTE_INITRD: &str = "http://images.example/rocky9/initramfs.img";
const GPU_INITRD: &str = "http://images.example/rocky9-gpu/initramfs.img";

fn gpu_kernel_line(bootif: &str, xname: &str, nid: u32) -> String {
    format!(
        "http://images.example/rocky9-gpu/vmlinuz initrd=initrd \
         root=live:http://images.example/rocky9-gpu/rootfs.squashfs ip=dhcp console=ttyS0,115200 \
         nvidia-drm.modeset=1 BOOTIF=01-{bootif} xname={xname} nid={nid} \
         ds=nocloud-net;s={SERVER}/cloud-init/{xname}/"
    )
}

/// A site of three nodes that cannot boot, each for another reason: n1 and n3 claim the same
/// MAC and the same address, n2 matches no BootConfig, and n4 matches two that tie. No
/// discovery BootConfig.
fn troubled_site() -> tempfile::TempDir {
    let g1 = group(
        "g1",
        "  - {name: n1, macs: [\"02:00:00:00:00:01\"], nid: 1, ip: 10.1.0.1}\n  - {name: n2, macs: [\"02:00:00:00:00:02\"], nid: 2, labels: {pool: none}}\n",
    );
    let g2 = group(
        "g2",
        "  - {name: n3, macs: [\"02:00:00:00:00:01\"], nid: 3, ip: 10.1.0.1}\n  - {name: n4, macs: [\"02:00:00:00:00:04\"], nid: 4, labels: {pool: tie}}\n",
    );
    manifest_dir(&[
        ("g1.yaml", &g1),
        ("g2.yaml", &g2),
        (
            "a.yaml",
            &config("a", 5, "{matchLabels: {pool: tie}}", "x=a"),
        ),
        (
            "b.yaml",
            &config("b", 5, "{matchLabels: {pool: tie}}", "x=b"),
        ),
    ])
}

#[tokio::test]
async fn bootstrap_asks_for_the_bootscript_by_the_booting_mac() {
    let server = Server::examples();
    assert_eq!(
        server.get("/boot.ipxe").await.text(),
        format!(
            "#!ipxe\n\
             chain {SERVER}/boot/v1/bootscript?mac=${{netX/mac}}&arch=${{buildarch}} || goto retry\n\
             :retry\n\
             echo nodeboot: bootscript request failed, retrying in 10s\n\
             sleep 10\n\
             chain {SERVER}/boot/v1/bootscript?mac=${{netX/mac}}&arch=${{buildarch}}&retry=1\n"
        )
    );
    // HEAD answers as GET does, without the body.
    let head = server.send(Method::HEAD, "/boot.ipxe", STRANGER, &[]).await;
    assert_eq!(head.text(), "");
}

#[tokio::test]
async fn bootscript_by_mac_in_every_notation() {
    let server = Server::examples();
    let want = boot_script(
        &compute_kernel_line("02-00-00-00-10-00", "x1000c0s0b0n0", 1),
        COMPUTE_INITRD,
        "02:00:00:00:10:00",
        0,
        5,
    );
    for mac in [
        "02:00:00:00:10:00",
        "02-00-00-00-10-00",
        "0200.0000.1000",
        "020000001000",
    ] {
        let path = format!("/boot/v1/bootscript?mac={mac}");
        assert_eq!(server.get(&path).await.text(), want, "{mac}");
    }
    // A node with two boot interfaces boots from the one that asks, and asks again by it.
    let second = server
        .get("/boot/v1/bootscript?mac=02:00:00:00:20:11&arch=x86_64")
        .await
        .text();
    assert_eq!(
        second,
        boot_script(
            &compute_kernel_line("02-00-00-00-20-11", "x1000c0s1b0n1", 4),
            COMPUTE_INITRD,
            "02:00:00:00:20:11",
            0,
            5,
        )
    );
}

#[tokio::test]
async fn bootscript_by_name_and_nid_as_bss_accepts() {
    let server = Server::examples();
    // Asked by name or NID, the node boots from its first MAC and asks again by it.
    let want = boot_script(
        &gpu_kernel_line("02-00-00-00-11-01", "x1001c0s0b0n1", 102),
        GPU_INITRD,
        "02:00:00:00:11:01",
        0,
        5,
    );
    for path in [
        "/boot/v1/bootscript?name=x1001c0s0b0n1",
        "/boot/v1/bootscript?nid=102",
        "/boot/v1/bootscript?nid=102&arch=x86_64&json=0",
        // mac= wins over name= and nid=, as in BSS.
        "/boot/v1/bootscript?mac=02:00:00:00:11:01&name=x1000c0s0b0n0&nid=1",
    ] {
        assert_eq!(server.get(path).await.text(), want, "{path}");
    }
}

#[tokio::test]
async fn bootscript_retry_round_moves_only_the_tail() {
    let server = Server::examples();
    let line = compute_kernel_line("02-00-00-00-10-00", "x1000c0s0b0n0", 1);
    // The sleep grows by 5 s a round and stops at --retry-max-delay (60 here).
    for (retry, delay) in [(0, 5), (1, 10), (2, 15), (11, 60), (500, 60)] {
        assert_eq!(
            server
                .get(&format!(
                    "/boot/v1/bootscript?mac=02:00:00:00:10:00&retry={retry}"
                ))
                .await
                .text(),
            boot_script(&line, COMPUTE_INITRD, "02:00:00:00:10:00", retry, delay),
            "retry={retry}"
        );
    }
}

#[tokio::test]
async fn bootscript_as_json() {
    let server = Server::examples();
    for flag in ["1", "true", "yes"] {
        let reply = server
            .get(&format!(
                "/boot/v1/bootscript?name=x1000c0s0b0n0&json={flag}"
            ))
            .await;
        assert_eq!(
            reply.json(),
            json!({
                "kernel": "http://images.example/rocky9/vmlinuz",
                "initrd": COMPUTE_INITRD,
                "params": "root=live:http://images.example/rocky9/rootfs.squashfs ip=dhcp console=ttyS0,115200 BOOTIF=01-02-00-00-00-10-00 xname=x1000c0s0b0n0 nid=1 ds=nocloud-net;s=http://boot.example:8080/cloud-init/x1000c0s0b0n0/",
            }),
            "json={flag}"
        );
    }
}

#[tokio::test]
async fn unknown_mac_boots_the_discovery_image() {
    let server = Server::examples();
    let script = server
        .get("/boot/v1/bootscript?mac=02:00:00:00:99:99&arch=x86_64")
        .await
        .text();
    // The MAC stands in for a name: no xname= or nid=, cloud-init data under the MAC.
    assert_eq!(
        script,
        boot_script(
            &format!(
                "http://images.example/discovery/vmlinuz initrd=initrd console=ttyS0,115200 \
                 discovery.report={SERVER}/inventory BOOTIF=01-02-00-00-00-99-99 \
                 ds=nocloud-net;s={SERVER}/cloud-init/02-00-00-00-99-99/"
            ),
            "http://images.example/discovery/initrd.img",
            "02:00:00:00:99:99",
            0,
            5,
        )
    );
    // Any case: the script names the MAC in lowercase.
    let upper = server
        .get("/boot/v1/bootscript?mac=02-00-00-00-AA-BB&arch=x86_64")
        .await
        .text();
    assert_eq!(
        upper,
        script.replace("99-99", "aa-bb").replace("99:99", "aa:bb")
    );
    let json = server
        .get("/boot/v1/bootscript?mac=02:00:00:00:99:99&json=1")
        .await
        .json();
    assert_eq!(json["kernel"], "http://images.example/discovery/vmlinuz");
}

#[tokio::test]
async fn nodes_that_cannot_boot_wait_and_ask_again_the_way_they_asked() {
    let dir = troubled_site();
    let server = Server::new(dir.path(), source_check());
    for (path, why, asking) in [
        // Unknown, and no discovery BootConfig.
        (
            "/boot/v1/bootscript?mac=02:00:00:00:00:99",
            "this node is in no NodeGroup",
            "mac=02:00:00:00:00:99",
        ),
        (
            "/boot/v1/bootscript?name=nosuchnode",
            "this node is in no NodeGroup",
            "name=nosuchnode",
        ),
        (
            "/boot/v1/bootscript?nid=99",
            "this node is in no NodeGroup",
            "nid=99",
        ),
        // Matched by no BootConfig.
        (
            "/boot/v1/bootscript?mac=02:00:00:00:00:02",
            "no BootConfig matches this node",
            "mac=02:00:00:00:00:02",
        ),
        (
            "/boot/v1/bootscript?name=n2",
            "no BootConfig matches this node",
            "name=n2",
        ),
        // Two BootConfigs tie; and a MAC two nodes claim: never a guess.
        (
            "/boot/v1/bootscript?nid=4",
            "this node is in conflict, see its NodeGroup status",
            "nid=4",
        ),
        (
            "/boot/v1/bootscript?mac=02:00:00:00:00:01",
            "this node is in conflict, see its NodeGroup status",
            "mac=02:00:00:00:00:01",
        ),
        (
            "/boot/v1/bootscript?name=n1",
            "this node is in conflict, see its NodeGroup status",
            "name=n1",
        ),
    ] {
        assert_eq!(
            server.get(path).await.text(),
            wait_script(why, asking, 0, 5),
            "{path}"
        );
        // The round moves the wait on, as for a booting node.
        assert_eq!(
            server.get(&format!("{path}&retry=3")).await.text(),
            wait_script(why, asking, 3, 20),
            "{path}"
        );
        // As JSON there is nothing to boot.
        let detail = server.get(&format!("{path}&json=1")).await.problem(404);
        assert!(!detail.is_empty(), "{path}");
    }
}

#[tokio::test]
async fn bad_or_missing_identifiers_get_problem_bodies() {
    let server = Server::examples();
    let too_long = "n".repeat(64);
    for (path, needle) in [
        (
            "/boot/v1/bootscript",
            "give the node as mac=, name= or nid=",
        ),
        ("/boot/v1/bootscript?arch=x86_64", "mac=, name= or nid="),
        ("/boot/v1/bootscript?mac=&name=&nid=", "mac=, name= or nid="),
        (
            "/boot/v1/bootscript?mac=02:00:00:00:10",
            "'02:00:00:00:10' is not a MAC address (use aa:bb:cc:dd:ee:ff",
        ),
        (
            "/boot/v1/bootscript?mac=zz:00:00:00:10:00",
            "'zz:00:00:00:10:00' is not a MAC address",
        ),
        (
            "/boot/v1/bootscript?mac=02:00-00:00:10:00",
            "is not a MAC address",
        ),
        (
            "/boot/v1/bootscript?nid=-1",
            "nid '-1' is not a number >= 0",
        ),
        (
            "/boot/v1/bootscript?nid=one",
            "nid 'one' is not a number >= 0",
        ),
        (
            "/boot/v1/bootscript?mac=02:00:00:00:10:00&retry=x",
            "retry 'x' is not a number >= 0",
        ),
        (
            "/boot/v1/bootscript?mac=02:00:00:00:10:00&retry=-1",
            "retry '-1' is not a number >= 0",
        ),
        (
            "/boot/v1/bootscript?name=a%0Achain%20http://evil",
            "is not a valid node name",
        ),
        (
            &format!("/boot/v1/bootscript?name={too_long}"),
            "at most 63 characters",
        ),
        (
            "/boot/v1/bootparameters?mac=nope",
            "'nope' is not a MAC address",
        ),
    ] {
        let detail = server.get(path).await.problem(400);
        assert!(detail.contains(needle), "{path}: {detail}");
    }
}

#[tokio::test]
async fn bootparameters_in_bss_shape() {
    let server = Server::examples();
    let want = json!([{
        "hosts": ["x1000c0s1b0n1"],
        "macs": ["02:00:00:00:10:11", "02:00:00:00:20:11"],
        "nids": [4],
        "kernel": "http://images.example/rocky9/vmlinuz",
        "initrd": COMPUTE_INITRD,
        // The stored params, as BSS lists them: autoParams are in the script only.
        "params": "root=live:http://images.example/rocky9/rootfs.squashfs ip=dhcp console=ttyS0,115200",
    }]);
    for path in [
        "/boot/v1/bootparameters?name=x1000c0s1b0n1",
        "/boot/v1/bootparameters?nid=4",
        "/boot/v1/bootparameters?mac=02-00-00-00-10-11",
        // The same node by two kinds: listed once.
        "/boot/v1/bootparameters?nid=4&mac=02:00:00:00:20:11",
    ] {
        assert_eq!(server.get(path).await.json(), want, "{path}");
    }
    // Every kind at once, repeated and comma-separated (as `ochami bss boot params get` sends
    // them): one entry per node found, in the order asked; names nobody has are left out.
    let v = server
        .get("/boot/v1/bootparameters?mac=02:00:00:00:11:00&name=x1000c0s1b0n1,nobody&nid=1&nid=2")
        .await
        .json();
    let hosts: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["hosts"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        hosts,
        [
            "x1001c0s0b0n0",
            "x1000c0s1b0n1",
            "x1000c0s0b0n0",
            "x1000c0s0b0n1"
        ]
    );
    // No query: every node that boots, once.
    let all = server.get("/boot/v1/bootparameters").await.json();
    let mut names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["hosts"][0].as_str().unwrap())
        .collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count);
    assert!(names.contains(&"x1001c0s0b0n1") && names.contains(&"x1000c0s1b0n1"));
    let detail = server
        .get("/boot/v1/bootparameters?nid=x")
        .await
        .problem(400);
    assert_eq!(detail, "nid 'x' is not a number >= 0");
    // BSS keeps parameters of known nodes only: an unknown MAC is not listed, discovery or not.
    let detail = server
        .get("/boot/v1/bootparameters?mac=02:00:00:00:99:99")
        .await
        .problem(404);
    assert_eq!(
        detail,
        "no node has boot parameters for MAC 02:00:00:00:99:99"
    );

    let dir = troubled_site();
    let server = Server::new(dir.path(), source_check());
    let detail = server
        .get("/boot/v1/bootparameters?mac=02:00:00:00:00:01")
        .await
        .problem(409);
    assert_eq!(detail, "several nodes claim MAC 02:00:00:00:00:01");
    // A known node with nothing to boot.
    let detail = server
        .get("/boot/v1/bootparameters?name=n2")
        .await
        .problem(404);
    assert!(
        detail.starts_with("node n2 has no boot configuration: "),
        "{detail}"
    );
}

#[tokio::test]
async fn cloud_init_documents_by_node_name_or_mac() {
    let server = Server::examples();
    // BootConfig, NodeGroup and node meta-data merged, keys in order; "12" stays a string.
    let meta = "hostname: nid000004\nimage: compute-rocky9\ninstance-id: x1000c0s1b0n1\nlocal-hostname: nid000004\nntp_server: 10.1.0.2\nrack_u: \"12\"\nsyslog_aggregator: 10.1.0.5\n";
    let user = "#cloud-config\nhostname: nid000004\nntp:\n  enabled: true\n  servers: [10.1.0.2]\nwrite_files:\n- path: /etc/rsyslog.d/90-nodeboot.conf\n  content: |\n    *.* @@10.1.0.5:514\nruncmd:\n- [systemctl, restart, rsyslog]\n";
    for id in [
        "x1000c0s1b0n1",
        "02:00:00:00:10:11",
        "0200.0000.2011",
        "02-00-00-00-20-11",
    ] {
        let doc = |name: &str| format!("/cloud-init/{id}/{name}");
        assert_eq!(server.get(&doc("meta-data")).await.text(), meta, "{id}");
        assert_eq!(server.get(&doc("user-data")).await.text(), user, "{id}");
        // vendor-data unset: served empty; network-config unset: 404.
        assert_eq!(server.get(&doc("vendor-data")).await.text(), "", "{id}");
        let detail = server.get(&doc("network-config")).await.problem(404);
        assert_eq!(detail, "no network-config is set for this node");
        let detail = server.get(&doc("passwords")).await.problem(404);
        assert_eq!(
            detail,
            "cloud-init documents are meta-data, user-data, vendor-data and network-config"
        );
    }
    let detail = server
        .get("/cloud-init/nosuchnode/meta-data")
        .await
        .problem(404);
    assert_eq!(
        detail,
        "no node is named 'nosuchnode' and it is not a MAC address"
    );

    // An unknown MAC gets the discovery BootConfig's data: user-data from its Secret, verbatim.
    let user = server
        .get("/cloud-init/02:00:00:00:99:99/user-data")
        .await
        .text();
    assert_eq!(
        user,
        "#cloud-config\nusers:\n- name: discovery\n  ssh_authorized_keys:\n  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleOnlyReplaceWithTheSitesKey discovery@site\n"
    );
    let meta = server
        .get("/cloud-init/02-00-00-00-99-99/meta-data")
        .await
        .text();
    assert!(
        meta.contains("instance-id: \"02-00-00-00-99-99\"\n"),
        "{meta}"
    );
}

#[tokio::test]
async fn cloud_init_of_troubled_nodes() {
    let dir = troubled_site();
    let server = Server::new(dir.path(), source_check());
    let detail = server
        .get("/cloud-init/02:00:00:00:00:01/meta-data")
        .await
        .problem(409);
    assert_eq!(detail, "'02:00:00:00:00:01' is claimed by several nodes");
    let detail = server
        .get("/cloud-init/02:00:00:00:00:99/meta-data")
        .await
        .problem(404);
    assert_eq!(
        detail,
        "02:00:00:00:00:99 is in no NodeGroup and no discovery BootConfig matches it"
    );
    // A node without a BootConfig still has its meta-data (from its NodeGroup) and no user-data.
    let meta = server.get("/cloud-init/n2/meta-data").await.text();
    assert_eq!(
        meta,
        "hostname: n2\ninstance-id: n2\nlocal-hostname: n2\nsyslog_aggregator: 10.1.0.5\n"
    );
    assert_eq!(server.get("/cloud-init/n2/user-data").await.text(), "");
    // Two nodes with one address: the address names no node.
    let detail = server
        .get_from("/cloud-init/meta-data", "10.1.0.1:68", &[])
        .await
        .problem(409);
    assert_eq!(detail, "several nodes have address 10.1.0.1");
}

#[tokio::test]
async fn cloud_init_data_of_a_node_with_an_address_only_goes_to_that_address() {
    let server = Server::examples();
    let path = "/cloud-init/x1001c0s0b0n0/meta-data";
    let detail = server.get(path).await.problem(403);
    assert_eq!(
        detail,
        "cloud-init data of node x1001c0s0b0n0 is served only to the node's own address; this request came from 192.0.2.10"
    );
    let meta = server.get_from(path, "10.1.1.101:68", &[]).await.text();
    assert!(meta.contains("instance-id: x1001c0s0b0n0\n"), "{meta}");
    // The same address on a dual-stack socket.
    let mapped = server
        .get_from(path, "[::ffff:10.1.1.101]:68", &[])
        .await
        .text();
    assert_eq!(mapped, meta);
    // Another node's address is not enough, and neither is a header anyone can send.
    server
        .get_from(path, "10.1.1.102:68", &[])
        .await
        .problem(403);
    server
        .get_from(path, STRANGER, &[("x-forwarded-for", "10.1.1.101")])
        .await
        .problem(403);
    // A node without an address is served to anyone.
    server
        .get("/cloud-init/x1000c0s0b0n0/meta-data")
        .await
        .text();

    // Behind a trusted proxy, the client it names is the requester.
    let proxied = Server::new(
        Path::new(EXAMPLES),
        AccessPolicy {
            trusted_proxies: vec!["192.0.2.0/24".parse().expect("CIDR")],
            source_check: true,
        },
    );
    let via_proxy = proxied
        .get_from(path, STRANGER, &[("x-forwarded-for", "10.1.1.101")])
        .await
        .text();
    assert_eq!(via_proxy, meta);
    // Only the hop the proxy appended counts; what the client wrote left of it does not.
    proxied
        .get_from(
            path,
            STRANGER,
            &[("x-forwarded-for", "10.1.1.101, 198.51.100.7")],
        )
        .await
        .problem(403);
    // A proxy that is not trusted is the requester itself.
    proxied
        .get_from(
            path,
            "198.51.100.7:3128",
            &[("x-forwarded-for", "10.1.1.101")],
        )
        .await
        .problem(403);

    // --cloud-init-source-check off: served to anyone.
    let unchecked = Server::new(Path::new(EXAMPLES), AccessPolicy::default());
    assert_eq!(unchecked.get(path).await.text(), meta);
}

#[tokio::test]
async fn cloud_init_by_source_address() {
    let server = Server::examples();
    let meta = server
        .get_from("/cloud-init/meta-data", "10.1.1.102:68", &[])
        .await
        .text();
    assert!(meta.contains("instance-id: x1001c0s0b0n1\n"), "{meta}");
    assert_eq!(
        meta,
        server
            .get_from("/cloud-init/x1001c0s0b0n1/meta-data", "10.1.1.102:68", &[])
            .await
            .text()
    );
    let user = server
        .get_from("/cloud-init/user-data", "10.1.1.102:68", &[])
        .await
        .text();
    assert!(
        user.starts_with("#cloud-config\nhostname: nid000102\n"),
        "{user}"
    );
    assert_eq!(
        server
            .get_from("/cloud-init/vendor-data", "10.1.1.102:68", &[])
            .await
            .text(),
        ""
    );
    let detail = server
        .get_from("/cloud-init/network-config", "10.1.1.102:68", &[])
        .await
        .problem(404);
    assert_eq!(detail, "no network-config is set for this node");
    let detail = server.get("/cloud-init/meta-data").await.problem(404);
    assert_eq!(
        detail,
        "no node has address 192.0.2.10; ask /cloud-init/<node name>/meta-data instead"
    );
    let detail = server
        .get_from("/cloud-init/passwords", "10.1.1.102:68", &[])
        .await
        .problem(404);
    assert!(detail.starts_with("cloud-init documents are"), "{detail}");

    // X-Forwarded-For is believed from trusted proxies only.
    server
        .get_from(
            "/cloud-init/meta-data",
            STRANGER,
            &[("x-forwarded-for", "10.1.1.102")],
        )
        .await
        .problem(404);
    let proxied = Server::new(
        Path::new(EXAMPLES),
        AccessPolicy {
            trusted_proxies: vec!["192.0.2.0/24".parse().expect("CIDR")],
            source_check: true,
        },
    );
    let via_proxy = proxied
        .get_from(
            "/cloud-init/meta-data",
            STRANGER,
            &[("x-forwarded-for", "10.9.9.9, 10.1.1.102")],
        )
        .await
        .text();
    assert_eq!(via_proxy, meta);
}

#[tokio::test]
async fn unknown_paths_get_problem_bodies() {
    let server = Server::examples();
    for path in [
        "/",
        "/nope",
        "/boot/v2/bootscript?mac=02:00:00:00:10:00",
        "/boot/v1/bootscript/extra",
        "/cloud-init/x1000c0s0b0n0/meta-data/extra",
    ] {
        let detail = server.get(path).await.problem(404);
        let bare = path.split('?').next().unwrap_or(path);
        assert_eq!(
            detail,
            format!(
                "no such endpoint: {bare}; see /boot.ipxe, /boot/v1/bootscript, /boot/v1/bootparameters, /boot/v1/hosts, /boot/v1/service/status and /cloud-init/"
            )
        );
    }
    let detail = server.admin("/nope").await.problem(404);
    assert_eq!(
        detail,
        "no such endpoint: /nope; see /healthz, /readyz, /metrics, /nodes/<name or MAC> and /discovered"
    );
    // The admin endpoints are not on the boot listener, which faces the boot network.
    server.get("/metrics").await.problem(404);
    server.get("/nodes/x1000c0s0b0n0").await.problem(404);
    // Every endpoint is a GET.
    for path in ["/boot.ipxe", "/boot/v1/bootscript?mac=02:00:00:00:10:00"] {
        for method in [Method::POST, Method::PUT, Method::DELETE] {
            let detail = server.send(method, path, STRANGER, &[]).await.problem(405);
            assert_eq!(detail, "only GET (and HEAD) is served here");
        }
    }
    let detail = server
        .admin_send(Method::POST, "/healthz")
        .await
        .problem(405);
    assert_eq!(detail, "only GET (and HEAD) is served here");
}

#[tokio::test]
async fn health_and_readiness() {
    let server = Server::examples();
    let health = server.admin("/healthz").await.ok();
    assert_eq!(health, "ok\n");
    let detail = server.admin("/readyz").await.problem(503);
    assert_eq!(
        detail,
        "not ready: the first inventory has not been loaded yet"
    );
    // Alive while not ready: the liveness probe must not restart a process still loading.
    assert_eq!(server.admin("/healthz").await.ok(), "ok\n");
    server.readiness.built();
    assert_eq!(server.admin("/readyz").await.ok(), "ok\n");
    // A failed rebuild keeps the replica ready (the previous snapshot is served) and says so.
    server.readiness.failed("manifests unreadable".to_owned());
    assert_eq!(
        server.admin("/readyz").await.ok(),
        "ok, degraded: the last rebuild failed (manifests unreadable); the previous snapshot is served\n"
    );
    server.readiness.built();
    assert_eq!(server.admin("/readyz").await.ok(), "ok\n");
}

#[tokio::test]
async fn metrics_count_every_request_by_endpoint_and_outcome() {
    let server = Server::examples();
    let reply = server.admin("/metrics").await;
    assert_eq!(
        reply.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let metrics = reply.ok();
    for series in [
        "nodeboot_nodes{phase=\"Assigned\"} 6",
        "nodeboot_nodes{phase=\"Unassigned\"} 0",
        "nodeboot_nodes{phase=\"Conflict\"} 0",
        "nodeboot_http_requests_total{endpoint=\"bootscript\",outcome=\"ok\"} 0",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");

    let count = |endpoint: &str, outcome: &str| {
        format!("nodeboot_http_requests_total{{endpoint=\"{endpoint}\",outcome=\"{outcome}\"}}")
    };
    let requests: [(&str, &str, &str); 9] = [
        ("/boot.ipxe", "bootstrap", "ok"),
        (
            "/boot/v1/bootscript?mac=02:00:00:00:10:00",
            "bootscript",
            "ok",
        ),
        // Discovery boots: ok. A node in no NodeGroup without discovery would wait (below).
        (
            "/boot/v1/bootscript?mac=02:00:00:00:99:99",
            "bootscript",
            "ok",
        ),
        ("/boot/v1/bootscript?mac=nope", "bootscript", "bad_request"),
        ("/boot/v1/bootparameters?nid=1", "bootparameters", "ok"),
        (
            "/boot/v1/bootparameters?nid=999",
            "bootparameters",
            "not_found",
        ),
        ("/cloud-init/x1000c0s0b0n0/user-data", "cloud_init", "ok"),
        (
            "/cloud-init/x1001c0s0b0n0/user-data",
            "cloud_init",
            "forbidden",
        ),
        ("/nope", "other", "not_found"),
    ];
    for (path, endpoint, outcome) in requests {
        let series = count(endpoint, outcome);
        let before = server.metric(&series).await;
        server.get(path).await;
        assert_eq!(server.metric(&series).await, before + 1, "{path}: {series}");
    }
    let latency = "nodeboot_http_request_duration_seconds_count{endpoint=\"bootscript\"}";
    assert_eq!(server.metric(latency).await, 3);

    // A node told to wait is counted as such, though it gets a 200 and a script.
    let dir = troubled_site();
    let troubled = Server::new(dir.path(), source_check());
    let waits = count("bootscript", "wait");
    assert_eq!(troubled.metric(&waits).await, 0);
    for path in [
        "/boot/v1/bootscript?mac=02:00:00:00:00:99",
        "/boot/v1/bootscript?name=n2",
        "/boot/v1/bootscript?nid=4&retry=7",
    ] {
        troubled.get(path).await.text();
    }
    assert_eq!(troubled.metric(&waits).await, 3);
    assert_eq!(troubled.metric(&count("bootscript", "ok")).await, 0);
    let metrics = troubled.admin("/metrics").await.ok();
    for series in [
        "nodeboot_nodes{phase=\"Assigned\"} 0",
        "nodeboot_nodes{phase=\"Unassigned\"} 1",
        "nodeboot_nodes{phase=\"Conflict\"} 3",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
}

#[tokio::test]
async fn node_report_says_what_a_node_gets_and_why() {
    let server = Server::examples();
    let by_name = server.admin("/nodes/x1001c0s0b0n0").await.json();
    for id in ["02:00:00:00:11:00", "02-00-00-00-11-00", "0200.0000.1100"] {
        assert_eq!(
            server.admin(&format!("/nodes/{id}")).await.json(),
            by_name,
            "{id}"
        );
    }
    assert_eq!(by_name["known"], true);
    assert_eq!(by_name["namespace"], "hpc");
    assert_eq!(by_name["group"], "cabinet-x1001");
    assert_eq!(by_name["name"], "x1001c0s0b0n0");
    assert_eq!(by_name["macs"], json!(["02:00:00:00:11:00"]));
    assert_eq!(by_name["nid"], 101);
    assert_eq!(by_name["ip"], "10.1.1.101");
    assert_eq!(by_name["hostname"], "nid000101");
    assert_eq!(by_name["phase"], "Assigned");
    assert_eq!(by_name["bootConfig"], "gpu-rocky9");
    assert_eq!(
        by_name["why"],
        "gpu-rocky9 has the highest priority (10) of 2 matching BootConfigs"
    );
    assert_eq!(by_name["candidates"][0]["config"], "gpu-rocky9");
    assert_eq!(by_name["candidates"][1]["config"], "compute-rocky9");
    assert_eq!(by_name["labels"]["gpu"], "a100");
    assert_eq!(by_name["labels"]["nodeboot.io/group"], "cabinet-x1001");
    assert_eq!(by_name["labels"]["nodeboot.io/known"], "true");
    assert_eq!(
        by_name["kernel"],
        "http://images.example/rocky9-gpu/vmlinuz"
    );
    assert_eq!(by_name["initrd"], GPU_INITRD);
    assert_eq!(by_name["metaData"]["image"], "gpu-rocky9");
    assert_eq!(by_name["metaData"]["instance-id"], "x1001c0s0b0n0");
    // The script the node gets on its first request, exactly.
    assert_eq!(
        by_name["script"],
        boot_script(
            &gpu_kernel_line("02-00-00-00-11-00", "x1001c0s0b0n0", 101),
            GPU_INITRD,
            "02:00:00:00:11:00",
            0,
            5,
        )
    );

    // An unknown MAC: what discovery gives it, and never its Secret's data.
    let reply = server.admin("/nodes/02:00:00:00:99:99").await;
    assert!(!reply.body.contains("ssh-ed25519"), "{}", reply.body);
    let unknown = reply.json();
    assert_eq!(unknown["known"], false);
    assert_eq!(unknown["bootConfig"], "discovery");
    assert_eq!(unknown["labels"]["nodeboot.io/known"], "false");
    assert_eq!(unknown["labels"]["nodeboot.io/mac"], "02-00-00-00-99-99");
    assert!(
        unknown["why"]
            .as_str()
            .expect("why")
            .starts_with("unknown node (its MAC is in no NodeGroup): "),
        "{unknown}"
    );

    let detail = server.admin("/nodes/nosuchnode").await.problem(404);
    assert_eq!(
        detail,
        "no node is named 'nosuchnode' and it is not a MAC address"
    );

    let dir = troubled_site();
    let troubled = Server::new(dir.path(), source_check());
    let detail = troubled
        .admin("/nodes/02:00:00:00:00:01")
        .await
        .problem(409);
    assert_eq!(
        detail,
        "'02:00:00:00:00:01' is claimed by more than one node (in one namespace or several); it cannot be served until only one claims it"
    );
    let tie = troubled.admin("/nodes/n4").await.json();
    assert_eq!(tie["phase"], "Conflict");
    assert!(
        tie["why"]
            .as_str()
            .expect("why")
            .contains("BootConfigs a, b tie at priority 5"),
        "{tie}"
    );
    assert_eq!(
        tie["script"],
        wait_script(
            "this node is in conflict, see its NodeGroup status",
            "mac=02:00:00:00:00:04",
            0,
            5
        )
    );
    let unassigned = troubled.admin("/nodes/n2").await.json();
    assert_eq!(unassigned["phase"], "Unassigned");
    assert_eq!(unassigned["candidates"], json!([]));
}

// ---- GRUB (/grub.cfg and /boot/v1/grub.cfg) ----

#[tokio::test]
async fn grub_bootstrap_loops_sourcing_the_per_node_config_by_grubs_mac_and_cpu() {
    let server = Server::examples();
    assert_eq!(
        server.get("/grub.cfg").await.text(),
        "# nodeboot: asks for this node's GRUB configuration until one boots\n\
         set nodeboot_retry=0\n\
         set nodeboot_delay=5\n\
         while true; do\n  \
         source \"(http,boot.example:8080)/boot/v1/grub.cfg?mac=${net_default_mac}&arch=${grub_cpu}&retry=${nodeboot_retry}\"\n  \
         sleep \"${nodeboot_delay}\"\n\
         done\n"
    );
}

#[tokio::test]
async fn grub_config_of_a_node_boots_its_bootconfig_with_the_same_params() {
    let server = Server::examples();
    let want = "# nodeboot\n\
         if linux (http,images.example)/rocky9/vmlinuz root=live:http://images.example/rocky9/rootfs.squashfs \
         ip=dhcp console=ttyS0,115200 BOOTIF=01-02-00-00-00-10-00 xname=x1000c0s0b0n0 nid=1 \
         'ds=nocloud-net;s=http://boot.example:8080/cloud-init/x1000c0s0b0n0/'; then\n  \
         if initrd (http,images.example)/rocky9/initramfs.img; then\n    boot\n  fi\n\
         fi\n\
         echo 'nodeboot: boot failed, asking again'\n";
    for path in [
        // GRUB's own notation: lowercase with colons.
        "/boot/v1/grub.cfg?mac=02:00:00:00:10:00&arch=x86_64&retry=0",
        "/boot/v1/grub.cfg?mac=02-00-00-00-10-00",
        "/boot/v1/grub.cfg?name=x1000c0s0b0n0",
        "/boot/v1/grub.cfg?nid=1&retry=7",
    ] {
        assert_eq!(server.get(path).await.text(), want, "{path}");
    }
    // The same kernel command line as the iPXE script's, word for word.
    let json = server
        .get("/boot/v1/bootscript?mac=02:00:00:00:10:00&json=1")
        .await
        .json();
    let params = json["params"].as_str().expect("params");
    let grub_params = want
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("if linux (http,images.example)/rocky9/vmlinuz "))
        .and_then(|l| l.strip_suffix("; then"))
        .expect("linux line")
        .replace('\'', "");
    assert_eq!(grub_params, params);
    // The second MAC of a node boots with its own BOOTIF.
    let second = server
        .get("/boot/v1/grub.cfg?mac=02:00:00:00:20:11")
        .await
        .text();
    assert!(second.contains(" BOOTIF=01-02-00-00-00-20-11 "), "{second}");
}

#[tokio::test]
async fn grub_nodes_that_cannot_boot_get_200_and_wait_a_round() {
    let server = Server::new(troubled_site().path(), source_check());
    let wait = |why: &str, retry: u32, delay: u32| {
        format!(
            "# nodeboot\necho 'nodeboot: {why}, retrying in {delay}s'\nset nodeboot_retry={}\nset nodeboot_delay={delay}\n",
            retry + 1
        )
    };
    for (path, want) in [
        (
            "/boot/v1/grub.cfg?mac=02:00:00:00:00:01",
            wait("this node is in conflict, see its NodeGroup status", 0, 5),
        ),
        (
            "/boot/v1/grub.cfg?name=n2&retry=3",
            wait("no BootConfig matches this node", 3, 20),
        ),
        (
            "/boot/v1/grub.cfg?mac=02:00:00:00:99:99&retry=40",
            wait("this node is in no NodeGroup", 40, 60),
        ),
        (
            "/boot/v1/grub.cfg?nid=4",
            wait("this node is in conflict, see its NodeGroup status", 0, 5),
        ),
    ] {
        assert_eq!(server.get(path).await.text(), want, "{path}");
    }
    assert_eq!(
        server
            .metric("nodeboot_http_requests_total{endpoint=\"grub_config\",outcome=\"wait\"}")
            .await,
        4
    );
    // What GRUB cannot act on is still a problem body (GRUB shows its status and the
    // bootstrap's loop asks again).
    server.get("/boot/v1/grub.cfg?mac=zz").await.problem(400);
}

#[tokio::test]
async fn grub_script_templates_are_checked_for_grubs_syntax() {
    let bc = |name: &str, selector: &str, grub: &str| {
        format!(
            "{}  grubScript: {grub:?}\n",
            config(name, 0, selector, "console=ttyS0")
        )
    };
    let dir = manifest_dir(&[
        (
            "g.yaml",
            &group(
                "g",
                "  - {name: n1, macs: [\"02:00:00:00:00:01\"], labels: {pool: a}, metaData: {disk: sda}}\n  - {name: n2, macs: [\"02:00:00:00:00:02\"], labels: {pool: a}, metaData: {disk: \"sda; reboot\"}}\n",
            ),
        ),
        (
            "a.yaml",
            &bc(
                "a",
                "{matchLabels: {pool: a}}",
                "linux {{ boot.kernel }} {{ boot.params }} root=/dev/{{ meta.disk }}\ninitrd {{ boot.initrd }}\nboot\n",
            ),
        ),
    ]);
    let server = Server::new(dir.path(), source_check());
    assert_eq!(
        server.get("/boot/v1/grub.cfg?name=n1").await.text(),
        "linux (http,img)/a/vmlinuz console=ttyS0 BOOTIF=01-02-00-00-00-00-01 xname=n1 \
         'ds=nocloud-net;s=http://boot.example:8080/cloud-init/n1/' root=/dev/sda\n\
         initrd (http,img)/a/initrd\nboot\n"
    );
    // A value that would add a GRUB command fails n2's rendering: n2 waits, nothing is served
    // with the value in it.
    let n2 = server.get("/boot/v1/grub.cfg?name=n2").await.text();
    assert!(
        n2.contains("its BootConfig failed to render for it") && !n2.contains("reboot"),
        "{n2}"
    );
    // The iPXE script of n1 is unchanged by grubScript.
    let script = server.get("/boot/v1/bootscript?name=n1").await.text();
    assert!(script.starts_with("#!ipxe\nkernel --name kernel http://img/a/vmlinuz"));
}

// ---- /firmware/ (--firmware-dir) ----

#[tokio::test]
async fn firmware_dir_serves_its_files_only_with_ranges() {
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("snponly.efi"), b"MZ-an-efi-binary").unwrap();
    std::fs::create_dir(files.path().join("sub")).unwrap();
    let secret = tempfile::NamedTempFile::new().unwrap();
    let server = Server::examples();
    let metrics = Metrics::new();
    let router = nodeboot::http::firmware::mount(server.boot.clone(), Some(files.path()), &metrics);
    let get = |path: &str, range: Option<&str>| {
        let mut request = Request::builder().uri(path);
        if let Some(range) = range {
            request = request.header("range", range);
        }
        let mut request = request.body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(Peer(STRANGER.parse().unwrap()));
        request
    };
    let reply = call(&router, get("/firmware/snponly.efi", None)).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "MZ-an-efi-binary")
    );
    let reply = call(&router, get("/firmware/snponly.efi", Some("bytes=3-5"))).await;
    assert_eq!((reply.status, reply.body.as_str()), (206, "an-"));
    let outside = format!(
        "/firmware/../{}",
        secret.path().file_name().unwrap().to_string_lossy()
    );
    for path in [outside.as_str(), "/firmware/nope.efi", "/firmware/sub/"] {
        let reply = call(&router, get(path, None)).await;
        assert!(
            matches!(reply.status, 400 | 404),
            "{path}: {}",
            reply.status
        );
    }
    // The other routes are still there.
    assert!(
        call(&router, get("/grub.cfg", None))
            .await
            .ok()
            .contains("while true")
    );
}

/// A node nodeboot does not know is chosen for by the arch its firmware reports: GRUB's
/// bootstrap sends `arch=${grub_cpu}` (`x86_64`, `arm64`), iPXE `${buildarch}`.
#[tokio::test]
async fn grub_arch_from_the_firmware_picks_the_discovery_bootconfig() {
    let discovery = |name: &str, arch: &str| {
        config(
            name,
            0,
            &format!("{{matchLabels: {{nodeboot.io/known: \"false\", nodeboot.io/arch: {arch}}}}}"),
            "console=ttyS0",
        )
    };
    let dir = manifest_dir(&[
        (
            "g.yaml",
            &group("g", "  - {name: n1, macs: [\"02:00:00:00:00:01\"]}\n"),
        ),
        ("x.yaml", &discovery("disc-x86", "x86_64")),
        ("a.yaml", &discovery("disc-arm", "arm64")),
    ]);
    let server = Server::new(dir.path(), source_check());
    for (arch, image) in [
        ("x86_64", "disc-x86"),
        ("arm64", "disc-arm"),
        ("aarch64", "disc-arm"),
    ] {
        let cfg = server
            .get(&format!(
                "/boot/v1/grub.cfg?mac=02:00:00:00:99:01&arch={arch}&retry=0"
            ))
            .await
            .text();
        assert!(
            cfg.contains(&format!(
                "if linux (http,img)/{image}/vmlinuz console=ttyS0 BOOTIF=01-02-00-00-00-99-01 "
            )),
            "{arch}: {cfg}"
        );
    }
    // Without an arch no discovery BootConfig matches: the node waits.
    let cfg = server
        .get("/boot/v1/grub.cfg?mac=02:00:00:00:99:01")
        .await
        .text();
    assert!(cfg.contains("set nodeboot_retry=1"), "{cfg}");
}

/// What cloud-init's `phone_home` module posts (`post: all`), keys shortened.
fn phone_home_form(instance_id: &str) -> String {
    format!(
        "pub_key_rsa=ssh-rsa+AAAAB3Nza+root%40n&pub_key_ecdsa=ecdsa-sha2-nistp256+AAAAE2V&pub_key_ed25519=ssh-ed25519+AAAAC3Nz&instance_id={instance_id}&hostname=nid000001&fqdn=nid000001.example"
    )
}

#[tokio::test]
async fn a_node_s_fetches_and_phone_home_show_in_its_report_history_and_metrics() {
    let server = Server::examples();
    let before = server.admin("/nodes/x1000c0s0b0n0").await.json();
    assert!(before.get("lastBootScript").is_none(), "{before}");
    assert!(before.get("lastPhoneHome").is_none(), "{before}");
    assert_eq!(before["lastCloudInit"], json!({}));

    server
        .get("/boot/v1/bootscript?mac=02:00:00:00:10:00")
        .await
        .text();
    server
        .get("/cloud-init/x1000c0s0b0n0/meta-data")
        .await
        .text();
    server
        .get("/cloud-init/x1000c0s0b0n0/user-data")
        .await
        .text();
    assert_eq!(
        server
            .metric("nodeboot_rollout_nodes{namespace=\"hpc\",bootconfig=\"compute-rocky9\",generation=\"1\",state=\"served\"}")
            .await,
        1
    );
    let served = server.admin("/nodes/x1000c0s0b0n0").await.json();
    assert_eq!(
        served["lastBootScript"]["bootConfig"], "compute-rocky9",
        "{served}"
    );
    assert!(
        served["lastBootScript"]["time"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let docs = served["lastCloudInit"].as_object().unwrap();
    assert_eq!(
        docs.keys().collect::<Vec<_>>(),
        ["meta-data", "user-data"],
        "{served}"
    );

    // The node phones home by its instance-id (its name unless meta-data sets one).
    let reply = server
        .post_form(
            "/cloud-init/x1000c0s0b0n0/phone-home",
            STRANGER,
            &phone_home_form("x1000c0s0b0n0"),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let booted = server.admin("/nodes/x1000c0s0b0n0").await.json();
    assert_eq!(
        booted["lastPhoneHome"]["generation"], booted["lastBootScript"]["generation"],
        "{booted}"
    );
    assert_eq!(
        server
            .metric("nodeboot_rollout_nodes{namespace=\"hpc\",bootconfig=\"compute-rocky9\",generation=\"1\",state=\"booted\"}")
            .await,
        1
    );

    // OpenCHAMI BSS's endpoint history: last access per node and endpoint, in Unix seconds.
    let history = server
        .get("/boot/v1/endpoint-history?name=x1000c0s0b0n0")
        .await
        .json();
    let endpoints: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["name"], "x1000c0s0b0n0");
            assert!(e["last_epoch"].as_u64().unwrap() > 1_700_000_000, "{e}");
            e["endpoint"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        endpoints,
        ["bootscript", "meta-data", "user-data", "phone-home"]
    );
    let only_scripts = server
        .get("/boot/v1/endpoint-history?endpoint=bootscript")
        .await
        .json();
    assert_eq!(only_scripts.as_array().unwrap().len(), 1, "{only_scripts}");
}

/// Whether the admin report of node `id` shows a phone-home.
async fn phoned(server: &Server, id: &str) -> bool {
    let report = server.admin(&format!("/nodes/{id}")).await.json();
    report.get("lastPhoneHome").is_some()
}

#[tokio::test]
async fn phone_home_finds_the_node_by_name_mac_or_instance_id_and_checks_the_source() {
    let site = group(
        "g",
        "  - {name: n1, macs: [\"02:00:00:00:00:01\"], metaData: {instance-id: i-0001}}\n  - {name: n2, macs: [\"02:00:00:00:00:02\"], ip: 10.1.1.2}\n",
    );
    let dir = manifest_dir(&[
        ("site.yaml", &site),
        (
            "bc.yaml",
            &config("c", 0, "{matchLabels: {role: compute}}", "quiet"),
        ),
    ]);
    let server = Server::new(dir.path(), source_check());
    assert!(!phoned(&server, "n1").await);
    for id in ["i-0001", "02-00-00-00-00-01", "n1"] {
        let reply = server
            .post_form(
                &format!("/cloud-init/{id}/phone-home"),
                STRANGER,
                &phone_home_form(id),
            )
            .await;
        assert_eq!(reply.status, 200, "{id}: {reply:?}");
        assert!(phoned(&server, "n1").await, "{id}");
        assert!(!phoned(&server, "n2").await, "{id}");
    }

    // A node with an address phones home only from it, like its other cloud-init data.
    let detail = server
        .post_form(
            "/cloud-init/n2/phone-home",
            STRANGER,
            &phone_home_form("n2"),
        )
        .await
        .problem(403);
    assert!(detail.contains("192.0.2.10"), "{detail}");
    let reply = server
        .post_form(
            "/cloud-init/n2/phone-home",
            "10.1.1.2:5000",
            &phone_home_form("n2"),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(phoned(&server, "n2").await);

    let detail = server
        .post_form(
            "/cloud-init/nobody/phone-home",
            STRANGER,
            "instance_id=nobody",
        )
        .await
        .problem(404);
    assert!(detail.contains("nobody"), "{detail}");
    let detail = server
        .send(
            Method::POST,
            "/cloud-init/n1/phone-home",
            STRANGER,
            &[("content-type", "application/json")],
        )
        .await
        .problem(400);
    assert!(detail.contains("x-www-form-urlencoded"), "{detail}");
}

#[tokio::test]
async fn per_generation_instance_ids_name_the_generation_booted() {
    let site = group("g", "  - {name: n1, macs: [\"02:00:00:00:00:01\"]}\n");
    let bc = format!(
        "{}  cloudInit:\n    instanceIdPerGeneration: true\n",
        config("c", 0, "{matchLabels: {role: compute}}", "quiet")
    );
    let dir = manifest_dir(&[("site.yaml", &site), ("bc.yaml", &bc)]);
    let server = Server::new(dir.path(), source_check());
    let meta = server.get("/cloud-init/n1/meta-data").await.text();
    let report = server.admin("/nodes/n1").await.json();
    let generation = report["servedGeneration"].as_i64().expect("a generation");
    let instance_id = format!("n1.g{generation}");
    assert!(
        meta.contains(&format!("instance-id: {instance_id}")),
        "{meta}"
    );

    server.get("/boot/v1/bootscript?name=n1").await.text();
    // The node phones home with the previous generation's id: found, but not booted now.
    let old = format!("n1.g{}", generation - 1);
    let reply = server
        .post_form(
            &format!("/cloud-init/{old}/phone-home"),
            STRANGER,
            &phone_home_form(&old),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let report = server.admin("/nodes/n1").await.json();
    assert_eq!(
        report["lastPhoneHome"]["generation"],
        generation - 1,
        "{report}"
    );
    let series = format!(
        "nodeboot_rollout_nodes{{namespace=\"hpc\",bootconfig=\"c\",generation=\"{generation}\",state=\"booted\"}}"
    );
    assert_eq!(server.metric(&series).await, 0);
    // cloud-init's $INSTANCE_ID in the URL: the current one confirms this generation.
    let reply = server
        .post_form(
            &format!("/cloud-init/{instance_id}/phone-home"),
            STRANGER,
            &phone_home_form(&instance_id),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(server.metric(&series).await, 1);
}

#[tokio::test]
async fn unknown_macs_that_ask_are_listed_most_recent_first() {
    let server = Server::examples();
    assert_eq!(server.admin("/discovered").await.json(), json!([]));
    server
        .get("/boot/v1/bootscript?mac=02:00:00:99:00:01&arch=x86_64")
        .await
        .text();
    server
        .get("/boot/v1/bootscript?mac=02-00-00-99-00-01&arch=x86_64&retry=1")
        .await
        .text();
    // Known nodes are not discovered.
    server
        .get("/boot/v1/bootscript?mac=02:00:00:00:10:00")
        .await
        .text();
    let listed = server.admin("/discovered").await.json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let d = &listed[0];
    assert_eq!(d["mac"], "02:00:00:99:00:01");
    assert_eq!(d["arch"], "x86_64");
    assert_eq!(d["source"], "192.0.2.10");
    assert_eq!(d["count"], 2);
    // The example site's discovery BootConfig answered it.
    assert_eq!(d["bootConfig"], "hpc/discovery", "{d}");
    assert!(d["firstSeen"].as_str().unwrap() <= d["lastSeen"].as_str().unwrap());
}
