//! GRUB configurations: the bootstrap a site's netboot GRUB loads, the default per-node
//! config (`linux`/`initrd` over GRUB's own HTTP or TFTP), the config that makes a node wait,
//! and GRUB's quoting and value rule.
//!
//! Facts measured with real GRUB that shape this file:
//! - GRUB understands only HTTP 200, 206 and 404: a waiting node gets 200 with a config that
//!   sets the next round and returns.
//! - Nesting `configfile` (each config loading the next) dies at depth 28; a `while` loop that
//!   `source`s the per-node config ran thousands of rounds. So the loop lives in the bootstrap
//!   and per-node configs never load another config.
//! - GRUB script splits words on white space and on `;`, `&`, `|`, `<`, `>`, `{`, `}`, expands
//!   `$`, quotes with `'`, `"` and `\`, comments with `#`, and (with `regexp`, which Debian's
//!   signed images carry) expands `*`, `?` and `[...]` against files.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::RenderSettings;
use super::ipxe::{WaitReason, retry_delay};

/// GRUB variables the bootstrap loop and the per-node configs share.
const RETRY_VAR: &str = "nodeboot_retry";
const DELAY_VAR: &str = "nodeboot_delay";

/// Characters a value interpolated into a GRUB template may not carry: anything GRUB splits,
/// expands, quotes, comments or globs on. With none of these a value is one plain word, so it
/// cannot add a command, an argument or a variable reference.
pub fn grub_unsafe_char(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            ';' | '&'
                | '|'
                | '<'
                | '>'
                | '{'
                | '}'
                | '$'
                | '"'
                | '\''
                | '\\'
                | '#'
                | '*'
                | '?'
                | '['
                | ']'
                | '`'
        )
}

/// Characters that stand in a GRUB word without quotes and mean only themselves.
fn plain_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '_' | '.' | '/' | ':' | '=' | ',' | '+' | '@' | '%' | '(' | ')'
        )
}

/// One GRUB word that reads back as `word`, whatever it holds: as it is when every character
/// is plain, else in single quotes (inside which GRUB takes everything literally, up to the
/// next `'`), with each `'` written as `'\''`.
pub fn quote(word: &str) -> Cow<'_, str> {
    if !word.is_empty() && word.chars().all(plain_char) {
        return Cow::Borrowed(word);
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Cow::Owned(out)
}

/// Kernel parameters as GRUB arguments: each white-space separated word quoted on its own,
/// so that `ds=nocloud-net;s=URL` reaches the kernel whole (GRUB joins its arguments with
/// spaces into the command line).
pub fn quote_words(text: &str, out: &mut String) {
    for (i, word) in text.split_ascii_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&quote(word));
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrubUrlError {
    #[error("GRUB loads files over http or tftp only, not {0}; use an http:// or tftp:// URL")]
    Scheme(String),
    #[error("'{0}' is not a URL GRUB can load (scheme://host[:port]/path)")]
    Malformed(String),
}

/// A URL in GRUB's device syntax: `http://host:port/path` is `(http,host:port)/path`,
/// `tftp://host/path` is `(tftp,host)/path`. The query, if any, stays part of the path (GRUB
/// sends the path as it is).
pub fn device_path(url: &str) -> Result<String, GrubUrlError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| GrubUrlError::Malformed(crate::labels::shown(url)))?;
    let protocol = match scheme.to_ascii_lowercase().as_str() {
        "http" => "http",
        "tftp" => "tftp",
        other => return Err(GrubUrlError::Scheme(format!("{other}://"))),
    };
    let (host, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err(GrubUrlError::Malformed(crate::labels::shown(url)));
    }
    Ok(format!("({protocol},{host}){path}"))
}

/// `/grub.cfg`: what a site's netboot GRUB loads (one `source` line in its TFTP-served
/// `grub/grub.cfg`). It asks for this node's config by GRUB's own MAC variable (lowercase with
/// colons) and CPU, in a loop, so a node that must wait asks again for as long as it takes.
/// A booting config never returns; a waiting one sets the next round and delay and returns.
pub fn bootstrap(settings: &RenderSettings) -> String {
    let delay = retry_delay(0, settings.retry_max_delay);
    let mut s = String::with_capacity(640);
    s.push_str("# nodeboot: asks for this node's GRUB configuration until one boots\n");
    match device_path(&settings.server_url) {
        Ok(server) => {
            let _ = write!(
                s,
                "set {RETRY_VAR}=0\nset {DELAY_VAR}={delay}\nwhile true; do\n  \
                 source \"{server}/boot/v1/grub.cfg?mac=${{net_default_mac}}&arch=${{grub_cpu}}&retry=${{{RETRY_VAR}}}\"\n  \
                 sleep \"${{{DELAY_VAR}}}\"\ndone\n"
            );
        }
        Err(e) => {
            // Only an https advertise URL gets here: say so on the node's console.
            let _ = writeln!(
                s,
                "echo {}",
                quote(&format!("nodeboot: advertise URL unusable by GRUB: {e}"))
            );
        }
    }
    s
}

