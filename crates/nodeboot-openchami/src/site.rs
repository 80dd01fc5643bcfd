//! Every source merged into one picture of the site: its nodes (from SMD, the ochami inventory
//! or boot-service Nodes, joined by xname), its boot data (BSS, boot-service) and its cloud-init
//! data. What cannot join the picture is reported here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use nodeboot_core::crd::Arch;
use nodeboot_core::mac::Mac;
use serde_json::{Map, Value};

use crate::formats::bss::BootParams;
use crate::formats::cloud_init::{CiFile, CiGroup, ClusterDefaults, InstanceInfo};
use crate::formats::envelopes::{BootConfigurationSpec, Envelope, MetadataGroupSpec, NodeSpec};
use crate::formats::{Input, smd};
use crate::report::Report;

/// One parsed source: where it came from and what it held.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub inputs: Vec<Input>,
}

/// A node of the site, as its inventory sources describe it.
#[derive(Debug, Clone, Default)]
pub struct SiteNode {
    pub xname: String,
    /// Every source object that described the node (source, object), first first.
    pub origins: Vec<(String, String)>,
    /// Boot MAC first (boot-service's `bootMac`, else the inventory's order).
    pub macs: Vec<Mac>,
    pub nid: Option<i64>,
    pub ip: Option<IpAddr>,
    pub hostname: Option<String>,
    pub arch: Option<Arch>,
    pub role: String,
    pub sub_role: String,
    /// SMD, inventory or boot-service groups.
    pub groups: BTreeSet<String>,
    /// Per-node meta-data (cloud-init instance info, BSS's own-key meta-data).
    pub meta: Map<String, Value>,
}

/// boot-service's BootConfiguration, with its name.
#[derive(Debug, Clone)]
pub struct BootServiceConfig {
    pub source: String,
    pub name: String,
    pub spec: BootConfigurationSpec,
}

#[derive(Debug, Clone, Default)]
pub struct Site {
    /// Nodes by xname, in xname order.
    pub nodes: BTreeMap<String, SiteNode>,
    /// BSS exports, each with its source.
    pub bss: Vec<(String, Vec<BootParams>)>,
    pub boot_service: Vec<BootServiceConfig>,
    /// cloud-init groups by name, with their source.
    pub ci_groups: BTreeMap<String, (String, CiGroup)>,
    pub ci_defaults: Option<(String, ClusterDefaults)>,
}

impl Site {
    pub fn by_mac(&self) -> HashMap<Mac, &str> {
        let mut map = HashMap::new();
        for n in self.nodes.values() {
            for mac in &n.macs {
                map.insert(*mac, n.xname.as_str());
            }
        }
        map
    }

    pub fn by_nid(&self) -> HashMap<i64, &str> {
        self.nodes
            .values()
            .filter_map(|n| n.nid.map(|nid| (nid, n.xname.as_str())))
            .collect()
    }
}

fn arch_of_smd(arch: &str) -> Option<Arch> {
    match arch {
        "X86" => Some(Arch::X86_64),
        "ARM" => Some(Arch::Arm64),
        _ => None,
    }
}

fn add_mac(node: &mut SiteNode, mac: Mac, first: bool) {
    if node.macs.contains(&mac) {
        if first {
            node.macs.retain(|m| *m != mac);
            node.macs.insert(0, mac);
        }
        return;
    }
    if first {
        node.macs.insert(0, mac);
    } else {
        node.macs.push(mac);
    }
}

