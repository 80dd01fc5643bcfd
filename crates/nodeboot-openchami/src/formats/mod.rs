//! The shapes OpenCHAMI's services export, and which one a document is. A source is JSON (as a
//! service answers) or YAML (as people keep files, several documents allowed); its kind is read
//! off its shape, so a site can pass whatever it saved without saying what it is.

pub mod bss;
pub mod cloud_init;
pub mod envelopes;
pub mod inventory;
pub mod smd;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Go encodes empty slices and maps as `null`: read `null` as the empty value.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One parsed input document.
#[derive(Debug, Clone)]
pub enum Input {
    BssParams(Vec<bss::BootParams>),
    SmdComponents(Vec<smd::Component>),
    SmdInterfaces(Vec<smd::EthernetInterface>),
    SmdGroups(Vec<smd::Group>),
    SmdMemberships(Vec<smd::Membership>),
    Inventory(inventory::StaticInventory),
    CiGroups(Vec<cloud_init::CiGroup>),
    CiDefaults(cloud_init::ClusterDefaults),
    CiInstances(Vec<cloud_init::InstanceInfo>),
    /// boot-service and metadata-service objects.
    Envelopes(Vec<envelopes::Envelope>),
    /// An empty list: a service with nothing of that kind answers so.
    Empty,
}

impl Input {
    /// What the input is, for the report.
    pub fn describe(&self) -> String {
        match self {
            Input::BssParams(p) => format!(
                "BSS bootparameters ({} back end, {} elements)",
                bss::backend(p).name(),
                p.len()
            ),
            Input::SmdComponents(c) => format!("SMD State/Components ({} components)", c.len()),
            Input::SmdInterfaces(i) => {
                format!("SMD Inventory/EthernetInterfaces ({} interfaces)", i.len())
            }
            Input::SmdGroups(g) => format!("SMD groups ({} groups)", g.len()),
            Input::SmdMemberships(m) => format!("SMD memberships ({} members)", m.len()),
            Input::Inventory(i) => format!(
                "ochami static inventory ({} nodes, {} BMCs)",
                i.nodes.len(),
                i.bmcs.len()
            ),
            Input::CiGroups(g) => format!("cloud-init groups ({} groups)", g.len()),
            Input::CiDefaults(_) => "cloud-init cluster defaults".to_owned(),
            Input::CiInstances(i) => format!("cloud-init instance info ({} nodes)", i.len()),
            Input::Envelopes(e) => format!(
                "boot-service/metadata-service objects ({} objects)",
                e.len()
            ),
            Input::Empty => "an empty list (nothing to import)".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("neither JSON nor YAML: {0}")]
    Syntax(String),
    #[error("document {document}: {why}")]
    Unrecognized { document: usize, why: String },
    #[error("document {document} looks like {what} but does not read as one: {error}")]
    Shape {
        document: usize,
        what: &'static str,
        error: String,
    },
}

/// Reads every document of a source.
pub fn parse(text: &str) -> Result<Vec<Input>, FormatError> {
    let documents: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(v) => vec![v],
        Err(json_error) => {
            let mut docs = Vec::new();
            for doc in serde_yaml_ng::Deserializer::from_str(text) {
                let value = Value::deserialize(doc).map_err(|yaml_error| {
                    FormatError::Syntax(format!("as JSON: {json_error}; as YAML: {yaml_error}"))
                })?;
                if !value.is_null() {
                    docs.push(value);
                }
            }
            docs
        }
    };
    let mut inputs = Vec::with_capacity(documents.len());
    for (i, doc) in documents.into_iter().enumerate() {
        inputs.push(classify(i + 1, doc)?);
    }
    Ok(inputs)
}

fn read<T: DeserializeOwned>(
    document: usize,
    what: &'static str,
    value: Value,
) -> Result<T, FormatError> {
    serde_json::from_value(value).map_err(|e| FormatError::Shape {
        document,
        what,
        error: e.to_string(),
    })
}

fn has_any(obj: &serde_json::Map<String, Value>, keys: &[&str]) -> bool {
    keys.iter().any(|k| obj.contains_key(*k))
}

