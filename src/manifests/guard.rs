//! A look at a manifest's YAML before any parser builds values from it: aliases and deep
//! nesting are refused. An alias repeats a whole node wherever it appears, so a few hundred
//! kilobytes of aliases to aliases expand to gigabytes; deep nesting made the value parser
//! take seconds per hundred kilobytes. Kubernetes manifests need neither. The event parser
//! used here builds nothing and runs in one pass.

use saphyr_parser::{Event, Parser};

/// Deeper than any NodeGroup, BootConfig or Secret: their deepest field is about 8 levels.
const MAX_DEPTH: usize = 32;

#[derive(Debug)]
pub struct Refused {
    /// The document (1-based) where the problem is.
    pub doc: usize,
    pub message: String,
}

/// Checks `text`; returns the line each document starts on.
pub fn check(text: &str) -> Result<Vec<usize>, Refused> {
    let mut starts = Vec::new();
    let mut depth = 0usize;
    for event in Parser::new_from_str(text) {
        let doc = starts.len().max(1);
        let (event, span) = event.map_err(|e| Refused {
            doc,
            // The scanner's own words, which quote nothing, and where.
            message: format!(
                "not valid YAML: {} (line {}, column {})",
                e.info(),
                e.marker().line(),
                e.marker().col() + 1
            ),
        })?;
        let line = span.start.line();
        let refuse = |message: String| Refused { doc, message };
        match event {
            Event::DocumentStart(_) => starts.push(line),
            Event::Alias(_) => {
                return Err(refuse(format!(
                    "line {line}: YAML aliases (*name) are not accepted in manifests; write the value out"
                )));
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(refuse(format!(
                        "line {line}: nested deeper than {MAX_DEPTH} levels"
                    )));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(starts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_aliases_and_deep_nesting_and_finds_documents() {
        let bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n";
        let e = check(bomb).unwrap_err();
        assert!(e.message.contains("aliases"), "{}", e.message);
        let deep = format!("a: {}1{}\n", "[".repeat(40), "]".repeat(40));
        assert!(check(&deep).unwrap_err().message.contains("nested deeper"));
        assert_eq!(check("a: 1\n---\nb: 2\n").unwrap(), vec![1, 2]);
        let e = check("ok: 1\n---\nbad: [\n").unwrap_err();
        assert_eq!(e.doc, 2);
        assert!(e.message.starts_with("not valid YAML"), "{}", e.message);
    }

    #[test]
    fn a_huge_nesting_is_refused_at_the_limit() {
        // Flow collections hit the scanner's own limit first; block ones the depth check.
        let e = check(&"[".repeat(200_000)).unwrap_err();
        assert!(e.message.contains("recursion limit"), "{}", e.message);
        let block: String = (0..100).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        let e = check(&block).unwrap_err();
        assert!(e.message.contains("nested deeper than 32"), "{}", e.message);
    }
}