/// Inventory kinds first (nodes must exist before interfaces, groups and boot data name them),
/// then the rest, whatever order the sources were given in.
pub fn assemble(sources: &[Source], report: &mut Report) -> Site {
    let mut site = Site::default();
    let mut interfaces = Vec::new();
    let mut memberships = Vec::new();
    let mut instances = Vec::new();
    for source in sources {
        let s = source.name.as_str();
        report
            .sources
            .push((source.name.clone(), describe_all(&source.inputs)));
        for input in &source.inputs {
            match input {
                Input::SmdComponents(components) => {
                    add_components(&mut site, s, components, report)
                }
                Input::Inventory(inv) => {
                    for node in &inv.nodes {
                        add_static_node(&mut site, s, node, report);
                    }
                    for bmc in &inv.bmcs {
                        let id = bmc
                            .get("xname")
                            .and_then(Value::as_str)
                            .unwrap_or("(unnamed)");
                        report.unmapped(
                            s,
                            format!("inventory BMC {id}"),
                            "nodeboot does not manage BMCs; keep them in your BMC tooling",
                        );
                    }
                }
                Input::Envelopes(envelopes) => {
                    for e in envelopes {
                        add_envelope(&mut site, s, e, report, &mut instances);
                    }
                }
                Input::SmdInterfaces(i) => interfaces.push((s, i)),
                Input::SmdGroups(g) => memberships.extend(g.iter().map(|g| {
                    (
                        s,
                        format!("SMD group {}", g.label),
                        g.label.clone(),
                        g.members.ids.clone(),
                    )
                })),
                Input::SmdMemberships(m) => memberships.extend(m.iter().flat_map(|m| {
                    m.group_labels.iter().map(move |label| {
                        (
                            s,
                            format!("SMD membership {} in {label}", m.id),
                            label.clone(),
                            vec![m.id.clone()],
                        )
                    })
                })),
                Input::BssParams(p) => site.bss.push((source.name.clone(), p.clone())),
                Input::CiGroups(groups) => {
                    for g in groups {
                        site.ci_groups
                            .insert(g.name.clone(), (source.name.clone(), g.clone()));
                    }
                }
                Input::CiDefaults(d) => site.ci_defaults = Some((source.name.clone(), d.clone())),
                Input::Empty => {}
                Input::CiInstances(i) => {
                    instances.extend(i.iter().map(|i| (s.to_owned(), i.clone())))
                }
            }
        }
    }
    for (s, list) in interfaces {
        add_interfaces(&mut site, s, list, report);
    }
    for (s, object, label, ids) in memberships {
        let mut missing = Vec::new();
        for id in &ids {
            match site.nodes.get_mut(id) {
                Some(node) => {
                    node.groups.insert(label.clone());
                }
                None => missing.push(id.as_str()),
            }
        }
        if missing.len() == ids.len() {
            report.unmapped(s, object, "none of its members is a node in the inventory");
        } else {
            report.mapped(
                s,
                &object,
                format!("label group.openchami.io/{label} on its members"),
            );
            if !missing.is_empty() {
                report.unmapped(
                    s,
                    format!("{object}: members {}", missing.join(", ")),
                    "not nodes in the inventory (not Type Node, or no MAC)",
                );
            }
        }
    }
    for (s, info) in instances {
        add_instance(&mut site, &s, &info, report);
    }
    site
}

