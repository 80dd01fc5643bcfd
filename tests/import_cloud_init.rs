//! What `nodeboot import` makes of cloud-init data reads as Debian cloud-init reads it: the
//! group files' vendor-data (one multipart document, a part per group the node is in) and the
//! user-data made of BSS's cloud-init maps.

mod support;

use std::process::Command;

use support::Nodeboot;
use support::openchami as site;

/// The parts Debian cloud-init's own user-data processor finds in `doc`: (type, file name).
fn cloud_init_parts(doc: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc");
    std::fs::write(&path, doc).unwrap();
    // cloud-init's Python package is the system interpreter's (hack/install-test-deps.sh).
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            "import sys\nfrom cloudinit import user_data as ud\n\
             msg = ud.UserDataProcessor({}).process(open(sys.argv[1]).read())\n\
             for p in msg.walk():\n\
             \x20   if p.get_content_maintype() != 'multipart':\n\
             \x20       print(p.get_content_type(), p.get_filename())\n",
        )
        .arg(&path)
        .output()
        .expect("python3 with cloud-init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(t, f)| (t.to_owned(), f.to_owned()))
        .collect()
}

#[tokio::test]
async fn imported_vendor_data_and_user_data_read_as_cloud_init_reads_them() {
    let nodes = site::nodes(300);
    let dir = tempfile::tempdir().unwrap();
    let mut sources = site::write_smd(dir.path(), &nodes);
    sources.push(site::write_json(
        dir.path(),
        "bss.json",
        &site::bss_etcd(&nodes),
    ));
    sources.push(site::write_json(
        dir.path(),
        "groups.json",
        &site::ci_groups(),
    ));
    let out = dir.path().join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_nodeboot"))
        .arg("import")
        .args(&sources)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let nb = Nodeboot::serve(&out, &[]).await;
    let vendor_data = |xname: String| {
        let nb = &nb;
        async move {
            let (status, _, body) = nb
                .admin_get(&format!(
                    "/cloud-init/admin/impersonation/{xname}/vendor-data"
                ))
                .await;
            assert_eq!(status, 200);
            body
        }
    };
    let gpu = nodes
        .iter()
        .find(|n| n.groups == ["compute", "gpu"])
        .unwrap();
    let parts = cloud_init_parts(&vendor_data(gpu.xname.clone()).await);
    assert_eq!(
        parts,
        [
            ("text/cloud-config".to_owned(), "compute.yaml".to_owned()),
            ("text/jinja2".to_owned(), "gpu.yaml".to_owned()),
        ]
    );
    let compute = nodes.iter().find(|n| n.groups == ["compute"]).unwrap();
    let parts = cloud_init_parts(&vendor_data(compute.xname.clone()).await);
    assert_eq!(
        parts,
        [("text/cloud-config".to_owned(), "compute.yaml".to_owned())]
    );
    // In no group with a file: no vendor-data at all.
    let mgmt = nodes.iter().find(|n| n.role == "Management").unwrap();
    assert_eq!(vendor_data(mgmt.xname.clone()).await, "");

    // BSS's user-data map, as a cloud-config cloud-init's schema accepts.
    let debug = nodes
        .iter()
        .find(|n| site::has_xname_key(n) && !site::has_secret_user_data(n))
        .unwrap();
    let (_, _, user_data) = nb
        .admin_get(&format!(
            "/cloud-init/admin/impersonation/{}/user-data",
            debug.xname
        ))
        .await;
    let path = dir.path().join("user-data");
    std::fs::write(&path, &user_data).unwrap();
    let schema = Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(&path)
        .output()
        .expect("cloud-init is installed (hack/install-test-deps.sh)");
    let text = String::from_utf8_lossy(&schema.stdout).into_owned()
        + &String::from_utf8_lossy(&schema.stderr);
    assert!(
        schema.status.success() && text.contains("Valid cloud-config"),
        "{text}\n{user_data}"
    );
}
