//! Warnings about requests, at most one line per second per kind: anything on the boot network
//! can send requests, and one log line each would let it fill the disk. The line that is
//! logged says how many were left out; the metric `log_lines_suppressed` counts them all.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

const INTERVAL: Duration = Duration::from_secs(1);

/// The kinds of request warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning {
    /// Cloud-init data asked for from an address that is not the node's.
    WrongSource,
    /// An identifier several nodes claim.
    Ambiguous,
    /// A discovery BootConfig that fails to render for an unknown node.
    DiscoveryFailed,
}

const KINDS: usize = 3;

#[derive(Default)]
pub struct LogLimit {
    /// Per kind: when a line was last logged, and how many were left out since.
    state: Mutex<[(Option<Instant>, u64); KINDS]>,
}

impl LogLimit {
    /// Calls `log` with the number left out since the last line, if a line is due now.
    pub fn warn(&self, kind: Warning, metrics: &Metrics, log: impl FnOnce(u64)) {
        let now = Instant::now();
        let due = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            let (last, skipped) = &mut state[kind as usize];
            if last.is_some_and(|t| now.duration_since(t) < INTERVAL) {
                *skipped += 1;
                None
            } else {
                *last = Some(now);
                Some(std::mem::take(skipped))
            }
        };
        match due {
            Some(skipped) => log(skipped),
            None => {
                metrics.logs_suppressed.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_left_out() {
        let limit = LogLimit::default();
        let metrics = Metrics::new();
        let mut logged = Vec::new();
        for _ in 0..1000 {
            limit.warn(Warning::Ambiguous, &metrics, |skipped| logged.push(skipped));
        }
        assert_eq!(logged, vec![0]);
        assert_eq!(metrics.logs_suppressed.get(), 999);
        // Another kind has its own budget.
        limit.warn(Warning::WrongSource, &metrics, |skipped| {
            logged.push(skipped)
        });
        assert_eq!(logged, vec![0, 0]);
    }
}
