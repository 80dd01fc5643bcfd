//! BSS boot parameters onto BootConfigs. BSS looks a node up by its own key (xname, then the
//! MAC or `nid<N>` it asked with; with Postgres, the entry naming its MAC, name or NID), then
//! its SMD role, then `Default`; `Unknown-<arch>` serves nodes SMD does not know.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use nodeboot_core::crd::{Arch, MetaData};
use nodeboot_core::labels;
use serde_json::{Map, Value};

use super::{
    BSS_PARAMS_LABEL, Names, NodeAdditions, PRIORITY_BSS_DEFAULT, PRIORITY_BSS_OWN,
    PRIORITY_BSS_ROLE, PRIORITY_DISCOVERY, Planned, ROLE_LABEL, literal,
};
use crate::formats::bss::{Backend, BootParams, HostKey, backend, host_key};
use crate::report::Report;
use crate::site::Site;

/// The longest stored params taken: nodeboot's rendered params (autoParams included) may
/// have 4096 bytes, and autoParams add up to about 250.
const MAX_PARAMS: usize = 3800;

/// What a BSS element boots, made ready for a BootConfig.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Content {
    pub kernel: String,
    pub initrd: Option<String>,
    pub params: String,
    pub user_data: Option<String>,
}

/// Token kinds BSS substitutes per request and nodeboot leaves out.
pub(crate) const SPIRE_PLACEHOLDER: &str = "${SPIRE_JOIN_TOKEN}";

/// The URL rule of `BootConfig.spec.kernel` and `initrd`.
pub(crate) fn check_url(what: &str, url: &str) -> Result<(), String> {
    let ok_scheme = ["http://", "https://", "tftp://"]
        .iter()
        .any(|s| url.starts_with(s));
    if url.starts_with("s3://") {
        return Err(format!(
            "{what} {url} is an s3:// URL, which BSS presigns per request; nodeboot serves \
             http(s) and tftp URLs: publish the image over HTTP(S) and import again"
        ));
    }
    if !ok_scheme || url.chars().any(char::is_whitespace) || url.len() > 2048 {
        return Err(format!(
            "{what} '{}' is not an http(s):// or tftp:// URL (a path on BSS's own host cannot \
             be served by nodeboot)",
            labels::shown(url)
        ));
    }
    Ok(())
}

/// BSS params as a BootConfig's: per-request placeholders left out (listed in the result),
/// s3:// and control characters refused.
pub(crate) fn clean_params(params: &str) -> Result<(String, Vec<String>), String> {
    if let Some(c) = params.chars().find(|c| c.is_control()) {
        return Err(format!("params contain the control character {c:?}"));
    }
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for token in params.split_whitespace() {
        if token.contains(SPIRE_PLACEHOLDER) {
            dropped.push(token.to_owned());
        } else if token.contains("s3://") {
            return Err(format!(
                "params token '{}' names an s3:// URL, which BSS presigns per request; \
                 publish it over HTTP(S) and import again",
                labels::shown(token)
            ));
        } else {
            kept.push(token);
        }
    }
    let joined = kept.join(" ");
    if joined.len() > MAX_PARAMS {
        return Err(format!(
            "params have {} bytes; nodeboot takes at most {MAX_PARAMS} (its limit is 4096 \
             with the parameters it adds)",
            joined.len()
        ));
    }
    let text = literal(&joined)
        .ok_or_else(|| "params contain template markers and the word 'endraw'".to_owned())?;
    Ok((text, dropped))
}

/// `#cloud-config` text of BSS's user-data map.
pub(crate) fn user_data_text(map: &Map<String, Value>) -> Option<String> {
    if map.is_empty() {
        return None;
    }
    let yaml = serde_yaml_ng::to_string(map).ok()?;
    Some(format!("#cloud-config\n{yaml}"))
}

/// The params BSS appends for an image (etcd image elements).
#[derive(Debug, Default)]
pub(crate) struct ImageParams {
    pub kernel: HashMap<String, String>,
    pub initrd: HashMap<String, String>,
}

impl ImageParams {
    pub(crate) fn of(params: &[BootParams]) -> ImageParams {
        let mut images = ImageParams::default();
        for p in params
            .iter()
            .filter(|p| p.hosts.is_empty() && p.macs.is_empty() && p.nids.is_empty())
        {
            if !p.kernel.is_empty() && p.initrd.is_empty() {
                images.kernel.insert(p.kernel.clone(), p.params.clone());
            } else if !p.initrd.is_empty() && p.kernel.is_empty() {
                images.initrd.insert(p.initrd.clone(), p.params.clone());
            }
        }
        images
    }

