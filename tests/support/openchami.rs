//! A made-up OpenCHAMI site, generated deterministically at any size, in the shapes the
//! services export: SMD (components, Ethernet interfaces, groups, memberships), BSS (etcd and
//! Postgres back ends, every key kind), the `ochami discover static` inventory, the cloud-init
//! server (groups, cluster defaults, instance info), boot-service and metadata-service objects.
//! Written for these tests; no file is copied from OpenCHAMI.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub const K_COMPUTE: &str = "http://images.example/compute/vmlinuz";
pub const I_COMPUTE: &str = "http://images.example/compute/initramfs.img";
pub const K_DEBUG: &str = "http://images.example/compute-debug/vmlinuz";
pub const K_UAN: &str = "http://images.example/uan/vmlinuz";
pub const I_UAN: &str = "http://images.example/uan/initramfs.img";
pub const K_MGMT: &str = "http://images.example/mgmt/vmlinuz";
pub const K_MACKEY: &str = "http://images.example/mac-key/vmlinuz";
pub const K_NIDKEY: &str = "http://images.example/nid-key/vmlinuz";
pub const K_DISCOVERY: &str = "http://images.example/discovery/vmlinuz";
pub const PASSWORD: &str = "s3cret-root-pw";

#[derive(Debug, Clone)]
pub struct Node {
    pub i: usize,
    pub xname: String,
    pub nid: i64,
    pub macs: Vec<String>,
    pub ip: String,
    pub role: &'static str,
    pub sub_role: &'static str,
    pub arch: &'static str,
    pub groups: Vec<&'static str>,
}

pub fn mac(i: usize, iface: u8) -> String {
    format!(
        "02:00:{:02x}:{:02x}:{:02x}:{iface:02x}",
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255
    )
}

/// `n` nodes: five cabinets' worth of xnames, NIDs from 1, every third node with a second
/// interface, roles (a few Management, one Application in fifty, Compute, some without a role
/// as SMD often has), X86 and ARM (and some unknown) architectures, compute/gpu/uan groups.
pub fn nodes(n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| {
            let xname = format!(
                "x{}c{}s{}b0n{}",
                1000 + i / 512,
                (i / 64) % 8,
                (i / 4) % 16,
                i % 4
            );
            let mut macs = vec![mac(i, 1)];
            if i % 3 == 0 {
                macs.push(mac(i, 2));
            }
            let (role, sub_role) = if i < 4 {
                ("Management", "Master")
            } else if i % 50 == 10 {
                ("Application", "UAN")
            } else if i % 37 == 0 {
                ("", "")
            } else {
                ("Compute", "")
            };
            let arch = if i % 10 == 7 {
                "ARM"
            } else if i % 13 == 0 {
                ""
            } else {
                "X86"
            };
            let mut groups = Vec::new();
            match role {
                "Compute" => {
                    groups.push("compute");
                    if i % 8 == 0 {
                        groups.push("gpu");
                    }
                }
                "Application" => groups.push("uan"),
                _ => {}
            }
            Node {
                i,
                xname,
                nid: i as i64 + 1,
                macs,
                ip: format!("10.100.{}.{}", (i >> 8) & 255, i & 255),
                role,
                sub_role,
                arch,
                groups,
            }
        })
        .collect()
}

pub fn smd_components(nodes: &[Node]) -> Value {
    let mut components: Vec<Value> = nodes
        .iter()
        .map(|n| {
            json!({"ID": n.xname, "Type": "Node", "State": "Ready", "Flag": "OK", "Enabled": true,
                   "Role": n.role, "SubRole": n.sub_role, "NID": n.nid, "NetType": "Sling",
                   "Arch": n.arch, "Class": "River"})
        })
        .collect();
    // Not nodes: left out, and reported.
    components
        .push(json!({"ID": "x1000c0s0b0", "Type": "NodeBMC", "State": "Ready", "Arch": "X86"}));
    components.push(json!({"ID": "x1000", "Type": "Cabinet", "State": "Ready"}));
    json!({ "Components": components })
}

pub fn smd_interfaces(nodes: &[Node]) -> Value {
    let mut list: Vec<Value> = nodes
        .iter()
        .flat_map(|n| {
            n.macs.iter().enumerate().map(move |(k, m)| {
                json!({"ID": m.replace(':', ""), "Description": "", "MACAddress": m,
                       "LastUpdate": "2025-01-01T00:00:00Z", "ComponentID": n.xname, "Type": "Node",
                       "IPAddresses": if k == 0 { json!([{"IPAddress": n.ip, "Network": "NMN"}]) } else { json!([]) }})
            })
        })
        .collect();
    // A BMC's interface: its component is no node.
    list.push(json!({"ID": "02ffffff0001", "MACAddress": "02:ff:ff:ff:00:01", "ComponentID": "x1000c0s0b0", "Type": "NodeBMC", "IPAddresses": null}));
    Value::Array(list)
}

