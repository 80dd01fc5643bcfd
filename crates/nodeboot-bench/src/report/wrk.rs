//! The saturation, open-loop and paced tables: per scenario and connection count, nodeboot's and
//! nginx's median req/s and latencies, their ratio, and every round's req/s; then nodeboot
//! against the two ceilings (nginx from memory, the bare HTTP stack), and the discovery storm
//! against the known-MAC one.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::results::WrkRow;
use super::{median, thousands};

/// Saturation (closed loop) first, then the open loop by rate, then requests paced below
/// saturation.
const ORDER: [&str; 6] = [
    "bootscript",
    "close",
    "storm",
    "cloudinit",
    "discovery",
    "bootscript-paced",
];

/// Where a scenario goes in the tables: `ORDER`, with `open-loop-P` (P % of saturation) by P
/// before the paced runs; None for a scenario this report does not know.
fn rank(scenario: &str) -> Option<usize> {
    if let Some(percent) = scenario.strip_prefix("open-loop-") {
        return percent.parse::<usize>().ok().map(|p| 100 + p);
    }
    ORDER.iter().position(|s| *s == scenario).map(|i| match i {
        5 => 1000,
        i => i,
    })
}

/// (rank, connections, server) -> that cell's runs, in file order.
type Cells<'a> = BTreeMap<(usize, u32, &'a str), Vec<&'a WrkRow>>;

