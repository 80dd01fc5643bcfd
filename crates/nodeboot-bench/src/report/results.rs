//! `results.tsv`: one line per wrk run, as storm.sh writes it from wrk's `RESULT` line
//! (bench/storm.lua's `done()`) and the run's scenario, connections, server, round and load.

use std::collections::HashMap;
use std::path::Path;

use super::{ReportError, read};

#[derive(Debug, Clone, PartialEq)]
pub struct WrkRow {
    pub scenario: String,
    pub connections: u32,
    pub server: String,
    /// The round (storm.sh --repeat) the run belongs to.
    pub run: u32,
    pub requests: u64,
    pub duration_us: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub err_connect: u64,
    pub err_read: u64,
    pub err_write: u64,
    pub err_status: u64,
    pub err_timeout: u64,
    /// The 1-minute load average after the run, as /proc/loadavg wrote it.
    pub load1: String,
}

impl WrkRow {
    pub fn errors(&self) -> u64 {
        self.err_connect + self.err_read + self.err_write + self.err_status + self.err_timeout
    }
}

/// Reads the rows, by column name (storm.sh's header line), so that added columns do no harm.
pub fn read_results(path: &Path) -> Result<Vec<WrkRow>, ReportError> {
    let text = read(path)?;
    let mut lines = text.lines().enumerate();
    let header: HashMap<&str, usize> = match lines.next() {
        Some((_, h)) => h.split('\t').enumerate().map(|(i, k)| (k, i)).collect(),
        None => HashMap::new(),
    };
    let mut rows = Vec::new();
    for (i, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let malformed = |why: String| ReportError::Malformed {
            path: path.to_owned(),
            line: i + 1,
            why,
        };
        let text = |key: &str| {
            header
                .get(key)
                .and_then(|&k| fields.get(k))
                .copied()
                .ok_or_else(|| malformed(format!("no column {key}")))
        };
        let number = |key: &str| {
            let value = text(key)?;
            value
                .parse::<f64>()
                .map_err(|_| malformed(format!("{key} is not a number: {value:?}")))
        };
        // Counters are integers; wrk's report never gives them a fraction.
        let count = |key: &str| number(key).map(|v| v as u64);
        rows.push(WrkRow {
            scenario: text("scenario")?.to_owned(),
            connections: count("connections")? as u32,
            server: text("server")?.to_owned(),
            run: count("run")? as u32,
            requests: count("requests")?,
            duration_us: count("duration_us")?,
            rps: number("rps")?,
            p50_us: number("p50_us")?,
            p99_us: number("p99_us")?,
            p999_us: number("p999_us")?,
            err_connect: count("err_connect")?,
            err_read: count("err_read")?,
            err_write: count("err_write")?,
            err_status: count("err_status")?,
            err_timeout: count("err_timeout")?,
            load1: text("load1")?.to_owned(),
        });
    }
    Ok(rows)
}
