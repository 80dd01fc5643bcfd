//! Kernel parameters: the one-line check and the parameters nodeboot adds (`autoParams`).

use crate::mac::Mac;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("params must render to a single line; found a line break")]
    MultiLine,
    #[error("params may not contain control characters; found {0:?}")]
    ControlChar(char),
}

/// A rendered command line goes into one iPXE `kernel` line: a line break would start a new
/// iPXE command, so it is refused, as is any other control character.
pub fn check_one_line(params: &str) -> Result<(), ParamsError> {
    if params.contains(['\n', '\r']) {
        return Err(ParamsError::MultiLine);
    }
    match params.chars().find(|c| c.is_control()) {
        Some(c) => Err(ParamsError::ControlChar(c)),
        None => Ok(()),
    }
}

/// What autoParams may add for one node.
#[derive(Debug, Clone, Copy, Default)]
pub struct AutoParams<'a> {
    pub mac: Option<Mac>,
    pub xname: Option<&'a str>,
    pub nid: Option<i64>,
    /// The NoCloud seed URL, ending in `/`.
    pub seed_url: Option<&'a str>,
}

fn has_key(params: &str, key: &str) -> bool {
    params.split_whitespace().any(|tok| {
        tok.strip_prefix(key)
            .is_some_and(|rest| rest.starts_with('='))
    })
}

/// Appends `BOOTIF=`, `xname=`, `nid=` and `ds=` unless the parameters already set them.
pub fn with_auto_params(params: &str, auto: &AutoParams<'_>) -> String {
    let mut out = String::with_capacity(params.len() + 128);
    out.push_str(params.trim());
    let mut add = |key: &str, value: &dyn std::fmt::Display| {
        if !has_key(params, key) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(key);
            out.push('=');
            // Writing to a String cannot fail.
            let _ = std::fmt::Write::write_fmt(&mut out, format_args!("{value}"));
        }
    };
    if let Some(mac) = auto.mac {
        add("BOOTIF", &format_args!("01-{}", mac.hyphenated()));
    }
    if let Some(xname) = auto.xname {
        add("xname", &xname);
    }
    if let Some(nid) = auto.nid {
        add("nid", &nid);
    }
    if let Some(seed) = auto.seed_url {
        add("ds", &format_args!("nocloud-net;s={seed}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_what_is_missing_only() {
        let auto = AutoParams {
            mac: Some(Mac::new([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff])),
            xname: Some("x1c0s0b0n0"),
            nid: Some(7),
            seed_url: Some("http://s/cloud-init/x1c0s0b0n0/"),
        };
        assert_eq!(
            with_auto_params("console=ttyS0", &auto),
            "console=ttyS0 BOOTIF=01-aa-bb-cc-dd-ee-ff xname=x1c0s0b0n0 nid=7 ds=nocloud-net;s=http://s/cloud-init/x1c0s0b0n0/"
        );
        assert_eq!(
            with_auto_params("nid=1 ds=none", &auto),
            "nid=1 ds=none BOOTIF=01-aa-bb-cc-dd-ee-ff xname=x1c0s0b0n0"
        );
        // `nidx=` is not `nid=`.
        assert!(with_auto_params("nidx=3", &auto).contains(" nid=7"));
    }

    #[test]
    fn one_line_check() {
        assert_eq!(check_one_line("a b"), Ok(()));
        assert_eq!(check_one_line("a\nkernel x"), Err(ParamsError::MultiLine));
        assert_eq!(
            check_one_line("a\u{7}"),
            Err(ParamsError::ControlChar('\u{7}'))
        );
    }
}