pub fn smd_groups(nodes: &[Node]) -> Value {
    let members = |g: &str| -> Vec<&str> {
        nodes
            .iter()
            .filter(|n| n.groups.contains(&g))
            .map(|n| n.xname.as_str())
            .collect()
    };
    json!([
        {"label": "compute", "description": "compute nodes", "tags": [], "exclusiveGroup": "", "members": {"ids": members("compute")}},
        {"label": "gpu", "description": "", "tags": ["a100"], "members": {"ids": members("gpu")}},
        {"label": "empty", "description": "nobody", "members": {"ids": []}},
    ])
}

pub fn smd_memberships(nodes: &[Node]) -> Value {
    Value::Array(
        nodes
            .iter()
            .filter(|n| n.groups.contains(&"uan"))
            .map(|n| json!({"id": n.xname, "groupLabels": ["uan"], "partitionName": ""}))
            .collect(),
    )
}

fn element(hosts: &[&str], kernel: &str, initrd: &str, params: &str, ci: Value) -> Value {
    json!({"hosts": hosts, "macs": null, "nids": null, "kernel": kernel, "initrd": initrd,
           "params": params, "cloud-init": ci})
}

fn no_ci() -> Value {
    json!({"meta-data": null, "user-data": null, "phone-home": {"pub_key_dsa": "", "pub_key_rsa": "", "pub_key_ecdsa": "", "instance_id": "", "hostname": "", "fqdn": ""}})
}

/// Nodes that get a BSS key of their own in `bss_etcd`: xname keys, bare MAC keys, nid keys.
pub fn has_xname_key(n: &Node) -> bool {
    n.role == "Compute" && n.i % 7 == 3
}
pub fn has_mac_key(n: &Node) -> bool {
    n.role == "Compute" && n.i % 97 == 5
}
pub fn has_nid_key(n: &Node) -> bool {
    n.role == "Compute" && n.i % 89 == 7
}
pub fn has_secret_user_data(n: &Node) -> bool {
    has_xname_key(n) && n.i % 70 == 3
}

/// BSS with the etcd back end: one element per key (xname, bare MAC, `nid<N>`, roles,
/// `Default`, `Global`, `Unknown-<arch>`) and image elements whose params BSS appends.
pub fn bss_etcd(nodes: &[Node]) -> Value {
    let mut list = vec![
        json!({"kernel": K_COMPUTE, "params": "console=ttyS0,115200"}),
        json!({"initrd": I_COMPUTE, "params": "rd.shell"}),
        element(
            &["Default"],
            K_COMPUTE,
            I_COMPUTE,
            "root=live:http://images.example/compute/rootfs.squashfs quiet",
            json!({"meta-data": {"image": "compute-v1"}, "user-data": null}),
        ),
        element(
            &["Application"],
            K_UAN,
            I_UAN,
            "root=live:http://images.example/uan/rootfs.squashfs spire_join_token=${SPIRE_JOIN_TOKEN}",
            json!({"meta-data": {"image": "uan-v3"}}),
        ),
        element(
            &["Management"],
            K_MGMT,
            "",
            "root=/dev/sda2 console=tty0",
            no_ci(),
        ),
        element(
            &["Global"],
            "",
            "",
            "",
            json!({"meta-data": {"ntp": "10.1.0.2", "syslog": "10.1.0.3"}}),
        ),
        element(&["Unknown-x86_64"], K_DISCOVERY, "", "discovery=1", no_ci()),
        element(
            &["Unknown-arm64"],
            K_DISCOVERY,
            "",
            "discovery=1 arch=arm64",
            no_ci(),
        ),
        element(
            &["Unknown-ppc64le"],
            K_DISCOVERY,
            "",
            "discovery=1",
            no_ci(),
        ),
        // A key nobody in SMD has.
        element(&["x9999c0s0b0n0"], K_COMPUTE, "", "orphan", no_ci()),
        element(&["02:ff:ee:dd:cc:01"], K_COMPUTE, "", "orphan-mac", no_ci()),
    ];
    for n in nodes {
        if has_xname_key(n) {
            let mut user_data = json!({"runcmd": [["touch", "/etc/debug-image"]]});
            if has_secret_user_data(n) {
                user_data["chpasswd"] =
                    json!({"expire": false, "list": format!("root:{PASSWORD}")});
            }
            list.push(element(
                &[&n.xname],
                K_DEBUG,
                I_COMPUTE,
                "root=live:http://images.example/compute-debug/rootfs.squashfs debug {{not-a-template}}",
                json!({"meta-data": {"rack_u": format!("{}", n.i % 42 + 1)}, "user-data": user_data}),
            ));
        }
        if has_mac_key(n) {
            list.push(element(
                &[&n.macs[0]],
                K_MACKEY,
                "",
                "root=nfs:10.1.0.9:/mac-key",
                no_ci(),
            ));
        }
        if has_nid_key(n) {
            list.push(element(
                &[&format!("nid{}", n.nid)],
                K_NIDKEY,
                "",
                "root=nfs:10.1.0.9:/nid-key",
                no_ci(),
            ));
        }
    }
    Value::Array(list)
}

