//! The site onto nodeboot's resources. Precedence becomes priorities:
//!
//! | source | nodeboot | priority |
//! |---|---|---|
//! | boot-service BootConfiguration that wins for some node (its score, then `priority`, then name, computed per node) | BootConfig selecting `openchami.io/boot-configuration: <name>`, a label on the nodes it wins | 500 |
//! | BSS own key (xname, bare MAC, `nid<N>`; Postgres: an entry naming the node) | BootConfig selecting `openchami.io/bss-params: <name>`, a label on those nodes | 300 |
//! | BSS role key | BootConfig selecting `role: <Role>` | 200 |
//! | BSS `Default` | BootConfig with selector `{}` | 100 |
//! | boot-service catch-all (no hosts, MACs, NIDs or groups) | BootConfig with selector `{}` | 50 |
//! | BSS `Unknown-<arch>` | discovery BootConfig selecting `nodeboot.io/known: "false"` and the arch | 100 |
//!
//! Each node carries at most one `openchami.io/...` assignment label of each kind, so no two
//! BootConfigs tie on a node.

mod boot_service;
mod bss;
mod cloud_init;
mod node_groups;
mod user_data;

pub use boot_service::{score as boot_service_score, winner as boot_service_winner};
pub use cloud_init::{default_hostname, defaults_meta};

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use nodeboot_core::crd::{
    BootConfig, BootConfigSpec, CloudInit, MetaData, NodeGroup, SecretKeyRef, validate_boot_config,
};
use nodeboot_core::labels::USER_DATA_SECRET;

use crate::report::Report;
use crate::site::{Site, Source, assemble};

pub const PRIORITY_BOOT_SERVICE: i32 = 500;
pub const PRIORITY_BSS_OWN: i32 = 300;
pub const PRIORITY_BSS_ROLE: i32 = 200;
pub const PRIORITY_BSS_DEFAULT: i32 = 100;
pub const PRIORITY_BOOT_SERVICE_CATCH_ALL: i32 = 50;
pub const PRIORITY_DISCOVERY: i32 = 100;

/// The label that assigns a node the BootConfig made of its BSS own-key parameters.
pub const BSS_PARAMS_LABEL: &str = "openchami.io/bss-params";
/// The label that assigns a node the BootConfig made of the boot-service BootConfiguration
/// that wins for it.
pub const BOOT_CONFIGURATION_LABEL: &str = "openchami.io/boot-configuration";
/// SMD's role and sub-role, as labels (what `/boot/v1/hosts` reads back).
pub use nodeboot_core::snapshot::{ROLE_LABEL, SUB_ROLE_LABEL};
/// Prefix of the labels that carry SMD (and boot-service, inventory) group membership.
pub const GROUP_LABEL_PREFIX: &str = "group.openchami.io/";
/// The key of the user-data in the Secrets the importer writes.
pub const USER_DATA_KEY: &str = "user-data";

#[derive(Debug, Clone)]
pub struct Options {
    pub namespace: String,
}

/// The manifests to write, and the report.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    pub node_groups: Vec<NodeGroup>,
    pub boot_configs: Vec<BootConfig>,
    pub secrets: Vec<Secret>,
    pub report: Report,
    /// The merged picture of the site the manifests were made from (what `--verify` compares
    /// against).
    pub site: Site,
}

/// A BootConfig being made.
#[derive(Debug, Clone, Default)]
struct Planned {
    name: String,
    selector: LabelSelector,
    priority: i32,
    kernel: String,
    initrd: Option<String>,
    params: String,
    /// `#cloud-config` text; goes to a Secret when it holds secret material.
    user_data: Option<String>,
    meta: MetaData,
}

/// What the mapping of boot data adds to nodes and to the whole site.
#[derive(Debug, Default)]
struct NodeAdditions {
    /// Assignment labels per node (xname).
    labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Meta-data per node.
    meta: BTreeMap<String, MetaData>,
    /// Meta-data every node gets.
    site_meta: MetaData,
}

/// Reads every source into manifests and a report.
pub fn import(sources: &[Source], options: &Options) -> Imported {
    let mut report = Report::default();
    let site = assemble(sources, &mut report);
    let mut names = Names::default();
    let mut additions = NodeAdditions::default();
    let mut planned = Vec::new();
    bss::map(&site, &mut planned, &mut additions, &mut names, &mut report);
    boot_service::map(&site, &mut planned, &mut additions, &mut names, &mut report);
    let cloud = cloud_init::map(&site, &mut additions, &mut report);
    let node_groups = node_groups::map(&site, &additions, &cloud, options, &mut names, &mut report);
    let mut boot_configs = Vec::with_capacity(planned.len());
    let mut secrets = Vec::new();
    for p in planned {
        let name = p.name.clone();
        let (bc, secret) = finish(p, cloud.vendor_data.as_deref(), options, &mut report);
        match validate_boot_config(&bc.spec) {
            Ok(()) => {
                boot_configs.push(bc);
                secrets.extend(secret);
            }
            Err(e) => report.unmapped(
                "(import)",
                format!("BootConfig {name}"),
                format!("does not pass nodeboot's checks, so it is not written: {e}"),
            ),
        }
    }
    Imported {
        node_groups,
        boot_configs,
        secrets,
        report,
        site,
    }
}

