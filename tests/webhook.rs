//! The validating admission webhook through the real API server: a
//! ValidatingWebhookConfiguration that calls a `nodeboot run` on loopback by URL, so that
//! `kubectl apply` of each kind of bad object is refused with nodeboot's message and a good one
//! passes, each review counted on /metrics; certificate rotation forced by writing expired
//! certificates into the Secret; and what `failurePolicy: Fail` does when no replica answers.
//!
//! The test API server is shared with other tests: the configuration selects this test's
//! namespace only and is deleted when the test ends (or its process dies).

mod support;

use std::time::Duration;

use rcgen::{CertificateParams, IsCa, KeyPair};
use serde_json::Value;
use support::apiserver::{self, TestApi};
use support::process::OnExit;
use support::wait::eventually;
use support::{Nodeboot, free_port};

const SECRET: &str = "nodeboot-webhook-cert";

fn configuration(name: &str, namespace: &str, port: u16) -> String {
    let webhook = |kind: &str, resource: &str| {
        format!(
            r#"- name: {kind}.nodeboot.io
  clientConfig: {{url: "https://127.0.0.1:{port}/validate"}}
  rules:
  - {{apiGroups: [nodeboot.io], apiVersions: [v1alpha1], operations: [CREATE, UPDATE], resources: [{resource}], scope: Namespaced}}
  namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {namespace}}}}}
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
  timeoutSeconds: 10
"#
        )
    };
    format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: {name}}}\nwebhooks:\n{}{}",
        webhook("bootconfigs", "bootconfigs"),
        webhook("nodegroups", "nodegroups")
    )
}

fn boot_config(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {{name: {name}}}\nspec:\n  kernel: http://images.example/vmlinuz\n{spec}"
    )
}

fn node_group(name: &str, nodes: &str) -> String {
    format!(
        "apiVersion: nodeboot.io/v1alpha1\nkind: NodeGroup\nmetadata: {{name: {name}}}\nspec:\n  nodes:\n{nodes}"
    )
}

/// kubectl apply, expected to be refused by nodeboot's webhook with `needle` in the message.
fn refused(api: &TestApi, ns: &str, yaml: &str, needle: &str) -> String {
    let out = api.apply(ns, yaml);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "applied, but should be refused:\n{yaml}"
    );
    assert!(
        stderr.contains("denied the request") && stderr.contains(needle),
        "refused, but not by nodeboot's webhook saying {needle:?}:\n{stderr}"
    );
    eprintln!("refused as expected: {stderr}");
    stderr
}

