//! The cloud-init server's data onto meta-data and vendor-data. Cluster defaults become
//! site-wide meta-data (on every NodeGroup), group meta-data reaches the group's members
//! (NodeGroups are cut along group membership, so it sits on the NodeGroup), and the groups'
//! files become one vendor-data document: a MIME multipart with one part per group, each part
//! kept only for nodes that carry the group's label. The server serves `#include` of one URL
//! per group instead; nodeboot has no such URLs, so the files travel inside the document.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use nodeboot_core::crd::MetaData;
use serde_json::{Map, Value, json};

use super::{GROUP_LABEL_PREFIX, NodeAdditions, literal};
use crate::formats::cloud_init::{CiFile, ClusterDefaults};
use crate::report::Report;
use crate::site::Site;

pub(super) const BOUNDARY: &str = "nodeboot-openchami-groups";

#[derive(Debug, Default)]
pub(crate) struct CloudMapped {
    /// The vendor-data template every imported BootConfig carries.
    pub vendor_data: Option<String>,
    /// Meta-data of each cloud-init group, by name.
    pub group_meta: BTreeMap<String, Map<String, Value>>,
    pub defaults: Option<ClusterDefaults>,
}

/// The cloud-init server's host name rule: short name and the NID padded to `nid-length`.
pub fn default_hostname(defaults: &ClusterDefaults, nid: Option<i64>) -> Option<String> {
    let nid = nid?;
    if defaults.short_name.is_empty() {
        return None;
    }
    let width = defaults.nid_length.unwrap_or(0) as usize;
    Some(format!("{}{nid:0width$}", defaults.short_name))
}

/// The site-wide meta-data the cluster defaults give, in the keys the cloud-init server
/// serves them under (and `instance_data.v1`, which group templates read).
pub fn defaults_meta(d: &ClusterDefaults) -> MetaData {
    let mut meta = MetaData::new();
    let mut put = |key: &str, value: &str| {
        if !value.is_empty() {
            meta.insert(key.to_owned(), Value::String(value.to_owned()));
        }
    };
    put("cluster-name", &d.cluster_name);
    put("region", &d.region);
    put("availability-zone", &d.availability_zone);
    put("cloud-provider", &d.cloud_provider);
    if !d.public_keys.is_empty() {
        meta.insert("public-keys".into(), json!(d.public_keys));
    }
    meta.insert(
        "instance_data".into(),
        json!({"v1": {
            "cluster_name": d.cluster_name,
            "cloud_init_base_url": d.base_url,
            "public_keys": d.public_keys,
        }}),
    );
    meta
}

fn decode(file: &CiFile) -> Result<String, String> {
    let bytes = match file.encoding.as_str() {
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(file.content.trim())
            .map_err(|e| format!("its file is not valid base64: {e}"))?,
        "plain" | "" => file.content.clone().into_bytes(),
        other => {
            return Err(format!(
                "its file has encoding '{other}' (plain and base64 are read)"
            ));
        }
    };
    String::from_utf8(bytes).map_err(|_| "its file is not UTF-8 text".to_owned())
}

/// The MIME type cloud-init should handle a group file as.
fn content_type(text: &str) -> &'static str {
    let head = text.trim_start();
    if head.starts_with("## template: jinja") {
        "text/jinja2"
    } else if head.starts_with("#cloud-config") {
        "text/cloud-config"
    } else if head.starts_with("#!") {
        "text/x-shellscript"
    } else if head.starts_with("#include") {
        "text/x-include-url"
    } else {
        "text/plain"
    }
}

pub(super) fn map(site: &Site, additions: &mut NodeAdditions, report: &mut Report) -> CloudMapped {
    let mut out = CloudMapped::default();
    if let Some((source, d)) = &site.ci_defaults {
        additions.site_meta.extend(defaults_meta(d));
        let mut became = "site-wide meta-data (every NodeGroup's metaData)".to_owned();
        if !d.short_name.is_empty() {
            let _ = write!(
                became,
                "; host names {}<NID padded to {}> for nodes without one",
                d.short_name,
                d.nid_length.unwrap_or(0)
            );
        }
        report.mapped(source, "cloud-init cluster defaults", became);
        out.defaults = Some(d.clone());
    }
    let mut parts = Vec::new();
    for (name, (source, group)) in &site.ci_groups {
        let object = format!("cloud-init group {name}");
        let label = format!("{GROUP_LABEL_PREFIX}{name}");
        if !nodeboot_core::labels::is_valid_key(&label) {
            report.unmapped(source, object, "its name cannot be a label key");
            continue;
        }
        let members = site
            .nodes
            .values()
            .filter(|n| n.groups.contains(name))
            .count();
        let mut became = Vec::new();
        if !group.meta_data.is_empty() {
            out.group_meta.insert(name.clone(), group.meta_data.clone());
            became
                .push("meta-data of its members (instance_data.v1.vendor_data.groups)".to_owned());
        }
        if let Some(file) = &group.file {
            match decode(file).and_then(|text| {
                if let Some(what) = super::user_data::secret_material(&text) {
                    return Err(format!(
                        "its file holds {what}; vendor-data lives in BootConfigs, which must \
                         hold no secret: move that part to user-data in a Secret"
                    ));
                }
                literal(&text)
                    .map(|t| (text, t))
                    .ok_or_else(|| "its file contains the word 'endraw'".to_owned())
            }) {
                Ok((text, escaped)) if !text.trim().is_empty() => {
                    parts.push((name.clone(), label.clone(), content_type(&text), escaped));
                    became.push(format!(
                        "a part of every BootConfig's vendor-data, kept for nodes labelled {label}"
                    ));
                }
                Ok(_) => {}
                Err(why) => report.unmapped(source, format!("{object} file"), why),
            }
        }
        if members == 0 {
            report.unmapped(source, object, "no node of the inventory is in this group");
        } else if became.is_empty() {
            report.mapped(
                source,
                object,
                format!("label {label} on its {members} members (no data of its own)"),
            );
        } else {
            report.mapped(
                source,
                object,
                format!("{} ({members} members)", became.join("; ")),
            );
        }
    }
    if !parts.is_empty() {
        out.vendor_data = Some(vendor_data(&parts));
    }
    out
}

/// One multipart document; each part is kept only for nodes carrying its group's label, and
/// nodes in none of the groups get an empty document.
fn vendor_data(parts: &[(String, String, &'static str, String)]) -> String {
    let any = parts
        .iter()
        .map(|(_, label, ..)| format!("{label:?} in node.labels"))
        .collect::<Vec<_>>()
        .join(" or ");
    let mut t = String::new();
    let _ = write!(
        t,
        "{{% if {any} %}}Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\nMIME-Version: 1.0\n"
    );
    for (name, label, ctype, text) in parts {
        let _ = write!(
            t,
            "{{% if {label:?} in node.labels %}}\n--{BOUNDARY}\nContent-Type: {ctype}; charset=\"utf-8\"\nContent-Disposition: attachment; filename=\"{name}.yaml\"\n\n{text}{}{{% endif %}}",
            if text.ends_with('\n') { "" } else { "\n" }
        );
    }
    let _ = write!(t, "\n--{BOUNDARY}--\n{{% endif %}}");
    t
}
