//! The Markdown summary of a bench/storm.sh run directory: the tables docs/performance.md
//! quotes. Reads what storm.sh leaves there: `results.tsv` (one line per wrk run), `env.txt`,
//! `nodeboot.json` (cold start, RSS) and `raw/` (full-storm files, TCP counters per run).

mod full_storm;
mod results;
mod tcp;
mod wrk;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use results::{WrkRow, read_results};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {why}")]
    Malformed {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn read(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The whole summary of the run in `dir`.
pub fn report(dir: &Path) -> Result<String, ReportError> {
    let rows = read_results(&dir.join("results.tsv"))?;
    let env = read(&dir.join("env.txt"))?;
    let mut out = String::new();
    out.push_str("## Boot storm: nodeboot vs nginx on the same responses\n\n");
    let _ = writeln!(out, "```\n{}\n```\n", env.trim());
    out.push_str(&wrk::tables(&rows));
    out.push_str(&full_storm::section(dir, &rows)?);
    out.push_str(&tcp::section(&dir.join("raw"))?);
    out.push_str(&memory(&dir.join("nodeboot.json"))?);
    Ok(out)
}

/// What storm.sh records of the nodeboot process.
#[derive(Debug, Deserialize)]
struct NodebootRun {
    nodes: u64,
    cold_start_ms: u64,
    rss_ready_kb: u64,
    rss_after_wrk_kb: u64,
    rss_end_kb: u64,
    rss_peak_kb: u64,
}

fn memory(path: &Path) -> Result<String, ReportError> {
    let run: NodebootRun =
        serde_json::from_str(&read(path)?).map_err(|source| ReportError::Json {
            path: path.to_owned(),
            source,
        })?;
    let mib = |kb: u64| format!("{:.0} MiB", kb as f64 / 1024.0);
    let mut out = String::from("\n## Cold start and memory\n\n");
    out.push_str("| nodes | cold start (process start to /readyz 200) | RSS ready | RSS after wrk runs | RSS at end | peak RSS (VmHWM) |\n");
    out.push_str("|---:|---:|---:|---:|---:|---:|\n");
    let _ = writeln!(
        out,
        "| {} | {} ms | {} | {} | {} | {} |",
        run.nodes,
        run.cold_start_ms,
        mib(run.rss_ready_kb),
        mib(run.rss_after_wrk_kb),
        mib(run.rss_end_kb),
        mib(run.rss_peak_kb)
    );
    Ok(out)
}

/// `12345.6` as `12,346`: req/s in the tables.
fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if x < 0.0 && digits != "0" {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The median, the mean of the two middle values for an even count; NaN for none.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::CompareSummary;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(73925.4), "73,925");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    /// A small run directory as storm.sh leaves it, and the summary made of it.
    #[test]
    fn summary_of_a_sample_run() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("raw")).unwrap();
        let header = "scenario\tconnections\tserver\trun\trequests\tduration_us\tbytes\trps\tp50_us\tp90_us\tp99_us\tp999_us\tmax_us\tmean_us\terr_connect\terr_read\terr_write\terr_status\terr_timeout\tload1";
        let rows = [
            "bootscript\t256\tnodeboot\t1\t739250\t10000000\t1\t73925.0\t2920\t5000\t8160\t10750\t20000\t3000.0\t0\t0\t0\t0\t0\t3.33",
            "bootscript\t256\tnginx\t1\t626220\t10000000\t1\t62622.0\t3680\t6000\t9230\t14000\t30000\t4000.0\t0\t0\t0\t0\t0\t3.44",
            "bootscript\t256\tnodeboot\t2\t699920\t10000000\t1\t69993.0\t3000\t5000\t8000\t11000\t20000\t3000.0\t0\t0\t0\t0\t0\t2.67",
            "bootscript\t256\tnginx\t2\t575610\t10000000\t1\t57562.0\t3700\t6000\t9310\t14100\t30000\t4000.0\t0\t1\t0\t0\t2\t2.88",
            "storm-once\t1024\tnodeboot\t1\t400290\t6600000\t1\t60776.0\t9000\t20000\t53210\t60000\t90000\t10000.0\t0\t0\t0\t0\t0\t3.1",
        ];
        std::fs::write(
            d.join("results.tsv"),
            format!("{header}\n{}\n", rows.join("\n")),
        )
        .unwrap();
        std::fs::write(d.join("env.txt"), "date: 2026-11-25T13:52:37Z\n").unwrap();
        std::fs::write(
            d.join("nodeboot.json"),
            r#"{"nodes": 100000, "cold_start_ms": 1245, "rss_ready_kb": 201728,
 "rss_after_wrk_kb": 237568, "rss_end_kb": 238592, "rss_peak_kb": 238592}"#,
        )
        .unwrap();
        let summary = CompareSummary {
            label: "nodeboot-full".into(),
            server: "127.0.0.1:1".into(),
            requests: 400000,
            identical: 400000,
            different: 0,
            non_200: 0,
            errors: 0,
            connections: 1024,
            seconds: 8.5,
            requests_per_second: 47059.0,
        };
        std::fs::write(
            d.join("raw/full-storm-exact.txt"),
            format!("COMPARE {}\n", serde_json::to_string(&summary).unwrap()),
        )
        .unwrap();
        std::fs::write(
            d.join("raw/full-storm-metrics-before.txt"),
            "nodeboot_http_requests_total{endpoint=\"bootscript\",outcome=\"ok\"} 100\n",
        )
        .unwrap();
        std::fs::write(
            d.join("raw/full-storm-metrics-after.txt"),
            "nodeboot_http_requests_total{endpoint=\"bootscript\",outcome=\"ok\"} 95323\nnodeboot_http_requests_total{endpoint=\"bootscript\",outcome=\"wait\"} 5000\n",
        )
        .unwrap();
        std::fs::write(
            d.join("raw/bootscript-c256-nginx-r1.tcp"),
            "ListenOverflows=5 ListenDrops=5 TCPSynRetrans=1 SyncookiesSent=0 TCPTimeouts=1\nListenOverflows=9 ListenDrops=9 TCPSynRetrans=1 SyncookiesSent= TCPTimeouts=3\n",
        )
        .unwrap();
        std::fs::write(
            d.join("raw/bootscript-c256-nodeboot-r1.tcp"),
            "ListenOverflows=9 ListenDrops=9 TCPSynRetrans=1 SyncookiesSent=0 TCPTimeouts=3\nListenOverflows=9 ListenDrops=9 TCPSynRetrans=1 SyncookiesSent=0 TCPTimeouts=3\n",
        )
        .unwrap();

        let text = report(d).unwrap();
        for line in [
            "```\ndate: 2026-11-25T13:52:37Z\n```",
            "Medians of 2 runs per cell",
            "| bootscript | 256 | 71,959 | 60,092 | 1.20 | 2.96 / 8.08 / 10.88 | 3.69 / 9.27 / 14.05 | 0 / 3 | 3.33 2.67; 3.44 2.88 |",
            "| bootscript | 256 | nginx | 62,622 | 57,562 |",
            "| bootscript | 256 | nodeboot | 73,925 | 69,993 |",
            "| bootscript | 256 | nodeboot/nginx | 1.18 | 1.22 |",
            "| wrk, each (node, doc) pair issued once then stopped | 1024 | 400290 | 0 | 6.6 | 60,776 | connect 0, read 0, write 0, status>399 0, timeout 0; p99 53.21 ms |",
            "| exact (nodeboot-bench compare), each pair once, shuffled, bodies checked | 1024 | 400000 | 0 | 8.5 | 47,059 | identical 400000, different 0, non-200 0, connection errors and timeouts 0 |",
            "- `nodeboot_http_requests_total{endpoint=\"bootscript\",outcome=\"ok\"}`: 95223",
            "- `nodeboot_http_requests_total{endpoint=\"bootscript\",outcome=\"wait\"}`: 5000",
            "| run | ListenOverflows | ListenDrops | TCPSynRetrans | SyncookiesSent | TCPTimeouts |",
            "| bootscript-c256-nginx-r1 | 4 | 4 | 0 | 0 | 2 |",
            "| 100000 | 1245 ms | 197 MiB | 232 MiB | 233 MiB | 233 MiB |",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        // A run whose counters did not move is not listed.
        assert!(!text.contains("bootscript-c256-nodeboot-r1"), "{text}");
    }
}
