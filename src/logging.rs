//! Logging set-up. Text logs are read by people and by line-oriented tools: a value with a line
//! break (an object name, say, in a manifest on disk) must not start a line that looks like a
//! log line of its own, so every control character inside an event is escaped.

use std::io::{self, Write};

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Writes events to stderr with control characters escaped, except each event's final newline.
/// The fmt layer writes one event per call (it formats into a buffer first), so an event's
/// own end is always the last byte of a write.
struct EscapingStderr;

fn escape_controls(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
}

impl Write for EscapingStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, newline) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, true),
            None => (buf, false),
        };
        let mut out = String::with_capacity(buf.len() + 16);
        escape_controls(&String::from_utf8_lossy(body), &mut out);
        if newline {
            out.push('\n');
        }
        io::stderr().lock().write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Logs to stderr at `default_level` unless `RUST_LOG` says otherwise.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        // No colours: their escape codes would be escaped too, and logs are mostly files.
        LogFormat::Text => builder
            .with_ansi(false)
            .with_writer(|| EscapingStderr)
            .init(),
        // JSON escapes every control character by itself.
        LogFormat::Json => builder.json().with_writer(io::stderr).init(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped() {
        let mut out = String::new();
        super::escape_controls("a\nERROR forged\r\u{1b}[31m\u{85}\u{2028}ok\tend", &mut out);
        assert_eq!(out, "a\\nERROR forged\\r\\u{1b}[31m\\u{85}\\u{2028}ok\tend");
    }
}
