//! What boot tracking costs: the memory of the per-node slots (and their indexes) for a
//! synthetic site, the time to build them after a rebuild, the time one request spends
//! recording, and the time to count every BootConfig's rollout (a scrape, a status pass).
//!
//! `cargo bench --bench tracking -- [NODES]` (default 100000). Memory is the growth of VmRSS
//! across building the slots, so run it alone.

use std::sync::Arc;
use std::time::Instant;

use nodeboot::tracking::Tracker;
use nodeboot_bench::synthetic;
use nodeboot_core::render::RenderSettings;
use nodeboot_core::snapshot::build;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let nodes: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let desired = synthetic::site(nodes);
    let settings = RenderSettings {
        server_url: "http://10.0.0.1:8080".into(),
        retry_max_delay: 60,
    };
    let snapshot = Arc::new(build(&desired, &mut Default::default(), &settings).0);
    let tracker = Tracker::new();

    let before = rss_kib();
    let started = Instant::now();
    tracker.follow(&snapshot);
    let follow = started.elapsed();
    let slots_kib = rss_kib().saturating_sub(before);

    // Every node fetches its script three times (the first writes the changed flag, the
    // others find it set), as a storm's retries would.
    let started = Instant::now();
    let mut recorded = 0u32;
    for _ in 0..3 {
        for node in snapshot.nodes() {
            if let Some(config) = node.node.outcome.config() {
                tracker.boot_served(&snapshot, node, config);
                recorded += 1;
            }
        }
    }
    let per_request = started.elapsed() / recorded.max(1);
    let grown_kib = rss_kib().saturating_sub(before + slots_kib);

    let started = Instant::now();
    let rollouts = tracker.rollouts(&snapshot);
    let count = started.elapsed();
    let changed = tracker.take_changed().len();

    println!(
        "tracking, {} nodes: slots and indexes {} KiB ({} B a node), built in {:?}; \
         recording {:?} a request ({} requests, {} KiB more after them); \
         rollout counts of {} BootConfigs in {:?}; {} records to publish",
        snapshot.nodes().len(),
        slots_kib,
        slots_kib * 1024 / snapshot.nodes().len().max(1) as u64,
        follow,
        per_request,
        recorded,
        grown_kib,
        rollouts.len(),
        count,
        changed,
    );
}
