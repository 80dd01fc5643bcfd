//! Waiting for something that happens in another process.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// Polls `check` until it returns Some, for up to `limit`; panics naming `what` otherwise.
/// Checks that run kubectl cost a process each: every 200 ms leaves the cores to the code
/// under test.
pub async fn eventually<T>(
    what: impl Display,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
