//! The Helm chart's own files against the project, without helm: its CRDs are the generated
//! ones and its appVersion is the crate's. (tests/helm.rs renders, lints and installs it.)

use serde_json::Value;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/nodeboot");

#[test]
fn chart_crds_are_byte_identical_to_the_generated_crds() {
    let names = |dir: &str| {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    let top = format!("{REPO}/crds");
    let chart = format!("{CHART}/crds");
    assert_eq!(
        names(&top),
        names(&chart),
        "charts/nodeboot/crds/ must hold the same files as crds/"
    );
    for name in names(&top) {
        let a = std::fs::read(format!("{top}/{name}")).expect("crd");
        let b = std::fs::read(format!("{chart}/{name}")).expect("crd");
        assert!(
            a == b,
            "charts/nodeboot/crds/{name} differs from crds/{name}: run `cp crds/*.yaml charts/nodeboot/crds/`"
        );
    }
}

#[test]
fn chart_app_version_is_the_crate_version() {
    let chart: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(format!("{CHART}/Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml parses");
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion must be Cargo.toml's version (it is the default image tag)"
    );
}
