//! The migration check: for every node and each of its MACs, what nodeboot serves from the
//! imported manifests (the core's own `Snapshot::answer`, in process) against what the source
//! would serve (`expected`), as a table of differences grouped by cause. Differences the
//! migration makes on purpose are listed as allowed and do not fail the check.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use nodeboot_core::render::cloud_init::Document;
use nodeboot_core::snapshot::{Decision, Identity, Query, Snapshot};
use serde_json::Value;

use crate::expected::{Allowance, Expectation};

/// Parameters that differ by design: nodeboot adds `BOOTIF=` (BSS does not), `ds=` names
/// the service that answers, BSS adds `bss_referral_token=` (not in its export), and the
/// `initrd=` token is part of the kernel line, not of the params, in nodeboot.
const IGNORED_PARAMS: &[&str] = &["BOOTIF=", "ds=", "bss_referral_token=", "initrd="];

fn comparable(params: &str, identity: bool) -> Vec<&str> {
    params
        .split_whitespace()
        .filter(|t| !IGNORED_PARAMS.iter().any(|k| t.starts_with(k)))
        .filter(|t| identity || !(t.starts_with("xname=") || t.starts_with("nid=")))
        .filter(|t| !t.contains("${SPIRE_JOIN_TOKEN}"))
        .collect()
}

/// One group of differences.
#[derive(Debug, Clone)]
pub struct Row {
    pub cause: String,
    /// A difference the migration makes on purpose (documented); it does not fail the check.
    pub allowed: bool,
    /// Requests (node and MAC) that show it.
    pub requests: usize,
    /// Up to three nodes that show it.
    pub examples: Vec<String>,
    /// What differs, for the first of them.
    pub sample: String,
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub nodes: usize,
    pub requests: usize,
    pub rows: Vec<Row>,
}

impl VerifyReport {
    /// Whether some node differs beyond the allowed differences.
    pub fn failed(&self) -> bool {
        self.rows.iter().any(|r| !r.allowed)
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "checked {} nodes, {} boot requests (one per MAC)",
            self.nodes, self.requests
        );
        if self.rows.is_empty() {
            out.push_str("no differences\n");
            return out;
        }
        let _ = writeln!(
            out,
            "{:<9} {:>8}  {:<58} EXAMPLES",
            "KIND", "REQUESTS", "CAUSE"
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "{:<9} {:>8}  {:<58} {}",
                if r.allowed { "allowed" } else { "DIFFERS" },
                r.requests,
                r.cause,
                r.examples.join(", ")
            );
            if !r.sample.is_empty() {
                let _ = writeln!(out, "{:<19} e.g. {}", "", r.sample);
            }
        }
        let unexpected: usize = self
            .rows
            .iter()
            .filter(|r| !r.allowed)
            .map(|r| r.requests)
            .sum();
        if unexpected > 0 {
            let _ = writeln!(
                out,
                "{unexpected} requests differ beyond the allowed differences"
            );
        } else {
            out.push_str("every difference is an allowed one\n");
        }
        out
    }
}

#[derive(Default)]
struct Rows(BTreeMap<(bool, String), Row>);

impl Rows {
    fn add(&mut self, cause: String, allowed: bool, node: &str, sample: impl FnOnce() -> String) {
        let row = self
            .0
            .entry((allowed, cause.clone()))
            .or_insert_with(|| Row {
                cause,
                allowed,
                requests: 0,
                examples: Vec::new(),
                sample: sample(),
            });
        row.requests += 1;
        if row.examples.len() < 3 && !row.examples.iter().any(|e| e == node) {
            row.examples.push(node.to_owned());
        }
    }
}

fn meta_of(snapshot: &Snapshot, query: &Query) -> Option<serde_json::Map<String, Value>> {
    let answer = snapshot.answer(query);
    let text = answer.document(Document::MetaData).ok()?;
    serde_yaml_ng::from_slice::<Value>(&text)
        .ok()
        .and_then(|v| v.as_object().cloned())
}