    /// A key's params as BSS assembles them: its own, then its kernel's, then its initrd's.
    pub(crate) fn assembled(&self, p: &BootParams) -> String {
        let mut params = p.params.clone();
        for extra in [self.kernel.get(&p.kernel), self.initrd.get(&p.initrd)]
            .into_iter()
            .flatten()
            .filter(|e| !e.is_empty())
        {
            params.push(' ');
            params.push_str(extra);
        }
        params
    }
}

fn content(p: &BootParams, images: &ImageParams) -> Result<(Content, Vec<String>), String> {
    if p.kernel.is_empty() {
        return Err(
            "no kernel: BSS boots nothing with it (a node it reaches gets the \
                    discovery script)"
                .into(),
        );
    }
    check_url("kernel", &p.kernel)?;
    if !p.initrd.is_empty() {
        check_url("initrd", &p.initrd)?;
    }
    let (params, dropped) = clean_params(&images.assembled(p))?;
    Ok((
        Content {
            kernel: p.kernel.clone(),
            initrd: (!p.initrd.is_empty()).then(|| p.initrd.clone()),
            params,
            user_data: user_data_text(&p.cloud_init.user_data),
        },
        dropped,
    ))
}

fn planned(
    name: String,
    selector: LabelSelector,
    priority: i32,
    c: Content,
    meta: MetaData,
) -> Planned {
    Planned {
        name,
        selector,
        priority,
        kernel: c.kernel,
        initrd: c.initrd,
        params: c.params,
        user_data: c.user_data,
        meta,
    }
}

