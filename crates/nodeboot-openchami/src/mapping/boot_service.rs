//! boot-service BootConfigurations onto BootConfigs. boot-service scores every configuration
//! against a node (each matching host or `*` 50, MAC 100, NID 75, each shared group 25; a
//! configuration with no selector at all 1) and takes the highest score, then the highest
//! `priority`, then the first name. A selector cannot add up scores, so the winner is found
//! here, per node, and the node carries a label naming it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use nodeboot_core::crd::MetaData;
use nodeboot_core::mac::Mac;

use super::bss::{Content, check_url, clean_params};
use super::{
    BOOT_CONFIGURATION_LABEL, Names, NodeAdditions, PRIORITY_BOOT_SERVICE,
    PRIORITY_BOOT_SERVICE_CATCH_ALL, Planned,
};
use crate::report::Report;
use crate::site::{BootServiceConfig, Site, SiteNode};

/// boot-service's score of `config` for `node`.
pub fn score(config: &BootServiceConfig, node: &SiteNode) -> i64 {
    let spec = &config.spec;
    let mut score = 0;
    for host in &spec.hosts {
        if host == "*" || *host == node.xname || node.hostname.as_deref() == Some(host.as_str()) {
            score += 50;
        }
    }
    let boot_mac = node.macs.first();
    for mac in &spec.macs {
        if mac.parse::<Mac>().ok().as_ref() == boot_mac && boot_mac.is_some() {
            score += 100;
        }
    }
    for nid in &spec.nids {
        if Some(*nid) == node.nid {
            score += 75;
        }
    }
    for group in &spec.groups {
        if node.groups.contains(group) {
            score += 25;
        }
    }
    if score == 0
        && spec.hosts.is_empty()
        && spec.macs.is_empty()
        && spec.nids.is_empty()
        && spec.groups.is_empty()
    {
        score = 1;
    }
    score
}

/// The configuration boot-service gives `node`, among `configs`, with its score.
pub fn winner<'c>(
    configs: &'c [BootServiceConfig],
    node: &SiteNode,
) -> Option<(&'c BootServiceConfig, i64)> {
    configs
        .iter()
        .map(|c| (c, score(c, node)))
        .filter(|(_, s)| *s > 0)
        .min_by(|(a, sa), (b, sb)| {
            sb.cmp(sa)
                .then(b.spec.priority.cmp(&a.spec.priority))
                .then(a.name.cmp(&b.name))
        })
}

