//! MAC addresses: accepted in any common notation, kept as six bytes, shown in lowercase colon form.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// The notations the CRD schema accepts; `Mac::from_str` accepts exactly these.
pub const PATTERN: &str = "^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{2}-){5}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{4}\\.){2}[0-9A-Fa-f]{4}$|^[0-9A-Fa-f]{12}$";

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac([u8; 6]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a MAC address (use aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or aabbccddeeff)"
)]
pub struct MacParseError(pub String);

impl Mac {
    pub const fn new(bytes: [u8; 6]) -> Self {
        Mac(bytes)
    }

    /// `aa-bb-cc-dd-ee-ff`: the form used in label values (colons are not allowed there) and BOOTIF.
    pub fn hyphenated(self) -> String {
        self.join('-')
    }

    fn join(self, sep: char) -> String {
        let mut out = String::with_capacity(17);
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(sep);
            }
            push_hex(&mut out, *b);
        }
        out
    }
}

fn push_hex(out: &mut String, b: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push(DIGITS[usize::from(b >> 4)] as char);
    out.push(DIGITS[usize::from(b & 0xf)] as char);
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl FromStr for Mac {
    type Err = MacParseError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(raw.chars().take(64).collect());
        let bytes = raw.as_bytes();
        // Positions of separators for each accepted notation, and which separator is allowed.
        let digits: Vec<u8> = match bytes.len() {
            17 => {
                let sep = bytes[2];
                if sep != b':' && sep != b'-' {
                    return Err(err());
                }
                let mut digits = Vec::with_capacity(12);
                for (i, c) in bytes.iter().enumerate() {
                    if i % 3 == 2 {
                        if *c != sep {
                            return Err(err());
                        }
                    } else {
                        digits.push(*c);
                    }
                }
                digits
            }
            14 => {
                let mut digits = Vec::with_capacity(12);
                for (i, c) in bytes.iter().enumerate() {
                    if i == 4 || i == 9 {
                        if *c != b'.' {
                            return Err(err());
                        }
                    } else {
                        digits.push(*c);
                    }
                }
                digits
            }
            12 => bytes.to_vec(),
            _ => return Err(err()),
        };
        let mut out = [0u8; 6];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or_else(err)?;
            let lo = hex_value(pair[1]).ok_or_else(err)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.join(':'))
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_common_notation() {
        let want = Mac::new([0x02, 0, 0, 0xab, 0xcd, 0xef]);
        for raw in [
            "02:00:00:ab:cd:ef",
            "02:00:00:AB:CD:EF",
            "02-00-00-ab-cd-ef",
            "0200.00ab.cdef",
            "020000ABCDEF",
        ] {
            assert_eq!(raw.parse::<Mac>(), Ok(want), "{raw}");
        }
        assert_eq!(want.to_string(), "02:00:00:ab:cd:ef");
        assert_eq!(want.hyphenated(), "02-00-00-ab-cd-ef");
    }

    /// The notations, written as plainly as possible.
    fn reference(raw: &str) -> Option<[u8; 6]> {
        let hex = |s: &str| -> Option<Vec<u8>> {
            if s.len() != 12 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            (0..6)
                .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
                .collect()
        };
        let digits = if raw.len() == 17 {
            let sep = raw.chars().nth(2)?;
            let parts: Vec<&str> = raw.split(sep).collect();
            if !matches!(sep, ':' | '-') || parts.len() != 6 || parts.iter().any(|p| p.len() != 2) {
                return None;
            }
            parts.concat()
        } else if raw.len() == 14 {
            let parts: Vec<&str> = raw.split('.').collect();
            if parts.len() != 3 || parts.iter().any(|p| p.len() != 4) {
                return None;
            }
            parts.concat()
        } else {
            raw.to_owned()
        };
        hex(&digits)?.try_into().ok()
    }

    proptest::proptest! {
        #[test]
        fn every_notation_of_any_mac_reads_back(bytes: [u8; 6]) {
            let mac = Mac::new(bytes);
            let h: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
            for raw in [
                mac.to_string(),
                mac.hyphenated(),
                h.join(":"),
                h.concat(),
                format!("{}{}.{}{}.{}{}", h[0], h[1], h[2], h[3], h[4], h[5]),
            ] {
                proptest::prop_assert_eq!(raw.parse::<Mac>(), Ok(mac));
            }
        }

        #[test]
        fn parser_agrees_with_the_reference(raw in "[0-9a-fA-F:.\\-]{0,18}|\\PC{0,18}") {
            let parsed = raw.parse::<Mac>().ok().map(|m| m.0);
            proptest::prop_assert_eq!(parsed, reference(&raw));
        }
    }

    #[test]
    fn refuses_malformed() {
        for raw in [
            "",
            "02:00:00:ab:cd",
            "02:00:00-ab:cd:ef",
            "02:00:00:ab:cd:eg",
            "0200:00ab:cdef",
            "02:00:00:ab:cd:ef\n",
            "zz0000abcdef",
        ] {
            assert!(raw.parse::<Mac>().is_err(), "{raw:?}");
        }
    }
}
