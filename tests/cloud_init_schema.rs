//! The cloud-config nodeboot serves for the examples passes Debian cloud-init's own schema check.

mod support;

use std::process::Command;

use support::manifests::{EXAMPLES_CONFIGS, EXAMPLES_SITE};
use support::process::stdout_of;
use support::{Nodeboot, examples, manifest_dir};

/// Runs `cloud-init schema --config-file` on `doc`; returns (success, output).
fn cloud_init_schema(doc: &str, name: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, doc).unwrap();
    let out = Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(&path)
        .output()
        .expect("cloud-init is installed (hack/install-test-deps.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn example_user_data_passes_cloud_init_schema() {
    let dir = examples();
    // The GPU nodes have static addresses; this client is not them.
    let nb = Nodeboot::serve(dir.path(), &["--cloud-init-source-check", "off"]).await;
    let nodes = [
        "x1000c0s0b0n0",
        "x1000c0s0b0n1",
        "x1000c0s1b0n0",
        "x1000c0s1b0n1",
        "x1001c0s0b0n0",
        "x1001c0s0b0n1",
        "02-00-00-00-99-99",
    ];
    let mut checked = 0;
    for node in nodes {
        for doc in ["user-data", "vendor-data"] {
            let (status, _, body) = nb.get(&format!("/cloud-init/{node}/{doc}")).await;
            assert_eq!(status, 200, "{node} {doc}");
            if body.is_empty() {
                continue;
            }
            assert!(body.starts_with("#cloud-config\n"), "{node} {doc}: {body}");
            let (ok, out) = cloud_init_schema(&body, doc);
            assert!(
                ok && out.contains("Valid cloud-config"),
                "{node} {doc} refused by cloud-init:\n{out}\n{body}"
            );
            checked += 1;
        }
    }
    assert!(checked >= nodes.len(), "only {checked} documents checked");
}

#[test]
fn the_check_refuses_invalid_cloud_config() {
    let (ok, out) = cloud_init_schema(
        "#cloud-config\nhostname: [1, 2]\nntp: {enabled: maybe}\n",
        "bad",
    );
    assert!(!ok, "{out}");
    assert!(out.contains("is not of type"), "{out}");
}

/// meta-data is YAML written by nodeboot's own emitter: cloud-init's YAML reader (PyYAML) must
/// read back exactly what the admin endpoint says the merged meta-data is.
#[tokio::test]
async fn meta_data_reads_back_in_cloud_inits_yaml_reader() {
    let tricky = "apiVersion: nodeboot.io/v1alpha1\nkind: NodeGroup\nmetadata: {name: g, namespace: hpc}\nspec:\n  metaData: {ip: 10.1.0.5, port: \"514\", answer: \"yes\", when: \"2024-01-01\", at: \"12:30\", nested: {a: [1, \"b: c\"]}, odd: \"x\\u0085y\", text: \"line1\\nline2 # not a comment\"}\n  nodes:\n  - {name: n1, macs: [\"02:00:00:00:00:01\"]}\n";
    let dir = manifest_dir(&[
        ("site.yaml", EXAMPLES_SITE),
        ("bootconfigs.yaml", EXAMPLES_CONFIGS),
        ("tricky.yaml", tricky),
    ]);
    let nb = Nodeboot::serve(dir.path(), &["--cloud-init-source-check", "off"]).await;
    for node in ["x1000c0s1b0n1", "x1001c0s0b0n0", "n1", "02-00-00-00-99-99"] {
        let (status, _, yaml) = nb.get(&format!("/cloud-init/{node}/meta-data")).await;
        assert_eq!(status, 200);
        let (_, _, report) = nb.admin_get(&format!("/nodes/{node}")).await;
        let want: serde_json::Value =
            serde_json::from_str::<serde_json::Value>(&report).unwrap()["metaData"].clone();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta-data");
        std::fs::write(&path, &yaml).unwrap();
        let out = Command::new("python3")
            .args([
                "-c",
                "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            ])
            .arg(&path)
            .output()
            .expect("python3 with PyYAML (installed with cloud-init)");
        let read_back = stdout_of(
            format_args!("PyYAML reading {node}'s meta-data\n{yaml}"),
            &out,
        );
        let got: serde_json::Value = serde_json::from_str(&read_back).unwrap();
        assert_eq!(got, want, "{node}: PyYAML read\n{yaml}");
    }
}