/// The default per-node config of one BootConfig, made when it is compiled: load kernel and
/// initrd over GRUB's HTTP (or TFTP) and boot; a failed step falls out to the bootstrap's loop,
/// which asks again. Only the kernel parameters differ between nodes, and a node's are stored
/// already (they are a slice of its iPXE script), so a request puts the config together from
/// this frame and them: storing a second, quoted copy of every node's parameters would cost
/// the snapshot some 45 MiB at 100,000 nodes (estimated: ~450 bytes a node, not measured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultConfig {
    /// Everything before the parameters, and everything after them.
    Frame { head: Box<str>, tail: Box<str> },
    /// The BootConfig's URLs are not GRUB's: a config that says so.
    Unusable(Box<str>),
}

impl DefaultConfig {
    pub fn new(kernel: &str, initrd: Option<&str>) -> DefaultConfig {
        let kernel = match device_path(kernel) {
            Ok(k) => k,
            Err(e) => return DefaultConfig::Unusable(unusable(&e).into()),
        };
        let initrd = match initrd.map(device_path).transpose() {
            Ok(i) => i,
            Err(e) => return DefaultConfig::Unusable(unusable(&e).into()),
        };
        let head = format!("# nodeboot\nif linux {}", quote(&kernel));
        let mut tail = String::from("; then\n");
        match &initrd {
            Some(initrd) => {
                tail.push_str("  if initrd ");
                tail.push_str(&quote(initrd));
                tail.push_str("; then\n    boot\n  fi\n");
            }
            None => tail.push_str("  boot\n"),
        }
        tail.push_str("fi\necho 'nodeboot: boot failed, asking again'\n");
        DefaultConfig::Frame {
            head: head.into(),
            tail: tail.into(),
        }
    }

    /// The config of a node whose kernel parameters are `params`.
    pub fn render(&self, params: &str) -> String {
        match self {
            DefaultConfig::Unusable(text) => text.to_string(),
            DefaultConfig::Frame { head, tail } => {
                let mut s = String::with_capacity(head.len() + tail.len() + params.len() + 32);
                s.push_str(head);
                if !params.trim().is_empty() {
                    s.push(' ');
                    quote_words(params, &mut s);
                }
                s.push_str(tail);
                s
            }
        }
    }
}

/// The default config for `kernel`, `initrd` and `params` (tests and one-off callers).
pub fn default_config(kernel: &str, initrd: Option<&str>, params: &str) -> String {
    DefaultConfig::new(kernel, initrd).render(params)
}

/// A config for a BootConfig whose URLs GRUB cannot load: says why, and lets the loop ask
/// again (a fixed BootConfig is picked up on the next round).
fn unusable(e: &GrubUrlError) -> String {
    format!(
        "# nodeboot\necho {}\n",
        quote(&format!(
            "nodeboot: this node's BootConfig cannot boot GRUB: {e}"
        ))
    )
}

