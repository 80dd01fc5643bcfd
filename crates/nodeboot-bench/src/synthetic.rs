//! A synthetic site for benchmarks: N nodes in cabinets of up to 5000, with a realistic mix of
//! BootConfigs (a compute image, a GPU image at higher priority, per-cabinet overrides, a few
//! pinned nodes, a discovery image, and one deliberate tie).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use nodeboot_core::crd::{
    Arch, BootConfig, BootConfigSpec, CloudInit, NodeGroup, NodeGroupSpec, NodeSpec,
};
use nodeboot_core::snapshot::Desired;

pub const NAMESPACE: &str = "hpc";
pub const CABINET_SIZE: usize = 5000;

/// The MAC of node number `i`: `02:` (locally administered) then `i` in 40 bits.
pub fn node_mac(i: usize) -> String {
    mac_with_prefix(0x02, i)
}

/// The MAC of the `i`th machine no NodeGroup lists (the discovery storm's askers): `06:` then
/// `i` in 40 bits, so that it can never be a node's.
pub fn unknown_mac(i: usize) -> String {
    mac_with_prefix(0x06, i)
}

fn mac_with_prefix(prefix: u8, i: usize) -> String {
    let b = (i as u64).to_be_bytes();
    format!(
        "{prefix:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[3], b[4], b[5], b[6], b[7]
    )
}

pub fn node_name(cabinet: usize, i: usize) -> String {
    format!(
        "x{}c0s{}b0n{}",
        1000 + cabinet,
        (i % CABINET_SIZE) / 4,
        i % 4
    )
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn config(name: &str, priority: i32, selector: LabelSelector) -> BootConfig {
    let mut bc = BootConfig::new(
        name,
        BootConfigSpec {
            node_selector: Some(selector),
            priority,
            kernel: format!("http://images.example/{name}/vmlinuz"),
            initrd: Some(format!("http://images.example/{name}/initrd.img")),
            params: format!(
                "root=live:http://images.example/{name}/rootfs.squashfs ip=dhcp console=ttyS0,115200 syslog={{{{ meta.syslog_aggregator }}}}"
            ),
            auto_params: true,
            script: String::new(),
            grub_script: String::new(),
            cloud_init: Some(CloudInit {
                meta_data: [("image".to_owned(), serde_json::Value::from(name))].into(),
                user_data: Some(
                    "#cloud-config\nhostname: {{ node.hostname }}\nwrite_files:\n- path: /etc/rsyslog.d/90-site.conf\n  content: |\n    *.* @@{{ meta.syslog_aggregator }}:514\n".into(),
                ),
                vendor_data: Some("#cloud-config\nntp:\n  servers: [{{ meta.ntp_server }}]\n".into()),
                ..Default::default()
            }),
        },
    );
    bc.metadata.namespace = Some(NAMESPACE.into());
    bc.metadata.generation = Some(1);
    bc
}

/// The discovery image: what an unknown MAC boots. It must render without any NodeGroup's
/// meta-data (an unknown node has none), so that a discovery storm measures the real path, a
/// render per new MAC, rather than the waiting script.
fn discovery_config() -> BootConfig {
    let mut bc = config(
        "discovery",
        0,
        LabelSelector {
            match_labels: Some(labels(&[("nodeboot.io/known", "false")])),
            ..Default::default()
        },
    );
    bc.spec.params = "root=live:http://images.example/discovery/rootfs.squashfs ip=dhcp console=ttyS0,115200 nodeboot.discover={{ node.mac }}".into();
    if let Some(cloud_init) = bc.spec.cloud_init.as_mut() {
        cloud_init.user_data = Some(
            "#cloud-config\nphone_home:\n  url: http://10.1.0.9/discovered/{{ node.mac }}\n  post: [instance_id, hostname]\n".into(),
        );
        cloud_init.vendor_data = None;
    }
    bc
}

fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
    }
}