fn secret_data(api: &TestApi, ns: &str, key: &str) -> String {
    api.get_json(ns, &format!("secret/{SECRET}"))["data"][key]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn ca_bundles(api: &TestApi, name: &str) -> Vec<String> {
    let config: Value = serde_json::from_str(&api.kubectl_ok(&[
        "get",
        "validatingwebhookconfiguration",
        name,
        "-o",
        "json",
    ]))
    .expect("json");
    config["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .map(|w| {
            w["clientConfig"]["caBundle"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// An expired certificate and its key, as PEM: what a Secret holds after nobody renewed it.
fn expired(is_ca: bool) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    if is_ca {
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_objects_are_refused_at_apply_and_certificates_rotate() {
    let api = apiserver::shared();
    let ns = api.fresh_namespace("webhook");
    let name = format!("nodeboot-test-{ns}");
    let port = free_port();
    // Deleted however the test ends: no other test's objects ever meet this webhook.
    let _cleanup = OnExit::run(
        api.kubectl_bin().to_str().expect("path"),
        &[
            "--kubeconfig",
            &api.kubeconfig_str(),
            "delete",
            "validatingwebhookconfiguration",
            &name,
            "--ignore-not-found",
        ],
        &[],
    );
    api.apply_ok(&ns, &configuration(&name, &ns, port));

    let log = std::env::temp_dir().join(format!("nodeboot-webhook-{ns}.log"));
    let args: Vec<String> = [
        "run",
        "--namespace",
        &ns,
        "--leader-election",
        "off",
        "--webhook-listen",
        &format!("127.0.0.1:{port}"),
        "--webhook-configuration",
        &name,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut nodeboot = Nodeboot::spawn(&args, &[("KUBECONFIG", &api.kubeconfig_str())], &log).await;

    // The leader issues a CA and a serving certificate and puts the CA into the configuration.
    let good_group = node_group(
        "rack-a",
        "  - {name: x1000c0s0b0n0, macs: [\"02:00:00:00:00:01\"], nid: 1}\n",
    );
    eventually(
        "the webhook admits a good NodeGroup",
        Duration::from_secs(30),
        || api.apply(&ns, &good_group).status.success().then_some(()),
    )
    .await;
    let bundles = ca_bundles(api, &name);
    assert_eq!(bundles.len(), 2);
    assert!(
        bundles
            .iter()
            .all(|b| *b == secret_data(api, &ns, "ca.crt"))
    );

    // Each kind of bad object, refused with a message that says what to fix.
    refused(
        api,
        &ns,
        &boot_config("broken-template", "  params: \"console={{ node.name\"\n"),
        "template params",
    );
    refused(
        api,
        &ns,
        &boot_config(
            "not-yaml",
            "  cloudInit:\n    userData: \"#cloud-config\\nhostname: [{{ node.name }}\\n\"\n",
        ),
        "not valid YAML",
    );
    refused(
        api,
        &ns,
        &boot_config(
            "unsafe-for-ipxe",
            "  params: \"console={{ node.name ~ ';reboot' }}\"\n",
        ),
        "may not reach an iPXE script",
    );
    let long_key = "k".repeat(64);
    refused(
        api,
        &ns,
        &boot_config(
            "bad-selector",
            &format!(
                "  nodeSelector:\n    matchExpressions:\n    - {{key: {long_key}, operator: Exists}}\n"
            ),
        ),
        "is not a valid label key",
    );
    api.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "-n",
        &ns,
        "unlabelled",
        "--from-literal=user-data=#cloud-config",
    ]);
    let secret_ref = |secret: &str| {
        boot_config(
            &format!("uses-{secret}"),
            &format!("  cloudInit:\n    userDataSecretRef: {{name: {secret}, key: user-data}}\n"),
        )
    };
    refused(
        api,
        &ns,
        &secret_ref("unlabelled"),
        &format!("kubectl label secret -n {ns} unlabelled nodeboot.io/user-data=true"),
    );
    let stderr = refused(
        api,
        &ns,
        &node_group(
            "rack-b",
            "  - {name: x1000c0s0b1n0, macs: [\"02-00-00-00-00-01\"], nid: 2}\n  - {name: x1000c0s0b0n0, macs: [\"02:00:00:00:00:02\"], nid: 1}\n",
        ),
        "MAC 02:00:00:00:00:01 is already claimed by node x1000c0s0b0n0 of NodeGroup rack-a",
    );
    assert!(
        stderr.contains("name x1000c0s0b0n0 is already claimed"),
        "{stderr}"
    );
    assert!(stderr.contains("NID 1 is already claimed"), "{stderr}");

    // An AdmissionReview without a request is a 400 and an error, not a verdict.
    let insecure = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let garbage = insecure
        .post(format!("https://127.0.0.1:{port}/validate"))
        .header("content-type", "application/json")
        .body(r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#)
        .send()
        .await
        .expect("webhook answers");
    assert_eq!(garbage.status(), 400);

    // The reviews so far on /metrics: each refusal above counted once, by kind.
    let metrics = nodeboot.admin_get("/metrics").await.2;
    let reviews = |kind: &str, result: &str| {
        let series =
            format!("nodeboot_admission_reviews_total{{kind=\"{kind}\",result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
    };
    assert_eq!(reviews("BootConfig", "refused"), 5, "{metrics}");
    assert_eq!(reviews("NodeGroup", "refused"), 1, "{metrics}");
    assert!(reviews("NodeGroup", "allowed") >= 1, "{metrics}");
    assert_eq!(reviews("BootConfig", "allowed"), 0, "{metrics}");
    assert_eq!(reviews("other", "error"), 1, "{metrics}");

    // Good objects pass; a Secret that does not exist yet is a warning, not a refusal.
    api.apply_ok(
        &ns,
        &boot_config(
            "compute",
            "  params: console=ttyS0 host={{ node.name }}\n  nodeSelector: {}\n",
        ),
    );
    let out = api.apply(&ns, &secret_ref("later"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("Secret {ns}/later does not exist yet")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Forced expiry of the serving certificate: the leader issues a new one from the same CA.
    let ca_before = secret_data(api, &ns, "ca.crt");
    let (cert, key) = expired(false);
    api.patch_merge(
        &ns,
        &format!("secret/{SECRET}"),
        &serde_json::json!({"data": {"tls.crt": b64(&cert), "tls.key": b64(&key)}}).to_string(),
    );
    eventually("a new serving certificate", Duration::from_secs(30), || {
        let now = secret_data(api, &ns, "tls.crt");
        (now != b64(&cert)).then_some(())
    })
    .await;
    assert_eq!(secret_data(api, &ns, "ca.crt"), ca_before);
    let loads = |n: &Nodeboot| {
        n.logs()
            .matches("webhook serving certificate loaded")
            .count()
    };
    eventually(
        "the replica serves the new certificate",
        Duration::from_secs(30),
        || (loads(&nodeboot) >= 2).then_some(()),
    )
    .await;
    refused(
        api,
        &ns,
        &boot_config("still-broken", "  params: \"{{ node.name\"\n"),
        "template params",
    );

    // Forced expiry of the CA: a new CA (the expired one is not kept), the configuration's
    // caBundle follows, and the API server still reaches the webhook.
    let (ca, ca_key) = expired(true);
    api.patch_merge(
        &ns,
        &format!("secret/{SECRET}"),
        &serde_json::json!({"data": {"ca.crt": b64(&ca), "ca.key": b64(&ca_key)}}).to_string(),
    );
    let new_ca = eventually(
        "a new CA in the configuration",
        Duration::from_secs(30),
        || {
            let now = secret_data(api, &ns, "ca.crt");
            (now != b64(&ca)
                && now != ca_before
                && ca_bundles(api, &name).iter().all(|b| *b == now))
            .then_some(now)
        },
    )
    .await;
    assert!(!new_ca.is_empty());
    eventually(
        "the replica serves a certificate of the new CA",
        Duration::from_secs(30),
        || (loads(&nodeboot) >= 3).then_some(()),
    )
    .await;
    eventually(
        "the webhook answers with the new certificate",
        Duration::from_secs(30),
        || {
            let out = api.apply(
                &ns,
                &boot_config("broken-again", "  params: \"{{ node.name\"\n"),
            );
            String::from_utf8_lossy(&out.stderr)
                .contains("template params")
                .then_some(())
        },
    )
    .await;

    // failurePolicy Fail: with no replica answering, changes are refused, not let through.
    nodeboot.terminate();
    let out = api.apply(&ns, &boot_config("while-down", "  params: console=ttyS0\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "applied while the webhook was down");
    assert!(stderr.contains("failed calling webhook"), "{stderr}");

    api.kubectl_ok(&["delete", "validatingwebhookconfiguration", &name]);
    api.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
