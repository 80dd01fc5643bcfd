//! What the source would serve each node, worked out from the export the way the services do
//! it (and kept apart from `mapping`, so that the check does not share the mapping's
//! reasoning): BSS's key lookup and param assembly, boot-service's scoring, the cloud-init
//! server's meta-data. `verify` compares it with what nodeboot serves from the manifests.

use std::collections::{BTreeMap, HashMap};

use nodeboot_core::mac::Mac;
use serde_json::Value;

use crate::formats::bss::{Backend, BootParams, backend};
use crate::site::{BootServiceConfig, Site, SiteNode};

/// What one boot request gets from the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedBoot {
    pub kernel: String,
    pub initrd: Option<String>,
    /// As the source puts them on the kernel line (BSS: with what it adds per request).
    pub params: String,
    /// Which entry of the source this came from, for the table.
    pub via: String,
    /// The meta-data that entry gives the node (BSS keys store some), beside the site-wide.
    pub meta: serde_json::Map<String, Value>,
}

/// Why nodeboot may rightly answer otherwise than the source, for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Allowance {
    /// BSS serves `nid<N>` keys only to requests by `nid=`; nodeboot applies them to the node.
    NidKeyApplied,
    /// BSS serves a bare-MAC key only to requests from that MAC; nodeboot applies it to the
    /// node, so its other MACs get it too.
    MacKeyAppliedToNode,
    /// BSS's Postgres back end answers a request by MAC only from entries that list the MAC;
    /// nodeboot boots a node its entries name by xname or NID too.
    PostgresEntryByName,
    /// A `${SPIRE_JOIN_TOKEN}` BSS fills per boot; nodeboot leaves the token out.
    SpireJoinToken,
}

impl Allowance {
    pub fn describe(self) -> &'static str {
        match self {
            Allowance::NidKeyApplied => {
                "BSS nid<N> key: BSS serves it only to requests by nid=, nodeboot to the node"
            }
            Allowance::MacKeyAppliedToNode => {
                "BSS MAC key: BSS serves it only to requests from that MAC, nodeboot to the node"
            }
            Allowance::PostgresEntryByName => {
                "BSS Postgres entry by name or NID: BSS answers a MAC request only from MAC \
                 entries, nodeboot boots the node it names"
            }
            Allowance::SpireJoinToken => {
                "SPIRE join token: BSS fills ${SPIRE_JOIN_TOKEN} per boot, nodeboot leaves it out"
            }
        }
    }
}

/// What the source would serve one node asking with one of its MACs.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub node: String,
    pub mac: Mac,
    /// `None`: the source boots nothing for this request.
    pub boot: Option<ExpectedBoot>,
    pub allowances: Vec<Allowance>,
    /// Meta-data keys and the values the source serves for them.
    pub meta: BTreeMap<String, Value>,
}

/// BSS's per-request additions: `xname=`, `nid=` and `ds=` when absent (BSS matches a key by
/// prefix). `bss_referral_token=` is not in the export, and `ds=` names the service, so both
/// are left out of comparisons.
fn bss_script_params(params: &str, node: &SiteNode) -> String {
    let mut out = params.trim().to_owned();
    let has = |p: &str, key: &str| p.split(' ').any(|t| t.starts_with(key));
    if !has(&out, "xname=") {
        out.push_str(&format!(" xname={}", node.xname));
    }
    if let Some(nid) = node.nid
        && !has(&out, "nid=")
    {
        out.push_str(&format!(" nid={nid}"));
    }
    out
}

/// One BSS export, indexed the way BSS looks keys up.
struct BssIndex<'a> {
    backend: Backend,
    keys: HashMap<String, &'a BootParams>,
    /// etcd keys that are bare MACs, by MAC.
    mac_keys: HashMap<Mac, (&'a BootParams, &'a str)>,
    macs: HashMap<Mac, &'a BootParams>,
    names: HashMap<&'a str, &'a BootParams>,
    nids: HashMap<i64, &'a BootParams>,
    kernel_params: HashMap<&'a str, &'a str>,
    initrd_params: HashMap<&'a str, &'a str>,
}