/// BSS with the Postgres back end: entries naming nodes by host, MAC and NID, not aligned.
pub fn bss_postgres(nodes: &[Node]) -> Value {
    let third = nodes.len() / 3;
    let hosts: Vec<&str> = nodes[..third].iter().map(|n| n.xname.as_str()).collect();
    let macs: Vec<&str> = nodes[third..2 * third]
        .iter()
        .map(|n| n.macs[0].as_str())
        .collect();
    let nids: Vec<i64> = nodes[2 * third..2 * third + third / 2]
        .iter()
        .map(|n| n.nid)
        .collect();
    let debug_macs: Vec<&str> = nodes
        .iter()
        .filter(|n| n.i % 11 == 0)
        .map(|n| n.macs[0].as_str())
        .collect();
    json!([
        {"hosts": hosts, "macs": macs, "nids": nids, "kernel": K_COMPUTE, "initrd": I_COMPUTE,
         "params": "root=live:http://images.example/compute/rootfs.squashfs console=ttyS0,115200"},
        {"macs": debug_macs, "kernel": K_DEBUG, "initrd": I_COMPUTE, "params": "root=live:http://images.example/compute-debug/rootfs.squashfs debug"},
        {"hosts": ["x9999c9s9b0n0"], "kernel": K_COMPUTE, "params": "orphan"},
    ])
}

/// The `ochami discover static` inventory of `nodes`.
pub fn static_inventory(nodes: &[Node]) -> String {
    let mut y = String::from("# made-up site for nodeboot's tests\nnodes:\n");
    for n in nodes {
        y.push_str(&format!(
            "- name: nid{:04}\n  nid: {}\n  xname: {}\n  bmc_mac: de:ca:fc:0f:{:02x}:{:02x}\n  bmc_ip: 172.16.101.{}\n  groups: [{}]\n  interfaces:\n",
            n.nid,
            n.nid,
            n.xname,
            (n.i >> 8) & 255,
            n.i & 255,
            n.i % 250 + 1,
            n.groups.join(", ")
        ));
        for (k, m) in n.macs.iter().enumerate() {
            y.push_str(&format!("  - mac_addr: {m}\n    ip_addrs:\n"));
            if k == 0 {
                y.push_str(&format!(
                    "    - name: management\n      ip_addr: {}\n",
                    n.ip
                ));
            }
        }
    }
    y
}

/// The cloud-init server's groups (a map keyed by name, as it answers), cluster defaults and
/// instance info for a few nodes.
pub fn ci_groups() -> Value {
    use base64::Engine as _;
    let compute = "#cloud-config\nruncmd:\n- [systemctl, enable, --now, slurmd]\n";
    json!({
        "compute": {"name": "compute", "description": "compute nodes",
                    "meta-data": {"slurm_controller": "10.1.0.20"},
                    "file": {"content": base64::engine::general_purpose::STANDARD.encode(compute), "filename": "compute.yaml", "encoding": "base64"}},
        "gpu": {"name": "gpu", "meta-data": {"cuda": "12.4"},
                "file": {"content": "## template: jinja\n#cloud-config\nwrite_files:\n- path: /etc/cluster\n  content: {{ ds.meta_data.instance_data.v1.cluster_name }}\n", "filename": "gpu.yaml", "encoding": "plain"}},
        "uan": {"name": "uan", "description": "user access"},
        // Secret material has no place in vendor-data (a BootConfig): reported, not mapped.
        "admins": {"name": "admins", "file": {"content": "#cloud-config\nusers:\n- name: admin\n  passwd: $6$made-up$hash\n", "encoding": "plain"}},
    })
}

pub fn ci_defaults() -> Value {
    json!({"cloud_provider": "OpenCHAMI", "region": "lab", "availability-zone": "room-1",
           "cluster-name": "demo", "public-keys": ["ssh-ed25519 AAAAC3Nza-made-up admin@demo"],
           "base-url": "http://demo.example:8081/cloud-init", "short-name": "nid", "nid-length": 4})
}

