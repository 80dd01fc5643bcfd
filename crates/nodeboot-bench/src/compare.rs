//! The exact check: fetch requests from a running server (nodeboot or nginx) over many
//! keep-alive connections, and require every status to be 200 and every body to be
//! byte-identical to the tree. A sample before measuring; with `--all`, the full storm with
//! every body checked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::StatusCode;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::client::Connection;
use crate::requests::RequestLine;

/// How many mismatches are described; the counts cover them all.
const EXAMPLES: usize = 10;

/// Which requests of the list to send, and in which order.
#[derive(Debug, Clone, Copy)]
pub enum Selection {
    /// Every request once, in the list's order or shuffled.
    All { shuffle: Option<u64> },
    /// The first and the last request and `count` others at random, in the list's order.
    Sample { count: usize, seed: u64 },
}

pub fn select(lines: Vec<RequestLine>, selection: Selection) -> Vec<RequestLine> {
    match selection {
        Selection::All { shuffle: None } => lines,
        Selection::All {
            shuffle: Some(seed),
        } => {
            // Nodes do not boot in MAC order: spread consecutive requests over the whole site.
            let mut lines = lines;
            lines.shuffle(&mut StdRng::seed_from_u64(seed));
            lines
        }
        Selection::Sample { count, seed } => {
            let n = lines.len();
            let mut picked: Vec<usize> =
                rand::seq::index::sample(&mut StdRng::seed_from_u64(seed), n, count.min(n))
                    .into_vec();
            // First and last: where an off-by-one would show.
            picked.extend([0, n.saturating_sub(1)]);
            picked.sort_unstable();
            picked.dedup();
            let mut lines: Vec<Option<RequestLine>> = lines.into_iter().map(Some).collect();
            picked
                .into_iter()
                .filter_map(|i| lines.get_mut(i).and_then(Option::take))
                .collect()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{path}: {source}")]
    Tree {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting the client's runtime: {0}")]
    Runtime(std::io::Error),
}

/// The expected bodies, read before the clock starts so that only HTTP is timed.
pub fn load_expected(tree: &Path, lines: &[RequestLine]) -> Result<Vec<Bytes>, CompareError> {
    lines
        .iter()
        .map(|line| {
            let path = tree.join(&line.tree_file);
            std::fs::read(&path)
                .map(Bytes::from)
                .map_err(|source| CompareError::Tree { path, source })
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub server: SocketAddr,
    pub label: String,
    pub connections: usize,
    /// Send each node's address as X-Forwarded-For (nodeboot's source check on).
    pub forwarded_for: bool,
    pub timeout: Duration,
}

/// What a compare found; printed as one `COMPARE {json}` line, which the report reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareSummary {
    pub label: String,
    pub server: String,
    pub requests: u64,
    pub identical: u64,
    pub different: u64,
    pub non_200: u64,
    /// Connection failures and timeouts.
    pub errors: u64,
    pub connections: usize,
    pub seconds: f64,
    pub requests_per_second: f64,
}

impl CompareSummary {
    pub fn all_identical(&self) -> bool {
        self.identical == self.requests
    }
}

#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    identical: u64,
    different: u64,
    non_200: u64,
    errors: u64,
    examples: Vec<String>,
}

impl Tally {
    fn example(&mut self, text: impl FnOnce() -> String) {
        if self.examples.len() < EXAMPLES {
            self.examples.push(text());
        }
    }

    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.identical += other.identical;
        self.different += other.different;
        self.non_200 += other.non_200;
        self.errors += other.errors;
        for e in other.examples {
            self.example(|| e);
        }
    }
}

/// Sends every line once, spread over `options.connections` connections, and compares each
/// answer with `expected` (same order as `lines`). Returns the counts and a few mismatches.
pub fn compare(
    lines: Vec<RequestLine>,
    expected: Vec<Bytes>,
    options: &CompareOptions,
) -> Result<(CompareSummary, Vec<String>), CompareError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CompareError::Runtime)?;
    let work = Arc::new((lines, expected));
    let next = Arc::new(AtomicUsize::new(0));
    let connections = options.connections.clamp(1, work.0.len().max(1));
    let started = Instant::now();
    let tally = runtime.block_on(async {
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                let (work, next, options) = (work.clone(), next.clone(), options.clone());
                tokio::spawn(async move { worker(&work.0, &work.1, &next, &options).await })
            })
            .collect();
        let mut tally = Tally::default();
        for w in workers {
            match w.await {
                Ok(t) => tally.merge(t),
                // A worker cannot panic short of a bug; count it rather than hide it.
                Err(e) => {
                    tally.errors += 1;
                    tally.example(|| format!("worker failed: {e}"));
                }
            }
        }
        tally
    });
    let seconds = started.elapsed().as_secs_f64();
    let summary = CompareSummary {
        label: options.label.clone(),
        server: options.server.to_string(),
        requests: tally.requests,
        identical: tally.identical,
        different: tally.different,
        non_200: tally.non_200,
        errors: tally.errors,
        connections,
        seconds: (seconds * 100.0).round() / 100.0,
        requests_per_second: (tally.requests as f64 / seconds.max(1e-9)).round(),
    };
    Ok((summary, tally.examples))
}

/// One connection's share: takes the next unsent line until none is left, so that every line
/// is sent exactly once whatever the connections' speeds.
async fn worker(
    lines: &[RequestLine],
    expected: &[Bytes],
    next: &AtomicUsize,
    options: &CompareOptions,
) -> Tally {
    let mut connection = Connection::new(options.server, options.timeout);
    let mut tally = Tally::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let (Some(line), Some(want)) = (lines.get(i), expected.get(i)) else {
            break;
        };
        let forwarded_for = line
            .forwarded_for
            .as_deref()
            .filter(|_| options.forwarded_for);
        tally.requests += 1;
        match connection.get(&line.path, forwarded_for).await {
            Err(e) => {
                tally.errors += 1;
                tally.example(|| format!("{}: {e}", line.path));
            }
            Ok((status, body)) if status != StatusCode::OK => {
                tally.non_200 += 1;
                let head = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                tally.example(|| format!("{}: status {status}: {head:?}", line.path));
            }
            Ok((_, body)) if body == *want => tally.identical += 1,
            Ok((_, body)) => {
                tally.different += 1;
                tally.example(|| {
                    format!(
                        "{}: body differs ({} bytes, the tree has {})",
                        line.path,
                        body.len(),
                        want.len()
                    )
                });
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize) -> Vec<RequestLine> {
        (0..n)
            .map(|i| RequestLine {
                path: format!("/r/{i}"),
                tree_file: format!("r/{i}"),
                forwarded_for: None,
            })
            .collect()
    }

    #[test]
    fn a_sample_keeps_first_last_and_order() {
        let picked = select(lines(1000), Selection::Sample { count: 20, seed: 7 });
        assert!((20..=22).contains(&picked.len()));
        assert_eq!(picked[0].path, "/r/0");
        assert_eq!(picked[picked.len() - 1].path, "/r/999");
        let numbers: Vec<usize> = picked
            .iter()
            .map(|l| l.path[3..].parse().unwrap())
            .collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_shuffle_keeps_every_request_once() {
        let mut shuffled = select(lines(100), Selection::All { shuffle: Some(1) });
        assert_ne!(shuffled, lines(100));
        shuffled.sort_by_key(|l| l.path[3..].parse::<usize>().unwrap());
        assert_eq!(shuffled, lines(100));
    }
}
