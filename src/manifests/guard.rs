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

/// Checks `text`; returns the line each document starts on. Most manifests show in one cheap
/// pass over their bytes that they can hold neither (no `&` or `*`, little indentation, few
/// brackets): only the others are read event by event.
pub fn check(text: &str) -> Result<Vec<usize>, Refused> {
    match quick_look(text) {
        Some(starts) => Ok(starts),
        None => check_events(text),
    }
}

/// The document starts of `text` when its bytes alone show it cannot hold an alias or an
/// anchor (no `&` or `*` anywhere) nor nest deeper than `MAX_DEPTH`: block nesting needs a
/// deeper indentation or another compact `- `/`? ` on the line for every level, flow nesting
/// a bracket. `None` when it might, or when a document marker sits where this look cannot
/// be sure of it.
fn quick_look(text: &str) -> Option<Vec<usize>> {
    if text.contains(['&', '*']) {
        return None;
    }
    let mut starts = Vec::new();
    let mut content = false;
    let mut brackets = 0usize;
    let mut deepest_brackets = 0usize;
    for (i, line) in text.lines().enumerate() {
        let body = line.trim_start_matches(' ');
        let indent = line.len() - body.len();
        let mut compact = 0;
        let mut rest = body;
        while let Some(r) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? ")) {
            compact += 1;
            rest = r.trim_start_matches(' ');
        }
        if indent + compact * 2 + deepest_brackets > MAX_DEPTH {
            return None;
        }
        for b in line.bytes() {
            match b {
                b'[' | b'{' => {
                    brackets += 1;
                    deepest_brackets = deepest_brackets.max(brackets);
                }
                b']' | b'}' => brackets = brackets.saturating_sub(1),
                _ => {}
            }
        }
        if deepest_brackets > MAX_DEPTH {
            return None;
        }
        let marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        let first_content =
            !content && !body.is_empty() && !body.starts_with('#') && !line.starts_with('%');
        if marker || first_content {
            starts.push(i + 1);
            content = true;
        } else if line.starts_with("...") {
            // After an explicit end, the next content starts a document of its own.
            content = false;
        }
    }
    Some(starts)
}

/// The exact check: every parse event.
fn check_events(text: &str) -> Result<Vec<usize>, Refused> {
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
        // What the quick look lets through, the YAML parser refuses (with its own words).
        let e = check_events("ok: 1\n---\nbad: [\n").unwrap_err();
        assert_eq!(e.doc, 2);
        assert!(e.message.starts_with("not valid YAML"), "{}", e.message);
    }

    #[test]
    fn the_quick_look_finds_the_same_documents() {
        for text in [
            "a: 1\n---\nb: 2\n",
            "# comment\n---\na: 1\n---\nb: [x, {y: z}]\n",
            "a: |\n  text\n  - more\n---\n- x\n- y\n",
            include_str!("../../examples/site.yaml"),
        ] {
            assert_eq!(
                quick_look(text),
                Some(check_events(text).unwrap()),
                "{text}"
            );
        }
        // rsyslog's `*.*` makes this one take the exact path; both agree it is fine.
        let configs = include_str!("../../examples/bootconfigs.yaml");
        assert_eq!(quick_look(configs), None);
        assert!(check(configs).is_ok());
        // Anything that might hold an alias or deep nesting takes the exact path.
        assert_eq!(quick_look("a: &x 1\nb: *x\n"), None);
        assert_eq!(
            quick_look(&format!("a: {}1{}\n", "[".repeat(40), "]".repeat(40))),
            None
        );
        assert_eq!(quick_look(&format!("a:\n{}b: 1\n", " ".repeat(40))), None);
        assert_eq!(quick_look(&format!("{}x\n", "- ".repeat(20))), None);
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
