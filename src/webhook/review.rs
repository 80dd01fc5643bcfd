//! What the webhook decides about one object, with the core's own checks: the same compile
//! (spec rules, selector, templates tried on a sample node, Secret reference) that a rebuild
//! runs, and the same duplicate rule the resolution applies. Pure: the handler gathers what
//! the cluster says (other NodeGroups, the referenced Secret) and passes it in.

use std::collections::HashMap;
use std::sync::Arc;

use nodeboot_core::compile::{CompileError, CompiledBootConfig};
use nodeboot_core::crd::{BootConfig, NodeGroup, ObjectId, validate_node_group};
use nodeboot_core::labels::{USER_DATA_SECRET, shown};
use nodeboot_core::mac::Mac;
use nodeboot_core::secrets::Secrets;

/// The webhook's answer: refused with a reason, or allowed (with warnings kubectl prints).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub refusal: Option<String>,
    pub warnings: Vec<String>,
}

impl Verdict {
    fn refuse(message: impl Into<String>) -> Verdict {
        Verdict {
            refusal: Some(message.into()),
            warnings: Vec::new(),
        }
    }
}

/// What the cluster says about the Secret a BootConfig's `userDataSecretRef` names.
pub enum ReferencedSecret<'a> {
    /// No reference.
    None,
    /// It exists and opted in: the webhook's watch holds it (and its data, to check the key).
    OptedIn(&'a Secrets),
    /// It exists without the opt-in label.
    NotOptedIn,
    /// No Secret by that name (yet).
    Missing,
    /// The API server did not say.
    Unknown,
}

pub fn review_boot_config(config: &BootConfig, secret: ReferencedSecret<'_>) -> Verdict {
    let id = ObjectId::of(&config.metadata);
    let reference = config
        .spec
        .cloud_init
        .as_ref()
        .and_then(|c| c.user_data_secret_ref.as_ref());
    // The whole spec is checked by the spec rules first (they also refuse userData together
    // with a reference); then templates and selector are compiled without the Secret, whose
    // checks follow, so that a missing Secret can be a warning instead of a refusal.
    if let Err(e) = nodeboot_core::crd::validate_boot_config(&config.spec) {
        return Verdict::refuse(e.to_string());
    }
    let mut without_secret = config.spec.clone();
    if let Some(ci) = without_secret.cloud_init.as_mut() {
        ci.user_data_secret_ref = None;
    }
    if let Err(e) = CompiledBootConfig::compile(&id, None, &without_secret, &Secrets::default()) {
        return Verdict::refuse(compile_message(&e));
    }
    let Some(reference) = reference else {
        return Verdict::default();
    };
    let (ns, name) = (&id.namespace, &reference.name);
    match secret {
        ReferencedSecret::None => Verdict::default(),
        ReferencedSecret::OptedIn(secrets) => match secrets.get_text(ns, name, &reference.key) {
            Ok(_) => Verdict::default(),
            Err(e) => Verdict::refuse(format!("spec.cloudInit.userDataSecretRef: {e}")),
        },
        ReferencedSecret::NotOptedIn => Verdict::refuse(format!(
            "spec.cloudInit.userDataSecretRef: Secret {ns}/{name} exists but is not labelled \
             {USER_DATA_SECRET}=true, and nodeboot reads only Secrets that opt in; if this \
             Secret is meant for boot user-data, run: kubectl label secret -n {ns} {name} \
             {USER_DATA_SECRET}=true"
        )),
        // Allowed: `kubectl apply -f dir/` may create the BootConfig before its Secret. The
        // status says the same until the Secret appears.
        ReferencedSecret::Unknown => Verdict {
            refusal: None,
            warnings: vec![format!(
                "spec.cloudInit.userDataSecretRef: nodeboot could not check Secret {ns}/{name} \
                 now; the BootConfig's status will say whether it can be used"
            )],
        },
        ReferencedSecret::Missing => Verdict {
            refusal: None,
            warnings: vec![format!(
                "spec.cloudInit.userDataSecretRef: Secret {ns}/{name} does not exist yet; \
                 nodes will not get this BootConfig's user-data until it is created with the \
                 label {USER_DATA_SECRET}=true"
            )],
        },
    }
}

fn compile_message(e: &CompileError) -> String {
    match e {
        CompileError::Render(r) => format!(
            "{r} (every template is rendered for a sample node named x0c0s0b0n0 when it is \
             applied; fix the template so that it renders)"
        ),
        other => other.to_string(),
    }
}

/// How many clashes one refusal lists: enough to act on, never the size of the inventory.
const LISTED_CLASHES: usize = 5;

