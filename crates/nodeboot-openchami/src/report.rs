//! The import report: every input object and what it became, and every one that did not map,
//! with why. Nothing is dropped without a line here.

use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file or URL the object came from.
    pub source: String,
    /// The object, as the source names it (`BSS key x1000c0s0b0n0`, `SMD component ...`).
    pub object: String,
    /// What it became, or why it did not map.
    pub outcome: String,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub mapped: Vec<Entry>,
    pub unmapped: Vec<Entry>,
    /// What each source was read as.
    pub sources: Vec<(String, String)>,
}

impl Report {
    pub fn mapped(&mut self, source: &str, object: impl Into<String>, became: impl Into<String>) {
        self.mapped.push(Entry {
            source: source.to_owned(),
            object: object.into(),
            outcome: became.into(),
        });
    }

    pub fn unmapped(&mut self, source: &str, object: impl Into<String>, why: impl Into<String>) {
        self.unmapped.push(Entry {
            source: source.to_owned(),
            object: object.into(),
            outcome: why.into(),
        });
    }

    /// Counts of mapped and unmapped objects per source.
    pub fn counts(&self) -> BTreeMap<&str, (usize, usize)> {
        let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for e in &self.mapped {
            counts.entry(&e.source).or_default().0 += 1;
        }
        for e in &self.unmapped {
            counts.entry(&e.source).or_default().1 += 1;
        }
        counts
    }

    /// The short form: what each source was read as, counts, and every object that did not map.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let counts = self.counts();
        out.push_str("sources:\n");
        for (source, what) in &self.sources {
            let (mapped, unmapped) = counts.get(source.as_str()).copied().unwrap_or_default();
            let _ = writeln!(
                out,
                "  {source}: {what}: {mapped} objects mapped, {unmapped} not mapped"
            );
        }
        if self.unmapped.is_empty() {
            out.push_str("every object mapped\n");
        } else {
            let _ = writeln!(out, "not mapped ({}):", self.unmapped.len());
            for e in &self.unmapped {
                let _ = writeln!(out, "  {}: {}: {}", e.source, e.object, e.outcome);
            }
        }
        out
    }

    /// The whole report: the summary, then every mapped object and what it became.
    pub fn full(&self) -> String {
        let mut out = self.summary();
        let _ = writeln!(out, "mapped ({}):", self.mapped.len());
        for e in &self.mapped {
            let _ = writeln!(out, "  {}: {} -> {}", e.source, e.object, e.outcome);
        }
        out
    }
}