impl<'a> BssIndex<'a> {
    fn new(params: &'a [BootParams]) -> BssIndex<'a> {
        let mut index = BssIndex {
            backend: backend(params),
            keys: HashMap::new(),
            mac_keys: HashMap::new(),
            macs: HashMap::new(),
            names: HashMap::new(),
            nids: HashMap::new(),
            kernel_params: HashMap::new(),
            initrd_params: HashMap::new(),
        };
        for p in params {
            if p.hosts.is_empty() && p.macs.is_empty() && p.nids.is_empty() {
                if p.initrd.is_empty() {
                    index.kernel_params.insert(&p.kernel, &p.params);
                } else if p.kernel.is_empty() {
                    index.initrd_params.insert(&p.initrd, &p.params);
                }
                continue;
            }
            for h in &p.hosts {
                index.keys.entry(h.clone()).or_insert(p);
                if let crate::formats::bss::HostKey::Mac(mac) = crate::formats::bss::host_key(h) {
                    index.mac_keys.entry(mac).or_insert((p, h));
                }
                index.names.entry(h).or_insert(p);
            }
            for m in &p.macs {
                if let Ok(mac) = m.parse() {
                    index.macs.entry(mac).or_insert(p);
                }
            }
            for n in &p.nids {
                index.nids.entry(*n).or_insert(p);
            }
        }
        index
    }

    /// The etcd chain for a request by `mac`: xname, the MAC asked with, role, `Default`.
    /// The flag says whether the node's own key (xname or MAC) answered.
    fn etcd_lookup(&self, node: &SiteNode, mac: Mac) -> Option<(&'a BootParams, String, bool)> {
        if let Some(p) = self.keys.get(&node.xname) {
            return Some((*p, format!("BSS key {}", node.xname), true));
        }
        if let Some((k, p)) = self
            .keys
            .iter()
            .find(|(k, _)| k.parse::<Mac>().ok() == Some(mac))
        {
            return Some((*p, format!("BSS key {k}"), true));
        }
        if !node.role.is_empty()
            && let Some(p) = self.keys.get(&node.role)
        {
            return Some((*p, format!("BSS role key {}", node.role), false));
        }
        self.keys
            .get("Default")
            .map(|p| (*p, "BSS key Default".to_owned(), false))
    }

    fn assembled(&self, p: &BootParams) -> String {
        let mut params = p.params.clone();
        for extra in [
            self.kernel_params.get(p.kernel.as_str()),
            self.initrd_params.get(p.initrd.as_str()),
        ]
        .into_iter()
        .flatten()
        .filter(|e| !e.is_empty())
        {
            params.push(' ');
            params.push_str(extra);
        }
        params
    }

    fn expect(
        &self,
        node: &SiteNode,
        mac: Mac,
        allowances: &mut Vec<Allowance>,
    ) -> Option<ExpectedBoot> {
        let found = match self.backend {
            Backend::Etcd => {
                let found = self.etcd_lookup(node, mac);
                let own = found.as_ref().is_some_and(|(_, _, own)| *own);
                let nid_key = node
                    .nid
                    .is_some_and(|n| self.keys.contains_key(&format!("nid{n}")));
                if nid_key && !own {
                    allowances.push(Allowance::NidKeyApplied);
                }
                let other_mac_key = node
                    .macs
                    .iter()
                    .any(|m| *m != mac && self.mac_keys.contains_key(m));
                if other_mac_key && !own {
                    allowances.push(Allowance::MacKeyAppliedToNode);
                }
                found.map(|(p, via, _)| (p, via))
            }
            Backend::Postgres => {
                let found = self
                    .macs
                    .get(&mac)
                    .map(|p| (*p, format!("BSS entry for MAC {mac}")));
                if found.is_none()
                    && (self.names.contains_key(node.xname.as_str())
                        || node.nid.is_some_and(|n| self.nids.contains_key(&n))
                        || node.macs.iter().any(|m| self.macs.contains_key(m)))
                {
                    allowances.push(Allowance::PostgresEntryByName);
                }
                found
            }
        };
        let (p, via) = found?;
        if p.kernel.is_empty() {
            return None;
        }
        let params = bss_script_params(&self.assembled(p), node);
        if params.contains("${SPIRE_JOIN_TOKEN}") {
            allowances.push(Allowance::SpireJoinToken);
        }
        Some(ExpectedBoot {
            kernel: p.kernel.clone(),
            initrd: (!p.initrd.is_empty()).then(|| p.initrd.clone()),
            params,
            via,
            meta: p.cloud_init.meta_data.clone(),
        })
    }
}

/// boot-service's rule (score, priority, name) is the source's, shared with the mapping.
fn boot_service_expect(
    configs: &[BootServiceConfig],
    node: &SiteNode,
) -> Option<(ExpectedBoot, i64)> {
    let (config, score) = crate::mapping::boot_service_winner(configs, node)?;
    Some((
        ExpectedBoot {
            kernel: config.spec.kernel.clone(),
            initrd: (!config.spec.initrd.is_empty()).then(|| config.spec.initrd.clone()),
            params: config.spec.params.clone(),
            via: format!(
                "boot-service BootConfiguration {} (score {score})",
                config.name
            ),
            meta: serde_json::Map::new(),
        },
        score,
    ))
}

/// The meta-data keys the cloud-init server (and BSS's Global) give the node.
fn expected_meta(site: &Site, node: &SiteNode) -> BTreeMap<String, Value> {
    let mut meta = BTreeMap::new();
    let hostname = node.hostname.clone().or_else(|| {
        site.ci_defaults
            .as_ref()
            .and_then(|(_, d)| crate::mapping::default_hostname(d, node.nid))
    });
    let hostname = hostname.unwrap_or_else(|| node.xname.clone());
    meta.insert("local-hostname".into(), Value::String(hostname.clone()));
    meta.insert("hostname".into(), Value::String(hostname));
    if let Some((_, d)) = &site.ci_defaults {
        for (key, value) in [
            ("cluster-name", &d.cluster_name),
            ("region", &d.region),
            ("availability-zone", &d.availability_zone),
            ("cloud-provider", &d.cloud_provider),
        ] {
            if !value.is_empty() {
                meta.insert(key.into(), Value::String(value.clone()));
            }
        }
    }
    for (_, params) in &site.bss {
        if let Some(global) = params
            .iter()
            .find(|p| p.hosts.iter().any(|h| h == "Global"))
        {
            meta.insert(
                "Global".into(),
                Value::Object(global.cloud_init.meta_data.clone()),
            );
        }
    }
    meta
}

/// What the source serves every node of the site, for each of its MACs.
pub fn expectations(site: &Site) -> Vec<Expectation> {
    let indexes: Vec<BssIndex<'_>> = site.bss.iter().map(|(_, p)| BssIndex::new(p)).collect();
    let mut out = Vec::new();
    for node in site.nodes.values() {
        let meta = expected_meta(site, node);
        for mac in &node.macs {
            let mut allowances = Vec::new();
            // A boot-service winner other than a catch-all outranks BSS, as the mapping's
            // priorities have it; a catch-all comes after BSS's Default.
            let boot = match boot_service_expect(&site.boot_service, node) {
                Some((boot, score)) if score > 1 => Some(boot),
                other => indexes
                    .iter()
                    .find_map(|index| index.expect(node, *mac, &mut allowances))
                    .or(other.map(|(b, _)| b)),
            };
            let mut meta = meta.clone();
            if let Some(b) = &boot {
                meta.extend(b.meta.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            out.push(Expectation {
                node: node.xname.clone(),
                mac: *mac,
                boot,
                allowances,
                meta,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(bss: &str) -> Site {
        let mut site = Site::default();
        for (i, role) in ["Compute", "Compute", "Compute"].iter().enumerate() {
            let xname = format!("x1c0s0b0n{i}");
            site.nodes.insert(
                xname.clone(),
                SiteNode {
                    xname,
                    macs: vec![
                        format!("02:00:00:00:00:0{i}").parse().unwrap(),
                        format!("02:00:00:00:01:0{i}").parse().unwrap(),
                    ],
                    nid: Some(i as i64 + 1),
                    role: (*role).into(),
                    ..Default::default()
                },
            );
        }
        site.bss
            .push(("bss".into(), serde_json::from_str(bss).unwrap()));
        site
    }

    fn kernels(site: &Site) -> Vec<(String, Option<String>, Vec<Allowance>)> {
        expectations(site)
            .into_iter()
            .map(|e| (e.mac.to_string(), e.boot.map(|b| b.kernel), e.allowances))
            .collect()
    }

    #[test]
    fn etcd_looks_up_xname_then_the_asking_mac_then_role_then_default() {
        let s = site(
            r#"[{"hosts":["Default"],"kernel":"http://default"},
                {"hosts":["Compute"],"kernel":"http://role"},
                {"hosts":["x1c0s0b0n0"],"kernel":"http://xname"},
                {"hosts":["02:00:00:00:00:01"],"kernel":"http://mac"},
                {"hosts":["nid3"],"kernel":"http://nid"}]"#,
        );
        let got = kernels(&s);
        let k = |mac: &str| got.iter().find(|(m, ..)| m == mac).unwrap().clone();
        assert_eq!(k("02:00:00:00:00:00").1.as_deref(), Some("http://xname"));
        assert_eq!(k("02:00:00:00:01:00").1.as_deref(), Some("http://xname"));
        assert_eq!(k("02:00:00:00:00:01").1.as_deref(), Some("http://mac"));
        // The node's other MAC falls to its role, and says why nodeboot may differ.
        assert_eq!(k("02:00:00:00:01:01").1.as_deref(), Some("http://role"));
        assert_eq!(k("02:00:00:00:01:01").2, [Allowance::MacKeyAppliedToNode]);
        // A nid key serves only nid= requests.
        assert_eq!(k("02:00:00:00:00:02").1.as_deref(), Some("http://role"));
        assert_eq!(k("02:00:00:00:00:02").2, [Allowance::NidKeyApplied]);
    }

    #[test]
    fn postgres_answers_a_mac_from_mac_entries_only() {
        let s = site(
            r#"[{"hosts":["x1c0s0b0n0"],"macs":["02:00:00:00:00:01"],"nids":[3],"kernel":"http://pg"}]"#,
        );
        let got = kernels(&s);
        let k = |mac: &str| got.iter().find(|(m, ..)| m == mac).unwrap().clone();
        assert_eq!(k("02:00:00:00:00:01").1.as_deref(), Some("http://pg"));
        assert_eq!(k("02:00:00:00:00:00").1, None);
        assert_eq!(k("02:00:00:00:00:00").2, [Allowance::PostgresEntryByName]);
        assert_eq!(k("02:00:00:00:00:02").2, [Allowance::PostgresEntryByName]);
    }
}