/// Refuses a NodeGroup that claims a MAC, name or NID that another NodeGroup of the namespace
/// (`others`: the webhook's watched inventory) or another of its own nodes already claims.
pub fn review_node_group(group: &NodeGroup, others: &[Arc<NodeGroup>]) -> Verdict {
    if let Err(e) = validate_node_group(&group.spec) {
        return Verdict::refuse(e.to_string());
    }
    let own_name = group.metadata.name.as_deref().unwrap_or_default();
    let namespace = group.metadata.namespace.as_deref().unwrap_or_default();
    let mut claims = Claims::default();
    for other in others {
        let other_name = other.metadata.name.as_deref().unwrap_or_default();
        if other_name == own_name || other.metadata.namespace.as_deref() != Some(namespace) {
            continue;
        }
        for node in &other.spec.nodes {
            let owner = format!("node {} of NodeGroup {other_name}", node.name);
            claims.claim(node, &owner, |_, _| {});
        }
    }
    let mut clashes = Vec::new();
    for (i, node) in group.spec.nodes.iter().enumerate() {
        let here = format!("spec.nodes[{i}] ({})", shown(&node.name));
        let owner = format!("spec.nodes[{i}] of this NodeGroup");
        claims.claim(node, &owner, |what, holder| {
            clashes.push(format!("{here}: {what} is already claimed by {holder}"));
        });
    }
    if clashes.is_empty() {
        return Verdict::default();
    }
    let total = clashes.len();
    let mut message = clashes
        .into_iter()
        .take(LISTED_CLASHES)
        .collect::<Vec<_>>()
        .join("; ");
    if total > LISTED_CLASHES {
        message.push_str(&format!("; and {} more", total - LISTED_CLASHES));
    }
    message.push_str(
        ". A MAC, name or NID must belong to one node of the namespace: remove or change it here, \
         or remove it from the other node first",
    );
    Verdict::refuse(message)
}

/// Who holds each MAC, name and NID seen so far.
#[derive(Default)]
struct Claims {
    macs: HashMap<Mac, String>,
    names: HashMap<String, String>,
    nids: HashMap<i64, String>,
}

