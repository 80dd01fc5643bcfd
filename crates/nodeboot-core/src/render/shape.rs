//! The structure of a YAML document: which keys and list items it has, not what they say.
//! A rendered cloud-config must have the structure its template's own text gives it (its
//! `Dialect::Shape` rendering): a value that adds a key, a list item or a document, or turns a
//! scalar into a collection or a tagged value, is an injection, however it was written.
//!
//! The structure is the document's tree with every scalar's text left out, as one string of
//! tokens: two documents have the same structure when the strings are equal. It is read with
//! the same YAML reader as everything else (libyaml's, as cloud-init's PyYAML reads YAML 1.1),
//! without building values: every node's documents are checked on every rebuild.

use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};

/// Nesting deeper than this is refused: no cloud-config needs it.
const MAX_DEPTH: usize = 64;

/// A document's structure, as tokens: `D` a document, `{`/`}` a mapping, `[`/`]` a sequence,
/// `s` a scalar, `!` a tagged value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape(Vec<u8>);

impl Shape {
    /// How many structure tokens it has.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One document that is a mapping, or empty (no document, or a null one): what a
    /// `#cloud-config` must be.
    pub fn is_mapping_or_empty(&self) -> bool {
        matches!(self.0.as_slice(), [] | [b'D', b's'] | [b'D', b'{', ..])
            && self.0.iter().filter(|t| **t == b'D').count() <= 1
    }
}

/// Records the structure of whatever is deserialized into `out`.
struct Recorder<'a> {
    out: &'a mut Vec<u8>,
    depth: usize,
}

impl Recorder<'_> {
    fn nested(&mut self) -> Result<Recorder<'_>, String> {
        if self.depth >= MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(Recorder {
            out: self.out,
            depth: self.depth + 1,
        })
    }

    fn scalar<E>(self) -> Result<(), E> {
        self.out.push(b's');
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Recorder<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Recorder<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_none<E>(self) -> Result<(), E> {
        self.scalar()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.out.push(b'[');
        loop {
            let item = self.nested().map_err(de::Error::custom)?;
            if seq.next_element_seed(item)?.is_none() {
                break;
            }
        }
        self.out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.out.push(b'{');
        loop {
            let key = self.nested().map_err(de::Error::custom)?;
            if map.next_key_seed(key)?.is_none() {
                break;
            }
            let value = self.nested().map_err(de::Error::custom)?;
            map.next_value_seed(value)?;
        }
        self.out.push(b'}');
        Ok(())
    }

    /// A tagged value (`!tag x`).
    fn visit_enum<A: EnumAccess<'de>>(mut self, data: A) -> Result<(), A::Error> {
        self.out.push(b'!');
        let tag = self.nested().map_err(de::Error::custom)?;
        let ((), variant) = data.variant_seed(tag)?;
        let value = self.nested().map_err(de::Error::custom)?;
        variant.newtype_variant_seed(value)
    }
}

/// Parses a YAML stream and returns its structure; the error says why it is not YAML, and
/// where, without quoting it.
pub fn yaml_shape(doc: &str) -> Result<Shape, String> {
    let mut tokens = Vec::with_capacity(64);
    for document in serde_yaml_ng::Deserializer::from_str(doc) {
        tokens.push(b'D');
        let recorder = Recorder {
            out: &mut tokens,
            depth: 0,
        };
        document
            .deserialize_any(recorder)
            .map_err(|e| match e.location() {
                Some(at) => format!(
                    "not valid YAML (line {}, column {})",
                    at.line(),
                    at.column()
                ),
                None if e.to_string().contains("nested deeper") => {
                    format!("nested deeper than {MAX_DEPTH} levels")
                }
                None => "not valid YAML".to_owned(),
            })?;
    }
    Ok(Shape(tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_ignore_scalars_but_not_structure() {
        let a = yaml_shape("a: 1\nb: [x, y]\n").unwrap();
        assert_eq!(a, yaml_shape("a: text\nb: [\"p\", 2]\n").unwrap());
        assert_eq!(
            a,
            yaml_shape("a: |\n  some\n  text\nb:\n- x\n- 'y'\n").unwrap()
        );
        assert_ne!(a, yaml_shape("a: 1\nb: [x, y, z]\n").unwrap());
        assert_ne!(
            a,
            yaml_shape("a: 1\nb: [x, y]\nruncmd: [reboot]\n").unwrap()
        );
        assert_ne!(a, yaml_shape("a: {k: v}\nb: [x, y]\n").unwrap());
        assert_ne!(a, yaml_shape("a: !custom 1\nb: [x, y]\n").unwrap());
        assert_ne!(a, yaml_shape("a: 1\nb: [x, y]\n---\nc: 1\n").unwrap());
        // An alias stands for what it names: here a whole list instead of a scalar.
        assert_ne!(
            yaml_shape("x: &l [1, 2]\na: 1\n").unwrap(),
            yaml_shape("x: &l [1, 2]\na: *l\n").unwrap()
        );
        let err = yaml_shape("a: [1\n").unwrap_err();
        assert!(err.starts_with("not valid YAML (line"), "{err}");
        let deep: String = (0..100).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert!(yaml_shape(&deep).is_err());
    }

    #[test]
    fn what_a_cloud_config_may_be() {
        assert!(yaml_shape("#cloud-config\n").unwrap().is_mapping_or_empty());
        assert!(
            yaml_shape("#cloud-config\na: 1\n")
                .unwrap()
                .is_mapping_or_empty()
        );
        assert!(
            !yaml_shape("#cloud-config\n- a\n")
                .unwrap()
                .is_mapping_or_empty()
        );
        assert!(
            !yaml_shape("#cloud-config\na: 1\n---\nb: 2\n")
                .unwrap()
                .is_mapping_or_empty()
        );
    }
}
