//! The full storm: wrk issuing every (node, document) pair once, the exact compare of every
//! body, and nodeboot's own request counters over the wrk pass.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::results::WrkRow;
use super::{ReportError, read, thousands};
use crate::compare::CompareSummary;

pub fn section(dir: &Path, rows: &[WrkRow]) -> Result<String, ReportError> {
    let raw = dir.join("raw");
    let full: Vec<&WrkRow> = rows.iter().filter(|r| r.scenario == "storm-once").collect();
    let exact_path = raw.join("full-storm-exact.txt");
    let mut out = String::new();
    if full.is_empty() && !exact_path.exists() {
        return Ok(out);
    }
    out.push_str("\n## Full storm: every node's four requests\n\n");
    out.push_str("| client | connections | requests | errors | seconds | req/s | detail |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---|\n");
    for r in full {
        let _ = writeln!(
            out,
            "| wrk, each (node, doc) pair issued once then stopped | {} | {} | {} | {:.1} | {} \
             | connect {}, read {}, write {}, status>399 {}, timeout {}; p99 {:.2} ms |",
            r.connections,
            r.requests,
            r.errors(),
            r.duration_us as f64 / 1e6,
            thousands(r.rps),
            r.err_connect,
            r.err_read,
            r.err_write,
            r.err_status,
            r.err_timeout,
            r.p99_us / 1000.0,
        );
    }
    if exact_path.exists() {
        let text = read(&exact_path)?;
        let summary = text
            .lines()
            .find_map(|l| l.strip_prefix("COMPARE "))
            .and_then(|json| serde_json::from_str::<CompareSummary>(json).ok());
        match summary {
            Some(c) => {
                let _ = writeln!(
                    out,
                    "| exact (nodeboot-bench compare), each pair once, shuffled, bodies checked \
                     | {} | {} | {} | {} | {} | identical {}, different {}, non-200 {}, \
                     connection errors and timeouts {} |",
                    c.connections,
                    c.requests,
                    c.requests - c.identical,
                    c.seconds,
                    thousands(c.requests_per_second),
                    c.identical,
                    c.different,
                    c.non_200,
                    c.errors,
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "| exact (nodeboot-bench compare) | | | failed | | | see {} |",
                    exact_path.display()
                );
            }
        }
    }
    let before = raw.join("full-storm-metrics-before.txt");
    let after = raw.join("full-storm-metrics-after.txt");
    if before.exists() && after.exists() {
        let (before, after) = (read(&before)?, read(&after)?);
        let (b, a) = (counters(&before), counters(&after));
        out.push_str(
            "\nnodeboot's own counters during the wrk full storm \
             (`nodeboot_http_requests_total` deltas; `wait` is the answer to nodes in conflict):\n\n",
        );
        for (series, value) in &a {
            let delta = value - b.get(series).copied().unwrap_or(0.0);
            if delta != 0.0 {
                let _ = writeln!(out, "- `{series}`: {delta:.0}");
            }
        }
    }
    Ok(out)
}

/// Prometheus text lines `series value`, by series.
fn counters(text: &str) -> BTreeMap<&str, f64> {
    text.lines()
        .filter_map(|line| {
            let (series, value) = line.trim().rsplit_once(' ')?;
            Some((series, value.parse().ok()?))
        })
        .collect()
}
