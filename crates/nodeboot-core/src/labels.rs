//! Kubernetes label syntax and nodeboot's well-known labels.

use std::collections::BTreeMap;

/// Label values: empty, or alphanumerics with `-_.` inside, at most 63 characters.
pub const VALUE_PATTERN: &str = "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";
/// Label keys: an optional DNS-subdomain prefix and `/`, then a name like a value (non-empty).
pub const KEY_PATTERN: &str = "^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$";
/// RFC 1123 host names (labels separated by dots).
pub const HOSTNAME_PATTERN: &str =
    "^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$";

pub const RESERVED_PREFIX: &str = "nodeboot.io/";
pub const NAME: &str = "nodeboot.io/name";
pub const GROUP: &str = "nodeboot.io/group";
pub const ARCH: &str = "nodeboot.io/arch";
pub const KNOWN: &str = "nodeboot.io/known";
pub const MAC: &str = "nodeboot.io/mac";
/// On a Secret: BootConfigs may take user-data from it. Secrets are opt-in, so that whoever may
/// write a BootConfig cannot publish any Secret of the namespace to the boot network.
pub const USER_DATA_SECRET: &str = "nodeboot.io/user-data";
/// The selector the operator watches Secrets with: it never caches any other Secret.
pub const USER_DATA_SECRET_SELECTOR: &str = "nodeboot.io/user-data=true";

pub type Labels = BTreeMap<String, String>;

/// A refused value as an error message quotes it: about 64 bytes at most, control and
/// unprintable characters shown escaped, so that a message stays one short line whatever was
/// refused.
pub fn shown(value: &str) -> String {
    const BUDGET: usize = 64;
    let mut out = String::with_capacity(BUDGET + 16);
    for (i, c) in value.char_indices() {
        if out.len() >= BUDGET {
            if i < value.len() {
                out.push('…');
            }
            break;
        }
        out.extend(c.escape_debug());
    }
    out
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

/// A label name segment or value body: alphanumeric ends, `-_.` allowed inside.
fn is_name_segment(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && is_alnum(b[0])
        && is_alnum(b[b.len() - 1])
        && b.iter()
            .all(|c| is_alnum(*c) || matches!(c, b'-' | b'_' | b'.'))
}

pub fn is_valid_value(value: &str) -> bool {
    value.is_empty() || is_name_segment(value, 63)
}

/// Dot-separated labels of 1 to 63 characters, alphanumeric at both ends, `-` inside, at most
/// 253 in all; `upper` allows capitals (host names) or not (DNS subdomains).
fn is_dotted_name(s: &str, upper: bool) -> bool {
    s.len() <= 253
        && !s.is_empty()
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            let letter = |c: u8| c.is_ascii_lowercase() || (upper && c.is_ascii_uppercase());
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| letter(*c) || c.is_ascii_digit() || *c == b'-')
        })
}

pub fn is_dns_subdomain(s: &str) -> bool {
    is_dotted_name(s, false)
}

pub fn is_valid_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_name_segment(name, 63),
        None => is_name_segment(key, 63),
    }
}

pub fn is_valid_hostname(s: &str) -> bool {
    is_dotted_name(s, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in [
            "role",
            "example.com/role",
            "a",
            "x_y.z-1",
            "nodeboot.io/known",
        ] {
            assert!(is_valid_key(ok), "{ok}");
        }
        for bad in [
            "",
            "-role",
            "role-",
            "Example.com/role",
            "a/b/c",
            "/x",
            "x/",
            "a b",
        ] {
            assert!(!is_valid_key(bad), "{bad}");
        }
    }

    #[test]
    fn values() {
        for ok in ["", "a", "a100", "x1000c0s0b0n0", "a.b_c-d"] {
            assert!(is_valid_value(ok), "{ok}");
        }
        for bad in ["-a", "a-", "a b", "a\nb", "a;b", &"x".repeat(64)] {
            assert!(!is_valid_value(bad), "{bad}");
        }
    }
}