fn describe_all(inputs: &[Input]) -> String {
    inputs
        .iter()
        .map(Input::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

fn add_components(site: &mut Site, s: &str, components: &[smd::Component], report: &mut Report) {
    for c in components {
        if c.kind != "Node" {
            report.unmapped(
                s,
                format!("SMD component {}", c.id),
                format!("Type {} is not a node", c.kind),
            );
            continue;
        }
        let node = site.nodes.entry(c.id.clone()).or_insert_with(|| SiteNode {
            xname: c.id.clone(),
            ..Default::default()
        });
        node.origins
            .push((s.to_owned(), format!("SMD component {}", c.id)));
        node.nid = node.nid.or(c.nid());
        if node.role.is_empty() {
            node.role.clone_from(&c.role);
        }
        if node.sub_role.is_empty() {
            node.sub_role.clone_from(&c.sub_role);
        }
        node.arch = node.arch.or(arch_of_smd(&c.arch));
    }
}

fn add_static_node(
    site: &mut Site,
    s: &str,
    n: &crate::formats::inventory::StaticNode,
    report: &mut Report,
) {
    let node = site
        .nodes
        .entry(n.xname.clone())
        .or_insert_with(|| SiteNode {
            xname: n.xname.clone(),
            ..Default::default()
        });
    node.origins
        .push((s.to_owned(), format!("inventory node {}", n.xname)));
    node.nid = node.nid.or(n.nid);
    if !n.name.is_empty() {
        node.hostname = Some(n.name.clone());
    }
    node.groups.extend(n.groups.iter().cloned());
    for iface in &n.interfaces {
        match iface.mac_addr.parse::<Mac>() {
            Ok(mac) => add_mac(node, mac, false),
            Err(e) => report.unmapped(
                s,
                format!("inventory node {} interface {}", n.xname, iface.mac_addr),
                e.to_string(),
            ),
        }
        if node.ip.is_none() {
            node.ip = iface.ip_addrs.iter().find_map(|ip| ip.ip_addr.parse().ok());
        }
    }
    if !n.bmc.is_null() {
        report.unmapped(
            s,
            format!("inventory node {} bmc", n.xname),
            "nodeboot does not manage BMCs",
        );
    }
}

fn add_interfaces(site: &mut Site, s: &str, list: &[smd::EthernetInterface], report: &mut Report) {
    for iface in list {
        let object = format!("SMD EthernetInterface {}", iface.mac_address);
        let Some(node) = site.nodes.get_mut(&iface.component_id) else {
            report.unmapped(
                s,
                object,
                format!(
                    "its ComponentID '{}' is no node in the inventory",
                    iface.component_id
                ),
            );
            continue;
        };
        match iface.mac_address.parse::<Mac>() {
            Ok(mac) => {
                add_mac(node, mac, false);
                if node.ip.is_none() {
                    node.ip = iface
                        .ip_addresses
                        .iter()
                        .find_map(|ip| ip.ip_address.parse().ok());
                }
                report.mapped(s, object, format!("MAC of node {}", node.xname));
            }
            Err(e) => report.unmapped(s, object, e.to_string()),
        }
    }
}

fn add_envelope(
    site: &mut Site,
    s: &str,
    e: &Envelope,
    report: &mut Report,
    instances: &mut Vec<(String, InstanceInfo)>,
) {
    let object = format!("{} {} {}", e.api_version, e.kind, e.metadata.name);
    let group = e.api_version.split('/').next().unwrap_or_default();
    let read = |what| format!("{what}: the spec does not read as one");
    match (group, e.kind.as_str()) {
        ("boot.openchami.io", "BootConfiguration") => {
            match serde_json::from_value::<BootConfigurationSpec>(e.spec.clone()) {
                Ok(spec) => site.boot_service.push(BootServiceConfig {
                    source: s.to_owned(),
                    name: e.metadata.name.clone(),
                    spec,
                }),
                Err(err) => {
                    report.unmapped(s, object, format!("{}: {err}", read("BootConfiguration")))
                }
            }
        }
        ("boot.openchami.io", "Node") => match serde_json::from_value::<NodeSpec>(e.spec.clone()) {
            Ok(spec) => {
                let node = site
                    .nodes
                    .entry(spec.xname.clone())
                    .or_insert_with(|| SiteNode {
                        xname: spec.xname.clone(),
                        ..Default::default()
                    });
                node.origins.push((s.to_owned(), object.clone()));
                node.nid = node.nid.or(spec.nid);
                if node.role.is_empty() {
                    node.role.clone_from(&spec.role);
                }
                if node.sub_role.is_empty() {
                    node.sub_role.clone_from(&spec.sub_role);
                }
                if !spec.hostname.is_empty() {
                    node.hostname = Some(spec.hostname.clone());
                }
                node.groups.extend(spec.groups.iter().cloned());
                for iface in &spec.interfaces {
                    if let Ok(mac) = iface.mac.parse() {
                        add_mac(node, mac, false);
                    }
                    if node.ip.is_none() {
                        node.ip = iface.ip.parse().ok();
                    }
                }
                match spec.boot_mac.parse() {
                    Ok(mac) => add_mac(node, mac, true),
                    Err(_) if spec.boot_mac.is_empty() => {}
                    Err(err) => report.unmapped(s, format!("{object} bootMac"), format!("{err}")),
                }
            }
            Err(err) => report.unmapped(s, object, format!("{}: {err}", read("Node"))),
        },
        ("cloud-init.openchami.io", "Group") => {
            match serde_json::from_value::<MetadataGroupSpec>(e.spec.clone()) {
                Ok(spec) => {
                    let group = CiGroup {
                        name: e.metadata.name.clone(),
                        description: spec.description,
                        meta_data: spec
                            .meta_data
                            .into_iter()
                            .map(|(k, v)| (k, Value::String(v)))
                            .collect(),
                        file: (!spec.template.is_empty()).then(|| CiFile {
                            content: jinja_on_the_node(spec.template),
                            filename: format!("{}.yaml", e.metadata.name),
                            encoding: "plain".into(),
                        }),
                    };
                    site.ci_groups
                        .insert(group.name.clone(), (s.to_owned(), group));
                }
                Err(err) => report.unmapped(s, object, format!("{}: {err}", read("Group"))),
            }
        }
        ("cloud-init.openchami.io", "ClusterDefaults") => {
            match serde_json::from_value::<ClusterDefaults>(e.spec.clone()) {
                Ok(d) => site.ci_defaults = Some((s.to_owned(), d)),
                Err(err) => {
                    report.unmapped(s, object, format!("{}: {err}", read("ClusterDefaults")))
                }
            }
        }
        ("cloud-init.openchami.io", "InstanceInfo") => {
            match serde_json::from_value::<InstanceInfo>(e.spec.clone()) {
                Ok(mut info) => {
                    if info.id.is_empty() {
                        info.id.clone_from(&e.metadata.name);
                    }
                    // Applied once every node is known.
                    instances.push((s.to_owned(), info));
                }
                Err(err) => report.unmapped(s, object, format!("{}: {err}", read("InstanceInfo"))),
            }
        }
        _ => report.unmapped(
            s,
            object,
            "a kind nodeboot does not import (it reads boot.openchami.io BootConfiguration and \
             Node, cloud-init.openchami.io Group, ClusterDefaults and InstanceInfo)",
        ),
    }
}

/// metadata-service renders a group's template on the server (pongo2, over `ds.*`); nodeboot
/// passes it to the node, where cloud-init renders a file headed `## template: jinja` over the
/// same `ds.meta_data`.
fn jinja_on_the_node(template: String) -> String {
    let is_template = template.contains("{{") || template.contains("{%");
    if is_template && !template.trim_start().starts_with("## template: jinja") {
        format!("## template: jinja\n{template}")
    } else {
        template
    }
}

fn add_instance(site: &mut Site, s: &str, info: &InstanceInfo, report: &mut Report) {
    let object = format!("cloud-init instance info {}", info.id);
    let Some(node) = site.nodes.get_mut(&info.id) else {
        report.unmapped(s, object, "no node in the inventory has this id");
        return;
    };
    let hostname = if info.local_hostname.is_empty() {
        &info.hostname
    } else {
        &info.local_hostname
    };
    let mut became = Vec::new();
    if !hostname.is_empty() {
        node.hostname = Some(hostname.clone());
        became.push(format!("hostname {hostname}"));
    }
    if !info.instance_id.is_empty() && info.instance_id != node.xname {
        node.meta.insert(
            "instance-id".into(),
            Value::String(info.instance_id.clone()),
        );
        became.push("meta-data instance-id".into());
    }
    if !info.instance_type.is_empty() {
        node.meta.insert(
            "instance-type".into(),
            Value::String(info.instance_type.clone()),
        );
        became.push("meta-data instance-type".into());
    }
    if !info.public_keys.is_empty() {
        node.meta
            .insert("public-keys".into(), Value::from(info.public_keys.clone()));
        became.push("meta-data public-keys".into());
    }
    report.mapped(
        s,
        object,
        format!("node {}: {}", node.xname, became.join(", ")),
    );
}