fn classify(document: usize, value: Value) -> Result<Input, FormatError> {
    let unrecognized = |why: &str| FormatError::Unrecognized {
        document,
        why: why.to_owned(),
    };
    match &value {
        Value::Array(items) if items.is_empty() => Ok(Input::Empty),
        Value::Array(items) => {
            let Some(Value::Object(first)) = items.first() else {
                return Err(unrecognized("a list of non-objects: nothing to import"));
            };
            if has_any(first, &["apiVersion", "kind"]) {
                Ok(Input::Envelopes(read(
                    document,
                    "a list of objects",
                    value,
                )?))
            } else if has_any(first, &["MACAddress", "ComponentID"]) {
                Ok(Input::SmdInterfaces(read(
                    document,
                    "SMD EthernetInterfaces",
                    value,
                )?))
            } else if has_any(first, &["groupLabels"]) {
                Ok(Input::SmdMemberships(read(
                    document,
                    "SMD memberships",
                    value,
                )?))
            } else if has_any(first, &["label"]) && has_any(first, &["members"]) {
                Ok(Input::SmdGroups(read(document, "SMD groups", value)?))
            } else if has_any(first, &["instance-id", "instance_id", "local-hostname"]) {
                Ok(Input::CiInstances(read(
                    document,
                    "cloud-init instance info",
                    value,
                )?))
            } else if has_any(first, &["name"]) && has_any(first, &["file", "meta-data"]) {
                Ok(Input::CiGroups(read(document, "cloud-init groups", value)?))
            } else if has_any(
                first,
                &[
                    "hosts",
                    "macs",
                    "nids",
                    "kernel",
                    "initrd",
                    "params",
                    "cloud-init",
                ],
            ) {
                Ok(Input::BssParams(read(
                    document,
                    "BSS bootparameters",
                    value,
                )?))
            } else {
                Err(unrecognized(
                    "a list whose elements match no OpenCHAMI export nodeboot reads",
                ))
            }
        }
        Value::Object(obj) => {
            if obj.contains_key("Components") {
                let c: smd::Components = read(document, "SMD State/Components", value)?;
                Ok(Input::SmdComponents(c.components))
            } else if obj.get("nodes").is_some_and(Value::is_array) {
                Ok(Input::Inventory(read(
                    document,
                    "an ochami static inventory",
                    value,
                )?))
            } else if obj.get("items").is_some_and(Value::is_array) {
                let items = obj.get("items").cloned().unwrap_or_default();
                Ok(Input::Envelopes(read(
                    document,
                    "a list of objects",
                    items,
                )?))
            } else if has_any(obj, &["apiVersion"]) && has_any(obj, &["kind"]) {
                Ok(Input::Envelopes(vec![read(document, "an object", value)?]))
            } else if has_any(obj, &["instance-id", "instance_id"]) {
                Ok(Input::CiInstances(vec![read(
                    document,
                    "cloud-init instance info",
                    value,
                )?]))
            } else if has_any(
                obj,
                &[
                    "cloud_provider",
                    "cluster-name",
                    "short-name",
                    "nid-length",
                    "base-url",
                    "public-keys",
                ],
            ) {
                Ok(Input::CiDefaults(read(
                    document,
                    "cloud-init cluster defaults",
                    value,
                )?))
            } else if !obj.is_empty()
                && obj
                    .values()
                    .all(|v| v.as_object().is_some_and(|g| g.contains_key("name")))
            {
                // The cloud-init server lists groups as a map keyed by name.
                let groups = obj.values().cloned().collect::<Vec<_>>();
                Ok(Input::CiGroups(read(
                    document,
                    "cloud-init groups",
                    Value::Array(groups),
                )?))
            } else {
                Err(unrecognized(
                    "an object that matches no OpenCHAMI export nodeboot reads",
                ))
            }
        }
        _ => Err(unrecognized("neither a list nor an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_each_shape() {
        let cases = [
            (
                r#"[{"hosts":["Default"],"kernel":"k","params":"p"}]"#,
                "BSS",
            ),
            (
                r#"{"Components":[{"ID":"x0c0s0b0n0","Type":"Node"}]}"#,
                "Components",
            ),
            (
                r#"[{"ID":"a","MACAddress":"a","ComponentID":"x"}]"#,
                "EthernetInterfaces",
            ),
            (r#"[{"label":"c","members":{"ids":[]}}]"#, "SMD groups"),
            (r#"[{"id":"x","groupLabels":["c"]}]"#, "memberships"),
            ("nodes:\n- xname: x0c0s0b0n0\n", "static inventory"),
            (
                r#"{"compute":{"name":"compute","file":{"content":"","encoding":"plain"}}}"#,
                "cloud-init groups",
            ),
            (
                r#"{"cloud_provider":"OpenCHAMI","short-name":"nid"}"#,
                "cluster defaults",
            ),
            (r#"[{"id":"x","instance-id":"i"}]"#, "instance info"),
            (
                "apiVersion: boot.openchami.io/v1\nkind: Node\nspec: {xname: x0c0s0b0n0}\n---\napiVersion: boot.openchami.io/v1\nkind: Node\nspec: {xname: x0c0s0b1n0}\n",
                "objects",
            ),
        ];
        for (text, what) in cases {
            let inputs = parse(text).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(
                inputs[0].describe().contains(what),
                "{what}: {}",
                inputs[0].describe()
            );
        }
        assert!(matches!(
            parse("{\"x\": 1}"),
            Err(FormatError::Unrecognized { .. })
        ));
        assert!(matches!(parse("[1, 2"), Err(FormatError::Syntax(_))));
        assert!(matches!(parse("[]").unwrap()[..], [Input::Empty]));
    }
}