fn finish(
    p: Planned,
    vendor_data: Option<&str>,
    options: &Options,
    report: &mut Report,
) -> (BootConfig, Option<Secret>) {
    let mut secret = None;
    let mut user_data_text = None;
    let mut user_data_ref = None;
    if let Some(text) = p.user_data {
        match user_data::secret_material(&text) {
            Some(why) => {
                let name = format!("{}-user-data", p.name);
                report.mapped(
                    "(import)",
                    format!("user-data of BootConfig {}", p.name),
                    format!("Secret {name} (it holds {why}); the BootConfig references it"),
                );
                user_data_ref = Some(SecretKeyRef {
                    name: name.clone(),
                    key: USER_DATA_KEY.into(),
                });
                secret = Some(Secret {
                    metadata: ObjectMeta {
                        name: Some(name),
                        namespace: Some(options.namespace.clone()),
                        labels: Some([(USER_DATA_SECRET.to_owned(), "true".to_owned())].into()),
                        ..Default::default()
                    },
                    data: Some([(USER_DATA_KEY.to_owned(), ByteString(text.into_bytes()))].into()),
                    ..Default::default()
                });
            }
            None => match literal(&text) {
                Some(kept) => user_data_text = Some(kept),
                None => report.unmapped(
                    "(import)",
                    format!("user-data of BootConfig {}", p.name),
                    "it holds template markers and the word 'endraw', so it cannot be kept \
                     literal; the BootConfig is written without it",
                ),
            },
        }
    }
    let cloud_init = CloudInit {
        meta_data: p.meta,
        user_data: user_data_text,
        user_data_secret_ref: user_data_ref,
        vendor_data: vendor_data.map(str::to_owned),
        network_config: None,
        instance_id_per_generation: false,
    };
    let mut bc = BootConfig::new(
        &p.name,
        BootConfigSpec {
            node_selector: Some(p.selector),
            priority: p.priority,
            kernel: p.kernel,
            initrd: p.initrd,
            params: p.params,
            auto_params: true,
            script: String::new(),
            grub_script: String::new(),
            cloud_init: Some(cloud_init),
        },
    );
    bc.metadata.namespace = Some(options.namespace.clone());
    (bc, secret)
}

/// Text a template engine must take literally: BSS params and cloud-init files are not
/// templates, so any `{{`, `{%` or `{#` in them is wrapped in a raw block. `None` when the
/// text would end that block itself.
pub(crate) fn literal(text: &str) -> Option<String> {
    if !(text.contains("{{") || text.contains("{%") || text.contains("{#")) {
        return Some(text.to_owned());
    }
    if text.contains("endraw") {
        return None;
    }
    Some(format!("{{% raw %}}{text}{{% endraw %}}"))
}

/// Object names: DNS subdomains, unique among what the import writes, at most 63 characters
/// (some are label values too).
#[derive(Debug, Default)]
pub(crate) struct Names {
    used: BTreeSet<String>,
}

impl Names {
    pub(crate) fn take(&mut self, wanted: &str) -> String {
        let base = dns_label(wanted);
        let mut name = base.clone();
        let mut n = 2;
        while !self.used.insert(name.clone()) {
            let suffix = format!("-{n}");
            let keep = base.len().min(63 - suffix.len());
            name = format!("{}{suffix}", base[..keep].trim_end_matches('-'));
            n += 1;
        }
        name
    }
}

/// Lowercase alphanumerics and `-`, at most 63, alphanumeric at both ends.
pub(crate) fn dns_label(wanted: &str) -> String {
    let mut out = String::with_capacity(wanted.len());
    for c in wanted.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(63);
    let out = out.trim_matches('-').to_owned();
    if out.is_empty() {
        "imported".to_owned()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_dns_labels() {
        let mut names = Names::default();
        assert_eq!(names.take("BSS role Compute"), "bss-role-compute");
        assert_eq!(names.take("bss-role-compute"), "bss-role-compute-2");
        assert_eq!(names.take("___"), "imported");
        let long = names.take(&"a".repeat(80));
        assert_eq!(long.len(), 63);
        let long2 = names.take(&"a".repeat(80));
        assert!(long2.ends_with("-2") && long2.len() <= 63);
    }

    #[test]
    fn template_markers_are_kept_literal() {
        assert_eq!(literal("console=ttyS0").unwrap(), "console=ttyS0");
        assert_eq!(
            literal("x={{ y }}").unwrap(),
            "{% raw %}x={{ y }}{% endraw %}"
        );
        assert!(literal("{% endraw %}{{").is_none());
    }
}