impl Claims {
    /// Records `node`'s claims for `owner`; calls `clash(what, holder)` for each one already
    /// held by someone else (the first holder keeps it).
    fn claim(
        &mut self,
        node: &nodeboot_core::crd::NodeSpec,
        owner: &str,
        mut clash: impl FnMut(String, &str),
    ) {
        for mac in node.macs.iter().filter_map(|m| m.parse::<Mac>().ok()) {
            match self.macs.get(&mac) {
                Some(holder) if holder != owner => clash(format!("MAC {mac}"), holder),
                Some(_) => {}
                None => {
                    self.macs.insert(mac, owner.to_owned());
                }
            }
        }
        match self.names.get(&node.name) {
            Some(holder) if holder != owner => {
                clash(format!("name {}", shown(&node.name)), holder);
            }
            Some(_) => {}
            None => {
                self.names.insert(node.name.clone(), owner.to_owned());
            }
        }
        if let Some(nid) = node.nid {
            match self.nids.get(&nid) {
                Some(holder) if holder != owner => clash(format!("NID {nid}"), holder),
                Some(_) => {}
                None => {
                    self.nids.insert(nid, owner.to_owned());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Secret;
    use nodeboot_core::crd::NodeSpec;

    fn boot_config(yaml: &str) -> BootConfig {
        let mut bc: BootConfig = serde_yaml_ng::from_str(&format!(
            "apiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {{name: bc, namespace: hpc}}\nspec:\n{yaml}"
        ))
        .unwrap();
        bc.metadata.namespace = Some("hpc".into());
        bc
    }

    fn group(name: &str, nodes: &[(&str, &str, Option<i64>)]) -> NodeGroup {
        let mut g = NodeGroup::new(
            name,
            nodeboot_core::crd::NodeGroupSpec {
                nodes: nodes
                    .iter()
                    .map(|(n, mac, nid)| NodeSpec {
                        name: (*n).into(),
                        macs: vec![(*mac).into()],
                        nid: *nid,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        );
        g.metadata.namespace = Some("hpc".into());
        g
    }

    const KERNEL: &str = "  kernel: http://images/vmlinuz\n";

    #[test]
    fn a_good_boot_config_passes() {
        let v = review_boot_config(
            &boot_config(&format!(
                "{KERNEL}  params: console=ttyS0 host={{{{ node.name }}}}\n"
            )),
            ReferencedSecret::None,
        );
        assert_eq!(v, Verdict::default());
    }

    #[test]
    fn a_template_that_does_not_compile_is_refused_with_its_error() {
        let v = review_boot_config(
            &boot_config(&format!("{KERNEL}  params: \"{{{{ node.name \"\n")),
            ReferencedSecret::None,
        );
        let refusal = v.refusal.unwrap();
        assert!(refusal.contains("params"), "{refusal}");
        assert!(refusal.contains("fix the template"), "{refusal}");
    }

    #[test]
    fn a_template_that_fails_for_the_sample_node_is_refused() {
        // Renders to two lines: params must be one line.
        let v = review_boot_config(
            &boot_config(&format!("{KERNEL}  params: \"a{{{{ '\\n' }}}}b\"\n")),
            ReferencedSecret::None,
        );
        let refusal = v.refusal.unwrap();
        assert!(refusal.contains("params"), "{refusal}");
        eprintln!("{refusal}");
    }

    #[test]
    fn a_selector_that_cannot_be_parsed_is_refused() {
        let v = review_boot_config(
            &boot_config(&format!(
                "{KERNEL}  nodeSelector:\n    matchExpressions:\n    - {{key: role, operator: Near, values: [a]}}\n"
            )),
            ReferencedSecret::None,
        );
        let refusal = v.refusal.unwrap();
        assert!(refusal.contains("spec.nodeSelector"), "{refusal}");
    }

    #[test]
    fn secret_references_are_checked_against_what_the_cluster_says() {
        let bc = boot_config(&format!(
            "{KERNEL}  cloudInit:\n    userDataSecretRef: {{name: creds, key: user-data}}\n"
        ));
        let refusal = review_boot_config(&bc, ReferencedSecret::NotOptedIn)
            .refusal
            .unwrap();
        assert!(
            refusal.contains("kubectl label secret -n hpc creds nodeboot.io/user-data=true"),
            "{refusal}"
        );

        let missing = review_boot_config(&bc, ReferencedSecret::Missing);
        assert_eq!(missing.refusal, None);
        assert!(missing.warnings[0].contains("does not exist yet"));

        let mut secret = Secret::default();
        secret.metadata.namespace = Some("hpc".into());
        secret.metadata.name = Some("creds".into());
        secret.metadata.labels = Some([(USER_DATA_SECRET.to_owned(), "true".to_owned())].into());
        secret.string_data = Some([("other".to_owned(), "x".to_owned())].into());
        let mut secrets = Secrets::default();
        secrets.insert(&secret);
        let refusal = review_boot_config(&bc, ReferencedSecret::OptedIn(&secrets))
            .refusal
            .unwrap();
        assert!(refusal.contains("no key 'user-data'"), "{refusal}");

        secret.string_data = Some([("user-data".to_owned(), "#cloud-config\n".to_owned())].into());
        secrets.insert(&secret);
        assert_eq!(
            review_boot_config(&bc, ReferencedSecret::OptedIn(&secrets)),
            Verdict::default()
        );
    }

    #[test]
    fn a_node_group_claiming_what_another_claims_is_refused_naming_both() {
        let existing = Arc::new(group("rack-a", &[("x1", "02:00:00:00:00:01", Some(1))]));
        let clash = group(
            "rack-b",
            &[
                ("x2", "02-00-00-00-00-01", Some(2)),
                ("x1", "02:00:00:00:00:09", Some(1)),
            ],
        );
        let refusal = review_node_group(&clash, std::slice::from_ref(&existing))
            .refusal
            .unwrap();
        assert!(
            refusal.contains(
                "spec.nodes[0] (x2): MAC 02:00:00:00:00:01 is already claimed by node x1 of NodeGroup rack-a"
            ),
            "{refusal}"
        );
        assert!(refusal.contains("name x1 is already claimed"), "{refusal}");
        assert!(refusal.contains("NID 1 is already claimed"), "{refusal}");

        // Its own earlier version is no rival; a clash inside the group is.
        let update = group("rack-a", &[("x1", "02:00:00:00:00:01", Some(1))]);
        assert_eq!(
            review_node_group(&update, std::slice::from_ref(&existing)),
            Verdict::default()
        );
        let inner = group(
            "rack-c",
            &[
                ("y1", "02:00:00:00:00:05", None),
                ("y2", "02:00:00:00:00:05", None),
            ],
        );
        let refusal = review_node_group(&inner, &[existing]).refusal.unwrap();
        assert!(
            refusal.contains("spec.nodes[1] (y2): MAC 02:00:00:00:00:05 is already claimed by spec.nodes[0] of this NodeGroup"),
            "{refusal}"
        );
    }

    #[test]
    fn a_refusal_lists_a_few_clashes_not_all() {
        let nodes: Vec<(String, String)> = (0..50)
            .map(|i| (format!("n{i}"), format!("02:00:00:00:01:{i:02x}")))
            .collect();
        let as_refs: Vec<(&str, &str, Option<i64>)> = nodes
            .iter()
            .map(|(n, m)| (n.as_str(), m.as_str(), None))
            .collect();
        let existing = Arc::new(group("a", &as_refs));
        let refusal = review_node_group(&group("b", &as_refs), &[existing])
            .refusal
            .unwrap();
        assert!(refusal.contains("and 95 more"), "{refusal}");
    }
}