/// Builds a site of `nodes` nodes.
pub fn site(nodes: usize) -> Desired {
    let cabinets = nodes.div_ceil(CABINET_SIZE).max(1);
    let mut node_groups = Vec::with_capacity(cabinets);
    for c in 0..cabinets {
        let first = c * CABINET_SIZE;
        let last = ((c + 1) * CABINET_SIZE).min(nodes);
        // Every tenth cabinet has GPUs.
        let gpu = c % 10 == 9;
        let mut group_labels =
            labels(&[("role", "compute"), ("cabinet", &format!("x{}", 1000 + c))]);
        if gpu {
            group_labels.insert("gpu".into(), "a100".into());
        }
        let specs = (first..last)
            .map(|i| NodeSpec {
                name: node_name(c, i),
                macs: vec![node_mac(i)],
                nid: Some(i as i64 + 1),
                ip: Some(format!(
                    "10.{}.{}.{}",
                    100 + (i >> 16),
                    (i >> 8) & 0xff,
                    i & 0xff
                )),
                hostname: Some(format!("nid{:06}", i + 1)),
                arch: Some(Arch::X86_64),
                labels: if i % 50 == 0 {
                    labels(&[("slot", "login-capable")])
                } else {
                    BTreeMap::new()
                },
                meta_data: BTreeMap::new(),
            })
            .collect();
        let mut ng = NodeGroup::new(
            &format!("cabinet-x{}", 1000 + c),
            NodeGroupSpec {
                labels: group_labels,
                meta_data: [
                    (
                        "syslog_aggregator".to_owned(),
                        serde_json::Value::from("10.1.0.5"),
                    ),
                    ("ntp_server".to_owned(), serde_json::Value::from("10.1.0.2")),
                ]
                .into(),
                nodes: specs,
            },
        );
        ng.metadata.namespace = Some(NAMESPACE.into());
        ng.metadata.generation = Some(1);
        node_groups.push(std::sync::Arc::new(ng));
    }

    let mut boot_configs = vec![
        config(
            "compute",
            0,
            LabelSelector {
                match_labels: Some(labels(&[("role", "compute")])),
                ..Default::default()
            },
        ),
        config(
            "gpu",
            10,
            LabelSelector {
                match_labels: Some(labels(&[("role", "compute")])),
                match_expressions: Some(vec![expr("gpu", "Exists", &[])]),
            },
        ),
        config(
            "login",
            20,
            LabelSelector {
                match_labels: Some(labels(&[("slot", "login-capable")])),
                match_expressions: Some(vec![expr("cabinet", "In", &["x1000", "x1001"])]),
            },
        ),
        discovery_config(),
        // Two images claim the same cabinet at the same priority: its nodes are Conflicts.
        config(
            "canary-a",
            5,
            LabelSelector {
                match_labels: Some(labels(&[("cabinet", "x1002")])),
                ..Default::default()
            },
        ),
        config(
            "canary-b",
            5,
            LabelSelector {
                match_expressions: Some(vec![expr("cabinet", "In", &["x1002", "x1003"])]),
                ..Default::default()
            },
        ),
    ];
    // Per-cabinet test images that match nothing at this size, as sites accumulate them.
    for k in 0..6 {
        boot_configs.push(config(
            &format!("test-image-{k}"),
            3,
            LabelSelector {
                match_expressions: Some(vec![expr("cabinet", "In", &[&format!("x{}", 9000 + k)])]),
                ..Default::default()
            },
        ));
    }
    // A handful of nodes pinned by name to a debug kernel.
    let pinned: Vec<String> = (0..5).map(|i| node_name(0, i * 7)).collect();
    let pinned: Vec<&str> = pinned.iter().map(String::as_str).collect();
    boot_configs.push(config(
        "debug",
        100,
        LabelSelector {
            match_expressions: Some(vec![expr("nodeboot.io/name", "In", &pinned)]),
            ..Default::default()
        },
    ));

    Desired {
        node_groups,
        boot_configs,
        ..Default::default()
    }
}

/// The site as multi-document YAML, one file's worth per NodeGroup plus one for BootConfigs.
pub fn site_manifests(desired: &Desired) -> Result<Vec<(String, String)>, serde_yaml_ng::Error> {
    let mut files = Vec::new();
    for ng in &desired.node_groups {
        let name = ng.metadata.name.clone().unwrap_or_default();
        files.push((format!("{name}.yaml"), serde_yaml_ng::to_string(&**ng)?));
    }
    let mut configs = String::new();
    for bc in &desired.boot_configs {
        configs.push_str("---\n");
        configs.push_str(&serde_yaml_ng::to_string(bc)?);
    }
    files.push(("bootconfigs.yaml".into(), configs));
    Ok(files)
}