pub fn ci_instances(nodes: &[Node]) -> Value {
    Value::Array(
        nodes
            .iter()
            .filter(|n| n.i % 100 == 1)
            .map(|n| json!({"id": n.xname, "instance-id": format!("i-{:06}", n.nid), "local-hostname": format!("login{}", n.i / 100), "instance-type": "standard"}))
            .collect(),
    )
}

/// boot-service Nodes and BootConfigurations, as a multi-document YAML file.
pub fn boot_service(nodes: &[Node]) -> String {
    let mut y = String::new();
    for n in nodes {
        y.push_str(&format!(
            "apiVersion: boot.openchami.io/v1\nkind: Node\nmetadata: {{name: {x}}}\nspec:\n  xname: {x}\n  nid: {nid}\n  bootMac: \"{mac}\"\n  role: {role}\n  hostname: cn{nid:03}\n  groups: [{groups}]\n  interfaces:\n  - {{mac: \"{mac}\", ip: {ip}, type: management}}\n---\n",
            x = n.xname,
            nid = n.nid,
            mac = n.macs[0],
            role = if n.role.is_empty() { "Compute" } else { n.role },
            groups = n.groups.join(", "),
            ip = n.ip,
        ));
    }
    let config = |name: &str, selectors: &str, kernel: &str, params: &str, priority: i64| {
        format!(
            "apiVersion: boot.openchami.io/v1\nkind: BootConfiguration\nmetadata: {{name: {name}}}\nspec:\n{selectors}  kernel: {kernel}\n  initrd: {I_COMPUTE}\n  params: \"{params}\"\n  priority: {priority}\n---\n"
        )
    };
    y.push_str(&config("fallback", "", K_COMPUTE, "root=live:fallback", 10));
    y.push_str(&config(
        "compute",
        "  groups: [compute]\n",
        K_COMPUTE,
        "root=live:compute",
        50,
    ));
    y.push_str(&config(
        "gpu",
        "  groups: [compute, gpu]\n",
        K_DEBUG,
        "root=live:gpu",
        20,
    ));
    y.push_str(&config(
        "everyone",
        "  hosts: [\"*\"]\n",
        K_UAN,
        "root=live:everyone",
        5,
    ));
    y.push_str(&config(
        "three-hosts",
        &format!(
            "  hosts: [{}, {}, {}]\n",
            nodes[8].xname, nodes[16].xname, nodes[21].xname
        ),
        K_MGMT,
        "root=live:three",
        90,
    ));
    y.push_str(&config(
        "one-mac",
        &format!("  macs: [\"{}\"]\n", nodes[24].macs[0]),
        K_MACKEY,
        "root=live:mac",
        0,
    ));
    y.push_str(&config(
        "one-nid",
        &format!("  nids: [{}]\n", nodes[25].nid),
        K_NIDKEY,
        "root=live:nid",
        0,
    ));
    y.push_str(&config(
        "s3-image",
        "  groups: [uan]\n",
        "s3://boot-images/uan/vmlinuz",
        "root=live:s3",
        99,
    ));
    y.push_str("apiVersion: boot.openchami.io/v1\nkind: BMC\nmetadata: {name: x1000c0s0b0}\nspec: {xname: x1000c0s0b0}\n");
    y
}

/// metadata-service objects (its group templates, cluster defaults, instance info).
pub fn metadata_service(nodes: &[Node]) -> String {
    format!(
        "apiVersion: cloud-init.openchami.io/v1\nkind: Group\nmetadata: {{name: compute}}\nspec:\n  description: compute\n  template: |\n    #cloud-config\n    runcmd:\n    - [echo, \"{{{{ ds.meta_data.cluster_name }}}}\"]\n  metaData: {{slurm: \"10.1.0.20\"}}\n---\napiVersion: cloud-init.openchami.io/v1\nkind: ClusterDefaults\nmetadata: {{name: default}}\nspec:\n  base_url: http://demo.example/cloud-init\n  cluster_name: demo\n  short_name: cn\n  nid_length: 3\n---\napiVersion: cloud-init.openchami.io/v1\nkind: InstanceInfo\nmetadata: {{name: {x}}}\nspec:\n  instance_id: i-special\n  local_hostname: special-one\n",
        x = nodes[2].xname
    )
}

/// Writes `value` as JSON to `dir/name`.
pub fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).expect("json")).expect("write");
    path
}

pub fn write_text(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// Every SMD export of `nodes` written into `dir`; returns the paths.
pub fn write_smd(dir: &Path, nodes: &[Node]) -> Vec<PathBuf> {
    vec![
        write_json(dir, "smd-components.json", &smd_components(nodes)),
        write_json(dir, "smd-ethernet-interfaces.json", &smd_interfaces(nodes)),
        write_json(dir, "smd-groups.json", &smd_groups(nodes)),
        write_json(dir, "smd-memberships.json", &smd_memberships(nodes)),
    ]
}