fn match_labels(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn meta_of(map: &Map<String, Value>) -> MetaData {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// How strongly a kind of key binds a node: BSS tries the xname first with etcd; with
/// Postgres a node boots by MAC, so its MAC entry is the one it gets.
fn strength(backend: Backend, key: &HostKey) -> u8 {
    match (backend, key) {
        (Backend::Etcd, HostKey::Name(_)) => 3,
        (Backend::Etcd, HostKey::Mac(_)) => 2,
        (Backend::Postgres, HostKey::Mac(_)) => 3,
        (Backend::Postgres, HostKey::Name(_)) => 2,
        _ => 1,
    }
}

/// Where BSS keys point in the site's inventory.
struct Lookup<'s> {
    site: &'s Site,
    by_mac: HashMap<nodeboot_core::mac::Mac, &'s str>,
    by_nid: HashMap<i64, &'s str>,
    by_hostname: HashMap<&'s str, &'s str>,
    roles: BTreeSet<&'s str>,
}

impl<'s> Lookup<'s> {
    fn new(site: &'s Site) -> Lookup<'s> {
        Lookup {
            site,
            by_mac: site.by_mac(),
            by_nid: site.by_nid(),
            by_hostname: site
                .nodes
                .values()
                .filter_map(|n| n.hostname.as_deref().map(|h| (h, n.xname.as_str())))
                .collect(),
            roles: site
                .nodes
                .values()
                .map(|n| n.role.as_str())
                .filter(|r| !r.is_empty())
                .collect(),
        }
    }

    /// A name that is no node's but some node's SMD role.
    fn is_role(&self, name: &str) -> bool {
        !self.site.nodes.contains_key(name) && self.roles.contains(name)
    }

    /// The node an own key names: its xname or host name, a MAC, a NID.
    fn node(&self, key: &HostKey) -> Option<&'s str> {
        match key {
            HostKey::Name(name) => self
                .site
                .nodes
                .get_key_value(name)
                .map(|(k, _)| k.as_str())
                .or_else(|| self.by_hostname.get(name.as_str()).copied()),
            HostKey::Mac(mac) => self.by_mac.get(mac).copied(),
            HostKey::Nid(nid) => self.by_nid.get(nid).copied(),
            _ => None,
        }
    }
}

/// Every key an element stores its data under: etcd's one host key; Postgres's hosts, MACs
/// and NIDs.
fn keys_of(p: &BootParams, s: &str, report: &mut Report) -> Vec<(HostKey, String)> {
    let mut keys: Vec<(HostKey, String)> =
        p.hosts.iter().map(|h| (host_key(h), h.clone())).collect();
    for m in &p.macs {
        match m.parse() {
            Ok(mac) => keys.push((HostKey::Mac(mac), m.clone())),
            Err(_) => report.unmapped(s, format!("BSS MAC {m}"), "not a MAC address"),
        }
    }
    keys.extend(
        p.nids
            .iter()
            .map(|n| (HostKey::Nid(*n), format!("nid {n}"))),
    );
    keys
}

/// The BootConfig a key shared by many nodes becomes, and the report's words for it.
struct Shared {
    name: String,
    selector: LabelSelector,
    priority: i32,
    became: String,
}

/// What a key shared by many nodes (`Default`, `Unknown-<arch>`, a role) becomes, or why it
/// does not map; `None` for a key of one node.
fn shared_key(
    key: &HostKey,
    lookup: &Lookup<'_>,
    names: &mut Names,
) -> Option<Result<Shared, String>> {
    match key {
        HostKey::Default => {
            let name = names.take("bss-default");
            let became = format!("BootConfig {name} (every node, priority {PRIORITY_BSS_DEFAULT})");
            Some(Ok(Shared {
                name,
                selector: LabelSelector::default(),
                priority: PRIORITY_BSS_DEFAULT,
                became,
            }))
        }
        HostKey::Unknown(arch) => Some(match Arch::from_request(arch) {
            Some(a) => {
                let name = names.take(&format!("bss-unknown-{}", a.as_str()));
                let became = format!("discovery BootConfig {name} (unknown {} nodes)", a.as_str());
                let selector =
                    match_labels(&[(labels::KNOWN, "false"), (labels::ARCH, a.as_str())]);
                Ok(Shared {
                    name,
                    selector,
                    priority: PRIORITY_DISCOVERY,
                    became,
                })
            }
            None => Err(format!(
                "architecture '{}' is none nodeboot tells apart (x86_64, arm64)",
                labels::shown(arch)
            )),
        }),
        HostKey::Name(role) if lookup.is_role(role) => Some(if labels::is_valid_value(role) {
            let name = names.take(&format!("bss-role-{role}"));
            let became = format!(
                "BootConfig {name} (nodes with label {ROLE_LABEL}={role}, priority {PRIORITY_BSS_ROLE})"
            );
            Ok(Shared {
                name,
                selector: match_labels(&[(ROLE_LABEL, role)]),
                priority: PRIORITY_BSS_ROLE,
                became,
            })
        } else {
            Err("the role is not a valid label value".to_owned())
        }),
        _ => None,
    }
}

/// Per node: the own key that binds it (strength, key text, content, meta-data).
type OwnKeys<'s> = BTreeMap<&'s str, (u8, String, Content, MetaData)>;

/// Nodes whose own keys hold the same content share one BootConfig, selected by a label on
/// them; each key's meta-data goes to its node.
fn emit_own(
    own: OwnKeys<'_>,
    s: &str,
    planned_out: &mut Vec<Planned>,
    additions: &mut NodeAdditions,
    names: &mut Names,
    report: &mut Report,
) {
    let mut by_content: BTreeMap<Content, Vec<(&str, String)>> = BTreeMap::new();
    for (node, (_, key, c, meta)) in own {
        if !meta.is_empty() {
            additions
                .meta
                .entry(node.to_owned())
                .or_default()
                .extend(meta);
        }
        by_content.entry(c).or_default().push((node, key));
    }
    let mut ordered: Vec<_> = by_content.into_iter().collect();
    // Named after their first node, in node order, so names stay put between imports of the
    // same data.
    ordered.sort_by(|a, b| a.1[0].0.cmp(b.1[0].0));
    for (c, nodes) in ordered {
        let name = names.take(&format!("bss-{}", nodes[0].0));
        for (node, key) in &nodes {
            additions
                .labels
                .entry((*node).to_owned())
                .or_default()
                .insert(BSS_PARAMS_LABEL.to_owned(), name.clone());
            report.mapped(
                s,
                format!("BSS key {key}"),
                format!(
                    "BootConfig {name} for node {node} (label {BSS_PARAMS_LABEL}={name}, priority {PRIORITY_BSS_OWN})"
                ),
            );
        }
        planned_out.push(planned(
            name.clone(),
            match_labels(&[(BSS_PARAMS_LABEL, &name)]),
            PRIORITY_BSS_OWN,
            c,
            MetaData::new(),
        ));
    }
}

pub(super) fn map(
    site: &Site,
    planned_out: &mut Vec<Planned>,
    additions: &mut NodeAdditions,
    names: &mut Names,
    report: &mut Report,
) {
    let lookup = Lookup::new(site);
    for (source, params) in &site.bss {
        let s = source.as_str();
        let backend = backend(params);
        let images = ImageParams::of(params);
        let mut own = OwnKeys::new();
        for p in params {
            let keys = keys_of(p, s, report);
            if keys.is_empty() {
                if images.kernel.contains_key(&p.kernel) || images.initrd.contains_key(&p.initrd) {
                    let image = if p.kernel.is_empty() {
                        &p.initrd
                    } else {
                        &p.kernel
                    };
                    report.mapped(
                        s,
                        format!("BSS image {image}"),
                        "its params are appended to every BootConfig that boots it",
                    );
                } else {
                    report.unmapped(
                        s,
                        "BSS element without hosts, MACs or NIDs",
                        "names no node and no image",
                    );
                }
                continue;
            }
            let object = |key: &str| format!("BSS key {key}");
            // Built once per element (a Postgres entry names many nodes); per-request tokens
            // left out are reported once, under its first key.
            let built = content(p, &images);
            if let (Ok((_, dropped)), Some((_, first))) = (&built, keys.first()) {
                for token in dropped {
                    report.unmapped(
                        s,
                        format!("{} params token {token}", object(first)),
                        "a SPIRE join token BSS issues per boot; nodeboot issues none, so the \
                         token is left out",
                    );
                }
            }
            for (key, text) in keys {
                if key == HostKey::Global {
                    additions.site_meta.insert(
                        "Global".into(),
                        Value::Object(p.cloud_init.meta_data.clone()),
                    );
                    report.mapped(s, object(&text), "meta-data key Global of every node");
                    if !p.kernel.is_empty() || !p.params.is_empty() {
                        report.unmapped(
                            s,
                            format!("{} kernel/params", object(&text)),
                            "BSS boots nothing with Global; only its meta-data is served",
                        );
                    }
                    continue;
                }
                let c = match &built {
                    Ok((c, _)) => c.clone(),
                    Err(why) => {
                        report.unmapped(s, object(&text), why.clone());
                        continue;
                    }
                };
                let meta = meta_of(&p.cloud_init.meta_data);
                match shared_key(&key, &lookup, names) {
                    Some(Ok(shared)) => {
                        report.mapped(s, object(&text), shared.became);
                        planned_out.push(planned(
                            shared.name,
                            shared.selector,
                            shared.priority,
                            c,
                            meta,
                        ));
                    }
                    Some(Err(why)) => report.unmapped(s, object(&text), why),
                    None => {
                        let Some(node) = lookup.node(&key) else {
                            report.unmapped(
                                s,
                                object(&text),
                                "a host key no node in the inventory has (not an xname, host \
                                 name, MAC, NID or role SMD knows): give SMD or the inventory \
                                 as a source too, or add the node",
                            );
                            continue;
                        };
                        let strength = strength(backend, &key);
                        match own.get(node) {
                            Some((held, held_key, ..)) if *held >= strength => report.unmapped(
                                s,
                                object(&text),
                                format!(
                                    "node {node} already takes BSS key {held_key}, which BSS looks up first"
                                ),
                            ),
                            _ => {
                                if let Some((_, lost, ..)) =
                                    own.insert(node, (strength, text.clone(), c, meta))
                                {
                                    report.unmapped(
                                        s,
                                        object(&lost),
                                        format!(
                                            "node {node} takes BSS key {text}, which BSS looks up first"
                                        ),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        emit_own(own, s, planned_out, additions, names, report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_keep_what_nodeboot_can_serve() {
        let (params, dropped) =
            clean_params("root=live:http://i/r  spire=${SPIRE_JOIN_TOKEN} quiet").unwrap();
        assert_eq!(params, "root=live:http://i/r quiet");
        assert_eq!(dropped, ["spire=${SPIRE_JOIN_TOKEN}"]);
        assert!(
            clean_params("root=live:s3://bucket/r")
                .unwrap_err()
                .contains("s3://")
        );
        assert!(
            clean_params("a\nkernel x")
                .unwrap_err()
                .contains("control character")
        );
        assert!(
            clean_params(&"x".repeat(4000))
                .unwrap_err()
                .contains("at most")
        );
        assert_eq!(
            clean_params("x={{ y }}").unwrap().0,
            "{% raw %}x={{ y }}{% endraw %}"
        );
    }

    #[test]
    fn urls_nodeboot_serves() {
        assert!(check_url("kernel", "http://i/k").is_ok());
        assert!(check_url("kernel", "tftp://i/k").is_ok());
        assert!(
            check_url("kernel", "s3://b/k")
                .unwrap_err()
                .contains("presigns")
        );
        assert!(
            check_url("kernel", "/var/lib/k")
                .unwrap_err()
                .contains("not an http")
        );
    }

    #[test]
    fn image_params_are_appended_kernel_first() {
        let elements: Vec<BootParams> = serde_json::from_str(
            r#"[{"kernel":"http://k","params":"kp"},{"initrd":"http://i","params":"ip"},
                {"hosts":["Default"],"kernel":"http://k","initrd":"http://i","params":"own"}]"#,
        )
        .unwrap();
        let images = ImageParams::of(&elements);
        assert_eq!(images.assembled(&elements[2]), "own kp ip");
    }

    #[test]
    fn own_key_strength_follows_the_back_end() {
        let name = HostKey::Name("x0c0s0b0n0".into());
        let mac = HostKey::Mac("02:00:00:00:00:01".parse().unwrap());
        assert!(strength(Backend::Etcd, &name) > strength(Backend::Etcd, &mac));
        assert!(strength(Backend::Postgres, &mac) > strength(Backend::Postgres, &name));
        assert!(strength(Backend::Etcd, &mac) > strength(Backend::Etcd, &HostKey::Nid(1)));
    }
}
