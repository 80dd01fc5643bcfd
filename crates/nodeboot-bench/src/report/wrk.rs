//! The saturation and paced tables: per scenario and connection count, nodeboot's and nginx's
//! median req/s and latencies, their ratio, and every round's req/s.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::results::WrkRow;
use super::{median, thousands};

/// Saturation (closed loop) first, then requests paced below saturation.
const ORDER: [&str; 3] = ["bootscript", "storm", "bootscript-paced"];

pub fn tables(rows: &[WrkRow]) -> String {
    // (scenario's place in ORDER, connections, server) -> that cell's runs, in file order.
    let mut cells: BTreeMap<(usize, u32, &str), Vec<&WrkRow>> = BTreeMap::new();
    for r in rows {
        if let Some(order) = ORDER.iter().position(|s| *s == r.scenario) {
            cells
                .entry((order, r.connections, r.server.as_str()))
                .or_default()
                .push(r);
        }
    }
    let runs = cells.values().map(Vec::len).max().unwrap_or(0);
    let mut out = String::new();
    out.push_str(
        "`bootscript` and `storm`: wrk's closed loop, each connection sends its next request as soon \
         as the answer arrives (saturation). `bootscript-paced`: each connection pauses between \
         requests (--paced-rps), so latency is measured below saturation; its req/s is the offered \
         load, compare latencies only.\n\n",
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
            ORDER[order],
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
            let _ = write!(out, "| {} | {conns} | {server} |", ORDER[*order]);
            for r in rs {
                let _ = write!(out, " {} |", thousands(r.rps));
            }
            out.push('\n');
            // nginx sorts before nodeboot: after nodeboot's row, the point's ratios.
            if *server == "nodeboot"
                && let Some(ng) = cells.get(&(*order, *conns, "nginx"))
            {
                let _ = write!(out, "| {} | {conns} | nodeboot/nginx |", ORDER[*order]);
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
