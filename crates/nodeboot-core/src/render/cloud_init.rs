//! cloud-init NoCloud documents: meta-data's YAML form, and the check that a cloud-config
//! document is one.

use serde_json::{Map, Value};

/// The NoCloud documents a node can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    MetaData,
    UserData,
    VendorData,
    NetworkConfig,
}

impl Document {
    pub const ALL: [Document; 4] = [
        Document::MetaData,
        Document::UserData,
        Document::VendorData,
        Document::NetworkConfig,
    ];

    /// The document's name, as in its URL path.
    pub fn name(self) -> &'static str {
        match self {
            Document::MetaData => "meta-data",
            Document::UserData => "user-data",
            Document::VendorData => "vendor-data",
            Document::NetworkConfig => "network-config",
        }
    }

    pub fn from_name(name: &str) -> Option<Document> {
        Document::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// meta-data as YAML: one `key: value` line per key, strings plain where YAML cannot read them
/// as anything else and double-quoted otherwise, nested values in JSON flow style (which YAML
/// reads as flow collections). Written by hand because a general YAML emitter was a third of
/// the cost of rendering a 100,000-node site, for documents this simple.
pub fn meta_data_yaml(meta: &Map<String, Value>) -> String {
    if meta.is_empty() {
        return "{}\n".to_owned();
    }
    let mut out = String::with_capacity(48 * meta.len());
    for (key, value) in meta {
        push_string(&mut out, key);
        out.push_str(": ");
        match value {
            Value::String(s) => push_string(&mut out, s),
            other => push_json(&mut out, other),
        }
        out.push('\n');
    }
    out
}

/// Strings YAML 1.1 and 1.2 both read back as the same string when written plain.
fn plain_is_safe(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 1024 {
        return false;
    }
    let word = b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'/'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "true" | "false" | "on" | "off" | "null"
        );
    // Dotted numbers with three or more parts (IPv4 addresses, versions) are no float or int.
    let dotted = b[0].is_ascii_digit()
        && s.split('.').count() >= 3
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
    word || dotted
}

fn push_string(out: &mut String, s: &str) {
    if plain_is_safe(s) {
        out.push_str(s);
    } else {
        push_json(out, &Value::String(s.to_owned()));
    }
}

/// JSON is valid YAML flow style, once the C1 controls, the BOM and the Unicode line and
/// paragraph separators (which YAML 1.1 readers refuse raw or read as line breaks, and JSON
/// leaves raw) are escaped.
fn push_json(out: &mut String, value: &Value) {
    let json = value.to_string();
    for c in json.chars() {
        if ('\u{7f}'..='\u{9f}').contains(&c) || matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}') {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
}

/// The first line of a cloud-config document.
pub const CLOUD_CONFIG_HEADER: &str = "#cloud-config";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_data_reads_back_as_written() {
        let meta: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "instance-id": "x1000c0s0b0n0",
            "ip": "10.1.0.5",
            "rack_u": "12",
            "yes": "no",
            "on": "true",
            "nothing": null,
            "count": 3,
            "ratio": 1.5,
            "flag": false,
            "mac": "52-54-00-00-99-01",
            "date": "2024-01-01",
            "time": "12:30",
            "colon key: x": "a: b",
            "hash": "#x",
            "quote": "it's \"q\"",
            "multi": "line1\nline2",
            "c1": "a\u{85}b\u{9f}",
            "separators": "a\u{2028}b\u{2029}c",
            "unicode": "ünï",
            "empty": "",
            "list": ["a", 1, {"b": "c: d"}],
            "map": {"k": [true, null]},
            "~": "~",
        }))
        .unwrap();
        let yaml = meta_data_yaml(&meta);
        let back: Map<String, Value> = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(back, meta, "{yaml}");
        assert!(
            yaml.contains("ip: 10.1.0.5\n") && yaml.contains("rack_u: \"12\"\n"),
            "{yaml}"
        );
        assert_eq!(meta_data_yaml(&Map::new()), "{}\n");
    }

    proptest::proptest! {
        #[test]
        fn any_string_meta_data_reads_back(
            entries in proptest::collection::btree_map(
                "[a-z0-9 :#'\"\\-]{0,8}|\\PC{0,6}",
                "[a-zA-Z0-9 .:#'\"\\-]{0,12}|\\PC{0,8}",
                0..6,
            )
        ) {
            let meta: Map<String, Value> = entries.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            let yaml = meta_data_yaml(&meta);
            let back: Map<String, Value> = serde_yaml_ng::from_str(&yaml).unwrap();
            proptest::prop_assert_eq!(back, meta, "{}", yaml);
        }
    }
}
