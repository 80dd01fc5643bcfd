//! `crds/` must hold exactly what `nodeboot crds` prints.

#[test]
fn crds_directory_matches_generated_crds() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nodeboot"))
        .arg("crds")
        .output()
        .expect("nodeboot crds runs");
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/nodeboot.io.yaml"
    ))
    .unwrap();
    assert!(
        generated == committed,
        "crds/nodeboot.io.yaml is stale: run `cargo run -- crds > crds/nodeboot.io.yaml`"
    );
    // Both kinds, with the schema features the API server enforces.
    for needle in [
        "kind: NodeGroup",
        "kind: BootConfig",
        "x-kubernetes-list-map-keys:",
        "maxItems: 5000",
        "self.all(k, !k.startsWith('nodeboot.io/'))",
        "!(has(self.userData) && has(self.userDataSecretRef))",
        "isIP(self)",
        "shortNames:",
    ] {
        assert!(generated.contains(needle), "missing {needle}");
    }
}