pub fn tables(rows: &[WrkRow]) -> String {
    let mut cells: Cells = BTreeMap::new();
    let mut names: BTreeMap<usize, &str> = BTreeMap::new();
    for r in rows {
        if let Some(order) = rank(&r.scenario) {
            names.insert(order, r.scenario.as_str());
            cells
                .entry((order, r.connections, r.server.as_str()))
                .or_default()
                .push(r);
        }
    }
    let runs = cells.values().map(Vec::len).max().unwrap_or(0);
    let mut out = String::new();
    out.push_str(
        "`bootscript`, `close`, `storm`, `cloudinit` and `discovery`: wrk's closed loop, each \
         connection sends its next request as soon as the answer arrives (saturation); `close` \
         opens a new connection for every request. `open-loop-P`: oha sends bootscript requests \
         at a fixed rate, P % of nodeboot's saturated bootscript req/s, whatever the latency, \
         and counts each latency from the request's due time; its req/s is what was served. \
         `bootscript-paced`: each wrk connection pauses between requests (--paced-rps); its \
         req/s is the offered load, compare latencies only.\n\n",
    );
    if runs > 1 {
        let _ = writeln!(
            out,
            "Medians of {runs} runs per cell (each column's median on its own); errors are summed; \
             the ratio is of the median req/s.\n"
        );
    }
    out.push_str(
        "| scenario | connections | nodeboot req/s | nginx req/s | nodeboot/nginx \
         | nodeboot p50 / p99 / p99.9 ms | nginx p50 / p99 / p99.9 ms \
         | errors nodeboot / nginx | load1 after each run: nodeboot; nginx |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let points: std::collections::BTreeSet<(usize, u32)> =
        cells.keys().map(|&(o, c, _)| (o, c)).collect();
    for (order, conns) in points {
        let (Some(nb), Some(ng)) = (
            cells.get(&(order, conns, "nodeboot")),
            cells.get(&(order, conns, "nginx")),
        ) else {
            continue;
        };
        let (nb_rps, ng_rps) = (median_of(nb, |r| r.rps), median_of(ng, |r| r.rps));
        let ratio = if ng_rps > 0.0 {
            nb_rps / ng_rps
        } else {
            f64::NAN
        };
        let errors = |rs: &[&WrkRow]| rs.iter().map(|r| r.errors()).sum::<u64>();
        let loads = |rs: &[&WrkRow]| {
            rs.iter()
                .map(|r| r.load1.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            out,
            "| {} | {conns} | {} | {} | {ratio:.2} | {} | {} | {} / {} | {}; {} |",
            names[&order],
            thousands(nb_rps),
            thousands(ng_rps),
            latencies(nb),
            latencies(ng),
            errors(nb),
            errors(ng),
            loads(nb),
            loads(ng),
        );
    }
    if runs > 1 {
        out.push_str(
            "\nEvery run (req/s), and each round's ratio: both servers run back to back in a \
             round, so its ratio compares them at about the same machine load.\n\n",
        );
        let _ = write!(out, "| scenario | connections | server |");
        for i in 1..=runs {
            let _ = write!(out, " run {i} |");
        }
        out.push_str("\n|---|---:|---|");
        out.push_str(&"---:|".repeat(runs));
        out.push('\n');
        for ((order, conns, server), rs) in &cells {
            let _ = write!(out, "| {} | {conns} | {server} |", names[order]);
            for r in rs {
                let _ = write!(out, " {} |", thousands(r.rps));
            }
            out.push('\n');
            // nginx sorts before nodeboot: after nodeboot's row, the point's ratios.
            if *server == "nodeboot"
                && let Some(ng) = cells.get(&(*order, *conns, "nginx"))
            {
                let _ = write!(out, "| {} | {conns} | nodeboot/nginx |", names[order]);
                for r in rs {
                    match ng.iter().find(|n| n.run == r.run) {
                        Some(n) if n.rps > 0.0 => {
                            let _ = write!(out, " {:.2} |", r.rps / n.rps);
                        }
                        _ => out.push_str(" |"),
                    }
                }
                out.push('\n');
            }
        }
    }
    out.push_str(&ceilings(&cells, &names));
    out.push_str(&discovery(&cells));
    out
}

/// nodeboot against what this machine can do at all: nginx answering one body from memory, and
/// nodeboot's HTTP stack answering one body with no nodeboot behind it.
fn ceilings(cells: &Cells, names: &BTreeMap<usize, &str>) -> String {
    let rps = |key: (usize, u32, &str)| cells.get(&key).map(|rs| median_of(rs, |r| r.rps));
    let mut lines = String::new();
    for &(order, conns, server) in cells.keys() {
        if server != "nodeboot" {
            continue;
        }
        let (Some(nb), Some(mem), Some(stack)) = (
            rps((order, conns, "nodeboot")),
            rps((order, conns, "nginx-mem")),
            rps((order, conns, "hyper-const")),
        ) else {
            continue;
        };
        let files = rps((order, conns, "nginx")).unwrap_or(f64::NAN);
        let _ = writeln!(
            lines,
            "| {} | {conns} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} |",
            names[&order],
            thousands(nb),
            thousands(files),
            thousands(mem),
            thousands(stack),
            nb / files,
            nb / mem,
            nb / stack,
        );
    }
    if lines.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n### The ceilings\n\nMedian req/s. nginx-mem: nginx answering a constant body of the \
         size of a compute node's script from memory (`return 200`), no file opened. \
         hyper-const: `nodeboot-bench constant-server`, tokio and hyper as nodeboot uses them, \
         answering that body to every request with no routing, lookup or metrics.\n\n\
         | scenario | connections | nodeboot | nginx (files) | nginx-mem | hyper-const \
         | nodeboot/nginx | nodeboot/nginx-mem | nodeboot/hyper-const |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    out.push_str(&lines);
    out
}

/// The discovery storm (MACs no NodeGroup lists, rendered on first sight) against the known
/// MACs' bootscripts (rendered when the snapshot was built), nodeboot's median req/s.
fn discovery(cells: &Cells) -> String {
    let (Some(known), Some(unknown)) = (rank("bootscript"), rank("discovery")) else {
        return String::new();
    };
    let mut lines = String::new();
    for &(order, conns, server) in cells.keys() {
        if order != unknown || server != "nodeboot" {
            continue;
        }
        let (Some(d), Some(k)) = (
            cells.get(&(unknown, conns, "nodeboot")),
            cells.get(&(known, conns, "nodeboot")),
        ) else {
            continue;
        };
        let (d, k) = (median_of(d, |r| r.rps), median_of(k, |r| r.rps));
        let _ = writeln!(
            lines,
            "| {conns} | {} | {} | {:.2} |",
            thousands(k),
            thousands(d),
            d / k
        );
    }
    if lines.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n### Discovery storm against known MACs (nodeboot)\n\n\
         | connections | known MACs req/s | unknown MACs req/s | unknown/known |\n\
         |---:|---:|---:|---:|\n",
    );
    out.push_str(&lines);
    out
}

fn median_of(rows: &[&WrkRow], value: impl Fn(&WrkRow) -> f64) -> f64 {
    median(rows.iter().map(|r| value(r)).collect())
}

/// Median p50 / p99 / p99.9 in milliseconds.
fn latencies(rows: &[&WrkRow]) -> String {
    let ms = |value: fn(&WrkRow) -> f64| format!("{:.2}", median_of(rows, value) / 1000.0);
    format!(
        "{} / {} / {}",
        ms(|r| r.p50_us),
        ms(|r| r.p99_us),
        ms(|r| r.p999_us)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: &str, connections: u32, server: &str, rps: f64) -> WrkRow {
        WrkRow {
            scenario: scenario.into(),
            connections,
            server: server.into(),
            run: 1,
            requests: 1000,
            duration_us: 1_000_000,
            rps,
            p50_us: 500.0,
            p99_us: 2000.0,
            p999_us: 9000.0,
            err_connect: 0,
            err_read: 0,
            err_write: 0,
            err_status: 0,
            err_timeout: 0,
            load1: "2.0".into(),
        }
    }

    #[test]
    fn ceilings_discovery_and_open_loop() {
        let rows = [
            row("bootscript", 256, "nodeboot", 60000.0),
            row("bootscript", 256, "nginx", 50000.0),
            row("bootscript", 256, "nginx-mem", 80000.0),
            row("bootscript", 256, "hyper-const", 100000.0),
            row("close", 256, "nodeboot", 12000.0),
            row("close", 256, "nginx", 10000.0),
            row("discovery", 256, "nodeboot", 30000.0),
            row("discovery", 256, "nginx", 50000.0),
            row("open-loop-50", 256, "nodeboot", 30000.0),
            row("open-loop-50", 256, "nginx", 30000.0),
            row("open-loop-25", 256, "nodeboot", 15000.0),
            row("open-loop-25", 256, "nginx", 15000.0),
        ];
        let text = tables(&rows);
        for line in [
            "| bootscript | 256 | 60,000 | 50,000 | 1.20 |",
            "| close | 256 | 12,000 | 10,000 | 1.20 |",
            "| bootscript | 256 | 60,000 | 50,000 | 80,000 | 100,000 | 1.20 | 0.75 | 0.60 |",
            "| 256 | 60,000 | 30,000 | 0.50 |",
            "| open-loop-50 | 256 | 30,000 | 30,000 | 1.00 | 0.50 / 2.00 / 9.00 |",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        // Open-loop rows by rate, after the closed-loop ones; close has no ceiling row.
        let at = |needle: &str| text.find(needle).unwrap();
        assert!(at("| discovery | 256 |") < at("| open-loop-25 |"));
        assert!(at("| open-loop-25 |") < at("| open-loop-50 |"));
        assert!(!text.contains("| close | 256 | 12,000 | 10,000 | 0 |"));
    }
}
