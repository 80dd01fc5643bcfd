//! The cloud-config nodeboot serves for the examples passes Debian cloud-init's own schema check.

mod support;

use std::process::Command;

use support::{Nodeboot, manifest_dir};

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
    let dir = manifest_dir(&[
        ("site.yaml", include_str!("../examples/site.yaml")),
        (
            "bootconfigs.yaml",
            include_str!("../examples/bootconfigs.yaml"),
        ),
    ]);
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