/// The config a waiting node gets (unknown, unassigned, in conflict): always 200, since GRUB
/// understands no other answer; it sets the next round and its delay for the bootstrap's loop.
pub fn wait_config(reason: WaitReason, retry: u32, settings: &RenderSettings) -> String {
    let delay = retry_delay(retry, settings.retry_max_delay);
    let next = retry.saturating_add(1);
    format!(
        "# nodeboot\necho {}\nset {RETRY_VAR}={next}\nset {DELAY_VAR}={delay}\n",
        quote(&format!(
            "nodeboot: {}, retrying in {delay}s",
            reason.text()
        ))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RenderSettings {
        RenderSettings {
            server_url: "http://10.0.2.2:8080".into(),
            retry_max_delay: 60,
        }
    }

    /// Splits a line into GRUB words the way GRUB's lexer does for the subset nodeboot writes:
    /// unquoted plain text, single-quoted runs and `\'`. Test-only: it checks what `quote` makes.
    fn grub_words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut in_word = false;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    in_word = true;
                    for q in chars.by_ref() {
                        if q == '\'' {
                            break;
                        }
                        cur.push(q);
                    }
                }
                '\\' => {
                    in_word = true;
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
                c if c.is_whitespace() || c == ';' => {
                    if in_word {
                        words.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                }
                c => {
                    in_word = true;
                    cur.push(c);
                }
            }
        }
        if in_word {
            words.push(cur);
        }
        words
    }

    #[test]
    fn device_paths() {
        assert_eq!(
            device_path("http://10.0.2.2:8080/compute/vmlinuz").unwrap(),
            "(http,10.0.2.2:8080)/compute/vmlinuz"
        );
        assert_eq!(
            device_path("tftp://boot/x?y=1").unwrap(),
            "(tftp,boot)/x?y=1"
        );
        assert_eq!(device_path("http://h").unwrap(), "(http,h)");
        assert!(matches!(
            device_path("https://h/k"),
            Err(GrubUrlError::Scheme(_))
        ));
        assert!(device_path("nothing").is_err());
        assert!(device_path("http:///k").is_err());
    }

    #[test]
    fn quoting_keeps_each_word_whole() {
        assert_eq!(quote("console=ttyS0"), "console=ttyS0");
        assert_eq!(
            quote("ds=nocloud-net;s=http://h/"),
            "'ds=nocloud-net;s=http://h/'"
        );
        assert_eq!(quote("a'b"), "'a'\\''b'");
        assert_eq!(quote(""), "''");
        for word in ["a&b", "x;reboot", "$(x)", "it's", "#c", "a\"b", "*", "a b"] {
            assert_eq!(grub_words(&quote(word)), vec![word.to_owned()], "{word}");
        }
    }

    #[test]
    fn default_config_quotes_params_and_uses_grub_devices() {
        let cfg = default_config(
            "http://10.0.2.2:9000/k",
            Some("http://10.0.2.2:9000/i"),
            "console=ttyS0 ds=nocloud-net;s=http://10.0.2.2:8080/cloud-init/n1/ a&b",
        );
        assert_eq!(
            cfg,
            "# nodeboot\n\
             if linux (http,10.0.2.2:9000)/k console=ttyS0 'ds=nocloud-net;s=http://10.0.2.2:8080/cloud-init/n1/' 'a&b'; then\n  \
             if initrd (http,10.0.2.2:9000)/i; then\n    boot\n  fi\n\
             fi\necho 'nodeboot: boot failed, asking again'\n"
        );
        let no_initrd = default_config("tftp://t/k", None, "");
        assert!(no_initrd.contains("if linux (tftp,t)/k; then\n  boot\nfi\n"));
        let https = default_config("https://h/k", None, "");
        assert_eq!(
            https,
            "# nodeboot\necho 'nodeboot: this node'\\''s BootConfig cannot boot GRUB: GRUB loads files over http or tftp only, not https://; use an http:// or tftp:// URL'\n"
        );
    }

    #[test]
    fn wait_config_sets_the_next_round() {
        let cfg = wait_config(WaitReason::UnknownNode, 2, &settings());
        assert_eq!(
            cfg,
            "# nodeboot\necho 'nodeboot: this node is in no NodeGroup, retrying in 15s'\nset nodeboot_retry=3\nset nodeboot_delay=15\n"
        );
    }

    #[test]
    fn bootstrap_loops_with_source_not_configfile() {
        let cfg = bootstrap(&settings());
        assert!(cfg.contains("while true; do\n"), "{cfg}");
        assert!(
            cfg.contains("source \"(http,10.0.2.2:8080)/boot/v1/grub.cfg?mac=${net_default_mac}&arch=${grub_cpu}&retry=${nodeboot_retry}\""),
            "{cfg}"
        );
        assert!(!cfg.contains("configfile"));
        assert!(cfg.contains("sleep \"${nodeboot_delay}\""));
        let https = bootstrap(&RenderSettings {
            server_url: "https://nb".into(),
            retry_max_delay: 60,
        });
        assert!(!https.contains("source"), "{https}");
    }

    proptest::proptest! {
        /// Whatever a parameter word holds, GRUB reads it back as that one word.
        #[test]
        fn quoted_words_read_back_whole(words in proptest::collection::vec("[^\\s]{1,12}", 0..5)) {
            let text = words.join(" ");
            let mut out = String::new();
            quote_words(&text, &mut out);
            proptest::prop_assert_eq!(grub_words(&out), words);
        }
    }
}
