//! The structure of a YAML document: which keys and list items it has, not what they say.
//! A rendered cloud-config must have the structure its template's own text gives it (its
//! `Dialect::Shape` rendering): a value that adds a key or a list item, or turns a scalar into
//! a collection, is an injection, however it was written.

use serde_yaml_ng::Value;

/// Nesting deeper than this is refused: no cloud-config needs it, and walking it costs stack.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    Scalar,
    Sequence(Vec<Shape>),
    /// Entries in document order, keys included: a key written from a value is a scalar like
    /// any other, but a value that adds an entry changes the count.
    Mapping(Vec<(Shape, Shape)>),
}

fn shape_of(value: &Value, depth: usize) -> Result<Shape, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    Ok(match value {
        Value::Sequence(items) => Shape::Sequence(
            items
                .iter()
                .map(|v| shape_of(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Mapping(map) => Shape::Mapping(
            map.iter()
                .map(|(k, v)| Ok((shape_of(k, depth + 1)?, shape_of(v, depth + 1)?)))
                .collect::<Result<_, String>>()?,
        ),
        Value::Tagged(tagged) => shape_of(&tagged.value, depth + 1)?,
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => Shape::Scalar,
    })
}

/// Parses a YAML document and returns its structure; the error says why it is not YAML.
pub fn yaml_shape(doc: &str) -> Result<Shape, String> {
    let value: Value = serde_yaml_ng::from_str(doc).map_err(|e| {
        // serde_yaml's messages may quote the document; keep only where it failed.
        match e.location() {
            Some(at) => format!(
                "not valid YAML (line {}, column {})",
                at.line(),
                at.column()
            ),
            None => "not valid YAML".to_owned(),
        }
    })?;
    shape_of(&value, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_ignore_scalars_but_not_structure() {
        let a = yaml_shape("a: 1\nb: [x, y]\n").unwrap();
        assert_eq!(a, yaml_shape("a: text\nb: [\"p\", 2]\n").unwrap());
        assert_ne!(a, yaml_shape("a: 1\nb: [x, y, z]\n").unwrap());
        assert_ne!(
            a,
            yaml_shape("a: 1\nb: [x, y]\nruncmd: [reboot]\n").unwrap()
        );
        assert_ne!(a, yaml_shape("a: {k: v}\nb: [x, y]\n").unwrap());
        let err = yaml_shape("a: [1\n").unwrap_err();
        assert!(err.starts_with("not valid YAML (line"), "{err}");
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(yaml_shape(&deep).is_err());
    }
}
