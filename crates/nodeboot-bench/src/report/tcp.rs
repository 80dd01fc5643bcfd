//! The kernel's TCP counters that moved during a wrk run (storm.sh's `tcp_counters`, before and
//! after each run, in `raw/<run>.tcp`): listen-queue overflows and SYN retransmissions, which
//! wrk's own numbers cannot show.

use std::fmt::Write as _;
use std::path::Path;

use super::{ReportError, read};

pub fn section(raw: &Path) -> Result<String, ReportError> {
    let io = |source| ReportError::Io {
        path: raw.to_owned(),
        source,
    };
    let mut names: Vec<String> = std::fs::read_dir(raw)
        .map_err(io)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".tcp"))
        .collect();
    names.sort();
    let mut moved: Vec<(String, Vec<(String, i64)>)> = Vec::new();
    for name in names {
        let text = read(&raw.join(&name))?;
        let lines: Vec<Vec<(&str, i64)>> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(parse)
            .collect();
        let [before, after] = lines.as_slice() else {
            continue;
        };
        let deltas: Vec<(String, i64)> = before
            .iter()
            .map(|(key, b)| {
                let a = after.iter().find(|(k, _)| k == key).map_or(0, |(_, v)| *v);
                (key.to_string(), a - b)
            })
            .collect();
        if deltas.iter().any(|(_, d)| *d != 0) {
            let run = name.trim_end_matches(".tcp").to_owned();
            moved.push((run, deltas));
        }
    }
    let Some((_, first)) = moved.first() else {
        return Ok(String::new());
    };
    let mut out = String::from("\n## TCP counters that moved during a run\n\n");
    out.push_str(
        "A listen-queue overflow drops a connection's handshake, which the client resends after \
         about a second: that connection starts late. wrk starts a request's latency clock when it \
         writes the request, once connected, so a handshake retried as a SYN (TCPSynRetrans) shows \
         here and not in its latencies. The counters cover the whole network namespace: anything \
         else on the machine adds to them.\n\n",
    );
    out.push_str("| run |");
    for (key, _) in first {
        let _ = write!(out, " {key} |");
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(first.len()));
    out.push('\n');
    for (run, deltas) in &moved {
        let _ = write!(out, "| {run} |");
        for (_, d) in deltas {
            let _ = write!(out, " {d} |");
        }
        out.push('\n');
    }
    Ok(out)
}

/// `Key=value Key=value ...`; a counter the kernel does not have is empty, read as 0.
fn parse(line: &str) -> Vec<(&str, i64)> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k, v.parse().unwrap_or(0)))
        .collect()
}