pub(super) fn map(
    site: &Site,
    planned_out: &mut Vec<Planned>,
    additions: &mut NodeAdditions,
    names: &mut Names,
    report: &mut Report,
) {
    let mut valid = Vec::new();
    let mut contents = BTreeMap::new();
    for config in &site.boot_service {
        let object = format!("boot-service BootConfiguration {}", config.name);
        let checked = check_url("kernel", &config.spec.kernel)
            .and_then(|()| match config.spec.initrd.as_str() {
                "" => Ok(()),
                initrd => check_url("initrd", initrd),
            })
            .and_then(|()| clean_params(&config.spec.params));
        match checked {
            Ok((params, dropped)) => {
                for token in dropped {
                    report.unmapped(
                        &config.source,
                        format!("{object} params token {token}"),
                        "a SPIRE join token placeholder; nodeboot issues none, so it is left out",
                    );
                }
                contents.insert(
                    config.name.clone(),
                    Content {
                        kernel: config.spec.kernel.clone(),
                        initrd: (!config.spec.initrd.is_empty())
                            .then(|| config.spec.initrd.clone()),
                        params,
                        user_data: None,
                    },
                );
                valid.push(config.clone());
            }
            Err(why) => report.unmapped(&config.source, object, why),
        }
    }
    // Winners per configuration: labelled nodes, and whether it wins as a catch-all.
    let mut won: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut catch_all: Option<&str> = None;
    for node in site.nodes.values() {
        if let Some((config, score)) = winner(&valid, node) {
            if score == 1 {
                catch_all = Some(&config.name);
            } else {
                won.entry(&config.name).or_default().push(&node.xname);
            }
        }
    }
    for config in &valid {
        let object = format!("boot-service BootConfiguration {}", config.name);
        let Some(content) = contents.get(&config.name).cloned() else {
            continue;
        };
        let nodes = won.get(config.name.as_str());
        let is_catch_all = catch_all == Some(config.name.as_str());
        if nodes.is_none() && !is_catch_all {
            report.unmapped(
                &config.source,
                object,
                "it wins for no node of the inventory (every node it matches scores higher \
                 elsewhere, or it matches none)",
            );
            continue;
        }
        let name = names.take(&format!("bs-{}", config.name));
        let (selector, priority, became) = if let Some(nodes) = nodes {
            for node in nodes {
                additions
                    .labels
                    .entry((*node).to_owned())
                    .or_default()
                    .insert(BOOT_CONFIGURATION_LABEL.to_owned(), name.clone());
            }
            (
                LabelSelector {
                    match_labels: Some(
                        [(BOOT_CONFIGURATION_LABEL.to_owned(), name.clone())].into(),
                    ),
                    ..Default::default()
                },
                PRIORITY_BOOT_SERVICE,
                format!(
                    "BootConfig {name} for the {} nodes it wins (label {BOOT_CONFIGURATION_LABEL}={name}, priority {PRIORITY_BOOT_SERVICE})",
                    nodes.len()
                ),
            )
        } else {
            (
                LabelSelector::default(),
                PRIORITY_BOOT_SERVICE_CATCH_ALL,
                format!(
                    "BootConfig {name} (catch-all, priority {PRIORITY_BOOT_SERVICE_CATCH_ALL})"
                ),
            )
        };
        report.mapped(&config.source, object, became);
        planned_out.push(Planned {
            name,
            selector,
            priority,
            kernel: content.kernel,
            initrd: content.initrd,
            params: content.params,
            user_data: None,
            meta: MetaData::new(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::envelopes::BootConfigurationSpec;

    fn config(name: &str, spec: &str, priority: i64) -> BootServiceConfig {
        let mut spec: BootConfigurationSpec = serde_json::from_str(spec).unwrap();
        spec.priority = priority;
        BootServiceConfig {
            source: "s".into(),
            name: name.into(),
            spec,
        }
    }

    fn node() -> SiteNode {
        SiteNode {
            xname: "x1c0s0b0n0".into(),
            macs: vec![
                "02:00:00:00:00:01".parse().unwrap(),
                "02:00:00:00:00:02".parse().unwrap(),
            ],
            nid: Some(7),
            hostname: Some("nid007".into()),
            groups: ["compute".to_owned(), "gpu".to_owned()].into(),
            ..Default::default()
        }
    }

    #[test]
    fn scores_add_up_as_boot_service_adds_them() {
        let n = node();
        assert_eq!(
            score(&config("a", r#"{"macs":["02-00-00-00-00-01"]}"#, 0), &n),
            100
        );
        // Only the boot MAC counts.
        assert_eq!(
            score(&config("a", r#"{"macs":["02:00:00:00:00:02"]}"#, 0), &n),
            0
        );
        assert_eq!(score(&config("a", r#"{"nids":[7]}"#, 0), &n), 75);
        assert_eq!(
            score(&config("a", r#"{"hosts":["nid007","x1c0s0b0n0"]}"#, 0), &n),
            100
        );
        assert_eq!(
            score(
                &config("a", r#"{"hosts":["*"],"groups":["compute","gpu","io"]}"#, 0),
                &n
            ),
            100
        );
        assert_eq!(score(&config("a", r#"{}"#, 0), &n), 1);
        assert_eq!(score(&config("a", r#"{"groups":["io"]}"#, 0), &n), 0);
    }

    #[test]
    fn ties_go_to_priority_then_name() {
        let n = node();
        let configs = [
            config("b", r#"{"groups":["compute"]}"#, 5),
            config("a", r#"{"groups":["gpu"]}"#, 5),
            config("c", r#"{"groups":["compute"]}"#, 1),
            config("catch-all", r#"{}"#, 100),
        ];
        assert_eq!(
            winner(&configs, &n).map(|(c, s)| (c.name.as_str(), s)),
            Some(("a", 25))
        );
        let lone = SiteNode {
            groups: Default::default(),
            ..node()
        };
        assert_eq!(
            winner(&configs, &lone).map(|(c, s)| (c.name.as_str(), s)),
            Some(("catch-all", 1))
        );
    }
}
