//! What the boot handlers tell the tracker about a request: kept out of the handlers so that
//! they stay translations of the snapshot's answer.

use std::net::IpAddr;

use nodeboot_core::snapshot::{Answer, Decision, Snapshot, Subject};

use crate::tracking::Tracker;

/// A boot script was answered: a known node's boot is recorded; an unknown MAC is noted as
/// discovered, whether a discovery BootConfig answered it or it was told to wait.
pub fn bootscript(
    tracker: &Tracker,
    snapshot: &Snapshot,
    answer: &Answer<'_>,
    decision: &Decision<'_>,
    from: IpAddr,
) {
    match (&answer.subject, decision) {
        (Subject::Known(node), Decision::Boot(boot)) => {
            tracker.boot_served(snapshot, node, boot.config);
        }
        (Subject::Unknown(unknown), _) => tracker.unknown_asked(
            unknown.mac,
            unknown.arch.map(|a| a.as_str()),
            from,
            unknown.resolution.outcome.config().map(|c| c.as_ref()),
        ),
        _ => {}
    }
}