/// Compares every expectation with the snapshot's answers.
pub fn verify(snapshot: &Snapshot, expectations: &[Expectation]) -> VerifyReport {
    let mut rows = Rows::default();
    let mut nodes_seen = std::collections::BTreeSet::new();
    for e in expectations {
        let first_of_node = nodes_seen.insert(e.node.clone());
        let query = Query::new(Identity::Mac(e.mac));
        let answer = snapshot.answer(&query);
        let decision = answer.decision();
        for a in &e.allowances {
            rows.add(a.describe().to_owned(), true, &e.node, String::new);
        }
        let allowed_by = |a: Allowance| e.allowances.contains(&a);
        match (&e.boot, &decision) {
            (None, Decision::Wait { .. }) => {}
            (None, Decision::Boot(boot)) => {
                let allowed = allowed_by(Allowance::PostgresEntryByName);
                rows.add(
                    "nodeboot boots it, the source boots nothing".into(),
                    allowed,
                    &e.node,
                    || {
                        format!(
                            "{} {}: nodeboot boots {}",
                            e.node, e.mac, boot.config.kernel
                        )
                    },
                );
            }
            (Some(expected), Decision::Wait { reason, why }) => rows.add(
                format!("the source boots it, nodeboot makes it wait ({reason:?})"),
                false,
                &e.node,
                || {
                    format!(
                        "{} {}: source: {}; nodeboot: {why}",
                        e.node, e.mac, expected.via
                    )
                },
            ),
            (Some(expected), Decision::Boot(boot)) => {
                let nid_key = allowed_by(Allowance::NidKeyApplied)
                    || allowed_by(Allowance::MacKeyAppliedToNode);
                // Differences a BSS key applied to the whole node explains are named as such.
                let cause = |what: &str| {
                    if nid_key {
                        format!("{what}, from a BSS nid or MAC key (above)")
                    } else {
                        what.to_owned()
                    }
                };
                if expected.kernel != boot.config.kernel {
                    rows.add(cause("kernel differs"), nid_key, &e.node, || {
                        format!(
                            "{} {}: source {} ({}), nodeboot {}",
                            e.node, e.mac, expected.kernel, expected.via, boot.config.kernel
                        )
                    });
                }
                if expected.initrd.as_deref() != boot.config.initrd.as_deref() {
                    rows.add(cause("initrd differs"), nid_key, &e.node, || {
                        format!(
                            "{} {}: source {:?} ({}), nodeboot {:?}",
                            e.node, e.mac, expected.initrd, expected.via, boot.config.initrd
                        )
                    });
                }
                let identity = expected.via.starts_with("BSS");
                if comparable(&expected.params, identity) != comparable(boot.params(), identity) {
                    rows.add(cause("params differ"), nid_key, &e.node, || {
                        format!(
                            "{} {}: source '{}' ({}), nodeboot '{}'",
                            e.node,
                            e.mac,
                            expected.params,
                            expected.via,
                            boot.params()
                        )
                    });
                }
            }
        }
        if first_of_node {
            let served = meta_of(snapshot, &query).unwrap_or_default();
            // Meta-data of a BSS nid or MAC key nodeboot applies to the whole node.
            let key_applied =
                allowed_by(Allowance::NidKeyApplied) || allowed_by(Allowance::MacKeyAppliedToNode);
            for (key, value) in &e.meta {
                if served.get(key) != Some(value) {
                    rows.add(
                        format!("meta-data '{key}' differs"),
                        key_applied,
                        &e.node,
                        || {
                            format!(
                                "{}: source {value}, nodeboot {}",
                                e.node,
                                served
                                    .get(key)
                                    .map_or("(none)".to_owned(), ToString::to_string)
                            )
                        },
                    );
                }
            }
        }
    }
    VerifyReport {
        nodes: nodes_seen.len(),
        requests: expectations.len(),
        rows: rows.0.into_values().collect(),
    }
}

/// Reads BSS's boot script (what `/boot/v1/bootscript` answers) into kernel, initrd and
/// params, for a check against a running BSS. `None` when it boots nothing.
pub fn parse_bss_script(script: &str, via: &str) -> Option<crate::expected::ExpectedBoot> {
    let mut kernel = None;
    let mut initrd = None;
    for line in script.lines() {
        let line = line.trim();
        let line = line.split(" || ").next().unwrap_or(line);
        let mut words = line.split_whitespace();
        match words.next() {
            Some("kernel") => {
                let rest: Vec<&str> = words.collect();
                let at = rest
                    .iter()
                    .position(|w| !w.starts_with("--"))
                    .unwrap_or(rest.len());
                // `--name kernel`: skip an option and its value.
                let mut i = 0;
                while i < rest.len() && rest[i].starts_with("--") {
                    i += 2;
                }
                let i = i.max(at);
                let url = rest.get(i)?;
                kernel = Some((url.to_string(), rest[i + 1..].join(" ")));
            }
            Some("initrd") => {
                let rest: Vec<&str> = words.collect();
                let mut i = 0;
                while i < rest.len() && rest[i].starts_with("--") {
                    i += 2;
                }
                initrd = rest.get(i).map(|s| s.to_string());
            }
            _ => {}
        }
    }
    let (kernel, params) = kernel?;
    Some(crate::expected::ExpectedBoot {
        kernel,
        initrd,
        params,
        via: via.to_owned(),
        meta: serde_json::Map::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_bss_script() {
        let script = "#!ipxe\nkernel --name kernel http://s/k initrd=initrd console=ttyS0 xname=x1 nid=1 ds=nocloud-net;s=http://b/ || goto boot_retry\ninitrd --name initrd http://s/i || goto boot_retry\nboot || goto boot_retry\n:boot_retry\nsleep 30\nchain https://b/boot/v1/bootscript?mac=a&retry=1\n";
        let boot = parse_bss_script(script, "live").unwrap();
        assert_eq!(boot.kernel, "http://s/k");
        assert_eq!(boot.initrd.as_deref(), Some("http://s/i"));
        assert_eq!(
            comparable(&boot.params, true),
            vec!["console=ttyS0", "xname=x1", "nid=1"]
        );
        assert!(parse_bss_script("#!ipxe\nsleep 10\nchain http://b/x\n", "live").is_none());
    }
}
