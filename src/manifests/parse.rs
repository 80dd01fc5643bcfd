//! One manifest file's text to objects. The text is checked first (`guard`), so no YAML parser
//! sees aliases or deep nesting; every object is then held to what the API server would
//! accept. Errors name the file, the document and its line, the object and the field, and
//! never quote a value: a Secret's, or a whole token file that a link pointed at.

use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use nodeboot_core::crd::{
    BootConfig, NodeGroup, validate_boot_config, validate_namespace, validate_node_group,
    validate_object_name,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{DEFAULT_NAMESPACE, ManifestError, Object, guard};

const NODEBOOT_API: &str = "nodeboot.io/v1alpha1";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    api_version: Option<String>,
    kind: Option<String>,
}

pub(super) fn doc_error(path: &Path, doc: usize, message: impl Into<String>) -> ManifestError {
    ManifestError::Document {
        path: path.to_owned(),
        doc,
        message: message.into(),
    }
}

/// Where a document starts, for error messages.
struct Located<'a> {
    path: &'a Path,
    doc: usize,
    line: Option<usize>,
}

impl Located<'_> {
    fn error(&self, message: impl std::fmt::Display) -> ManifestError {
        let message = match self.line {
            Some(line) => format!("line {line}: {message}"),
            None => message.to_string(),
        };
        ManifestError::Document {
            path: self.path.to_owned(),
            doc: self.doc,
            message,
        }
    }
}

/// Parses one file's documents. Kinds nodeboot does not use (a Namespace, say) are skipped.
pub fn parse_file(path: &Path, text: &str) -> Result<Vec<Object>, ManifestError> {
    let starts = guard::check(text).map_err(|e| ManifestError::Document {
        path: path.to_owned(),
        doc: e.doc,
        message: e.message,
    })?;
    let located = |doc: usize| Located {
        path,
        doc,
        line: starts.get(doc - 1).copied(),
    };
    match parse_file_typed(text) {
        Some(objects) => objects
            .into_iter()
            .enumerate()
            .map(|(i, o)| finish_object(&located(i + 1), o))
            .collect(),
        None => parse_file_generic(text, located),
    }
}

/// The spec fields of both kinds: their names do not overlap, so one pass can read either.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EitherSpec {
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    meta_data: nodeboot_core::crd::MetaData,
    nodes: Option<Vec<nodeboot_core::crd::NodeSpec>>,
    node_selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    #[serde(default)]
    priority: i32,
    kernel: Option<String>,
    initrd: Option<String>,
    #[serde(default)]
    params: String,
    auto_params: Option<bool>,
    #[serde(default)]
    script: String,
    #[serde(default)]
    grub_script: String,
    cloud_init: Option<nodeboot_core::crd::CloudInit>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodebootDoc {
    api_version: String,
    kind: String,
    #[serde(default)]
    metadata: kube::api::ObjectMeta,
    spec: EitherSpec,
}

/// The fast path for files of NodeGroups and BootConfigs only, straight into typed structs
/// (a large site's inventory is most of a cold start). `None` sends the file down the general
/// path, which also words the errors.
fn parse_file_typed(text: &str) -> Option<Vec<Object>> {
    let mut objects = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let Some(doc) = Option::<NodebootDoc>::deserialize(document).ok()? else {
            continue;
        };
        if doc.api_version != NODEBOOT_API {
            return None;
        }
        let spec = doc.spec;
        let object = match doc.kind.as_str() {
            "NodeGroup" => Object::NodeGroup(Arc::new(NodeGroup {
                metadata: doc.metadata,
                spec: nodeboot_core::crd::NodeGroupSpec {
                    labels: spec.labels,
                    meta_data: spec.meta_data,
                    nodes: spec.nodes?,
                },
                status: None,
            })),
            "BootConfig" => Object::BootConfig(Arc::new(BootConfig {
                metadata: doc.metadata,
                spec: nodeboot_core::crd::BootConfigSpec {
                    node_selector: spec.node_selector,
                    priority: spec.priority,
                    kernel: spec.kernel?,
                    initrd: spec.initrd,
                    params: spec.params,
                    auto_params: spec.auto_params.unwrap_or(true),
                    script: spec.script,
                    grub_script: spec.grub_script,
                    cloud_init: spec.cloud_init,
                },
                status: None,
            })),
            _ => return None,
        };
        objects.push(object);
    }
    Some(objects)
}

/// What both paths check once an object is read: the API server's validation, its name and
/// namespace, and the default namespace.
fn finish_object(at: &Located<'_>, mut object: Object) -> Result<Object, ManifestError> {
    // Status is the server's: a manifest on disk that carries one (an export, say) has it
    // ignored, whichever parser read it.
    let (kind, meta) = match &mut object {
        Object::NodeGroup(o) => (
            "NodeGroup",
            Arc::get_mut(o).map(|o| {
                o.status = None;
                &mut o.metadata
            }),
        ),
        Object::BootConfig(o) => (
            "BootConfig",
            Arc::get_mut(o).map(|o| {
                o.status = None;
                &mut o.metadata
            }),
        ),
        Object::Secret(o) => ("Secret", Arc::get_mut(o).map(|o| &mut o.metadata)),
    };
    // Just created: this is the only reference.
    let meta = meta.ok_or_else(|| at.error("internal: parsed object is shared"))?;
    let name = meta.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(at.error(format!("{kind}: metadata.name is required")));
    }
    validate_object_name("metadata.name", &name).map_err(|e| at.error(format!("{kind}: {e}")))?;
    let namespace = meta
        .namespace
        .get_or_insert_with(|| DEFAULT_NAMESPACE.into());
    validate_namespace("metadata.namespace", namespace)
        .map_err(|e| at.error(format!("{kind}: {e}")))?;
    let object_name = format!("{kind} {namespace}/{name}");
    match &object {
        Object::NodeGroup(o) => validate_node_group(&o.spec),
        Object::BootConfig(o) => validate_boot_config(&o.spec),
        Object::Secret(_) => Ok(()),
    }
    .map_err(|e| at.error(format!("{object_name}: {e}")))?;
    Ok(object)
}

/// A typed object from a document's value; the error names the field and quotes no value.
fn typed<T: DeserializeOwned>(
    value: serde_yaml_ng::Value,
    at: &Located<'_>,
    kind: &str,
) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        at.error(format!(
            "{kind}: {field}: {}",
            redact::without_values(&e.into_inner().to_string())
        ))
    })
}

/// The general path: each document through a YAML value, so any kind can be recognized and
/// skipped, and errors name the kind.
fn parse_file_generic<'a>(
    text: &str,
    located: impl Fn(usize) -> Located<'a>,
) -> Result<Vec<Object>, ManifestError> {
    let mut objects = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let at = located(i + 1);
        let value = serde_yaml_ng::Value::deserialize(document).map_err(|e| {
            at.error(format!(
                "not valid YAML: {}",
                redact::without_values(&e.to_string())
            ))
        })?;
        if value.is_null() {
            continue;
        }
        let tm: TypeMeta = serde_yaml_ng::from_value(value.clone()).map_err(|_| {
            at.error("not a Kubernetes object (a mapping with apiVersion and kind)")
        })?;
        let (api_version, kind) = match (tm.api_version.as_deref(), tm.kind.as_deref()) {
            (Some(a), Some(k)) => (a, k),
            _ => return Err(at.error("apiVersion and kind are required")),
        };
        let object = match (api_version, kind) {
            (NODEBOOT_API, "NodeGroup") => {
                Object::NodeGroup(Arc::new(typed::<NodeGroup>(value, &at, "NodeGroup")?))
            }
            (NODEBOOT_API, "BootConfig") => {
                Object::BootConfig(Arc::new(typed::<BootConfig>(value, &at, "BootConfig")?))
            }
            ("v1", "Secret") => Object::Secret(Arc::new(typed::<Secret>(value, &at, "Secret")?)),
            (a, _) if a.starts_with("nodeboot.io/") => {
                return Err(at.error(
                    "unknown nodeboot kind (nodeboot.io/v1alpha1 has NodeGroup and BootConfig)",
                ));
            }
            _ => {
                tracing::debug!(path = %at.path.display(), doc = at.doc, "skipping a kind nodeboot does not use");
                continue;
            }
        };
        objects.push(finish_object(&at, object)?);
    }
    Ok(objects)
}

mod redact {
    /// serde's messages quote the values they could not read (`invalid type: string "…"`,
    /// `unknown variant `…``). Those values may be a Secret's: keep the message, drop them.
    pub fn without_values(message: &str) -> String {
        let mut out = String::with_capacity(message.len().min(256));
        let mut chars = message.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                // A Debug-quoted string: skip to its closing quote, honouring escapes.
                '"' => {
                    let mut escaped = false;
                    for c in chars.by_ref() {
                        match (escaped, c) {
                            (false, '\\') => escaped = true,
                            (false, '"') => break,
                            _ => escaped = false,
                        }
                    }
                    out.push_str("\"…\"");
                }
                // A backquoted name: kept when it looks like a field or variant name.
                '`' => {
                    let quoted: String = chars.by_ref().take_while(|c| *c != '`').collect();
                    let name_like = quoted.len() <= 64
                        && quoted
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
                    out.push('`');
                    out.push_str(if name_like { &quoted } else { "…" });
                    out.push('`');
                }
                c if c.is_control() => out.push(' '),
                c => out.push(c),
            }
            if out.len() > 300 {
                out.push('…');
                break;
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn values_are_dropped_names_kept() {
            assert_eq!(
                super::without_values(
                    r#"invalid type: string "hunter2 \"quoted\" secret", expected a sequence"#
                ),
                r#"invalid type: string "…", expected a sequence"#
            );
            assert_eq!(
                super::without_values("unknown field `kernal`, expected one of `kernel`, `initrd`"),
                "unknown field `kernal`, expected one of `kernel`, `initrd`"
            );
            assert_eq!(
                super::without_values("unknown variant `a b\nc`, expected `x86_64`"),
                "unknown variant `…`, expected `x86_64`"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn parses_multi_document_files_and_skips_other_kinds() {
        let text = r#"
apiVersion: v1
kind: Namespace
metadata: {name: hpc}
---
apiVersion: nodeboot.io/v1alpha1
kind: NodeGroup
metadata: {name: g, namespace: hpc}
spec:
  nodes: [{name: n1, macs: ["02:00:00:00:00:01"]}]
---
apiVersion: nodeboot.io/v1alpha1
kind: BootConfig
metadata: {name: b}
spec: {kernel: "http://i/k", nodeSelector: {}}
"#;
        let objects = parse_file(Path::new("x.yaml"), text).unwrap();
        assert_eq!(objects.len(), 2);
        match &objects[1] {
            Object::BootConfig(bc) => {
                assert_eq!(bc.metadata.namespace.as_deref(), Some("default"));
                assert!(bc.spec.auto_params, "autoParams defaults to true");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fast_and_general_paths_read_the_same_objects() {
        let text = concat!(
            include_str!("../../examples/site.yaml"),
            "---\napiVersion: nodeboot.io/v1alpha1\nkind: BootConfig\nmetadata: {name: b, namespace: hpc}\nspec: {kernel: \"http://i/k\", autoParams: false, cloudInit: {userData: x}}\n"
        );
        let fast = parse_file_typed(text).expect("nodeboot kinds only: the fast path applies");
        let general = parse_file_generic(text, |doc| Located {
            path: Path::new("x.yaml"),
            doc,
            line: None,
        })
        .unwrap();
        assert_eq!(fast.len(), 3);
        let json = |objects: &[Object]| -> Vec<serde_json::Value> {
            objects
                .iter()
                .map(|o| match o {
                    Object::NodeGroup(g) => serde_json::to_value(&**g).unwrap(),
                    Object::BootConfig(b) => serde_json::to_value(&**b).unwrap(),
                    Object::Secret(s) => serde_json::to_value(&**s).unwrap(),
                })
                .collect()
        };
        assert_eq!(json(&fast), json(&general));
        // Anything else takes the general path.
        assert!(parse_file_typed(include_str!("../../examples/bootconfigs.yaml")).is_none());
    }

    #[test]
    fn reports_file_document_and_reason() {
        let text = "apiVersion: nodeboot.io/v1alpha1\nkind: NodeGroup\nmetadata: {name: g}\nspec:\n  nodes: [{name: n1, macs: [\"nope\"]}]\n";
        let err = parse_file(Path::new("site/bad.yaml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "site/bad.yaml: document 1: line 1: NodeGroup default/g: spec.nodes[0].macs:"
            ),
            "{err}"
        );
    }

    #[test]
    fn errors_quote_no_value_and_names_are_checked() {
        let secret =
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: hunter2-top-secret\n";
        let err = parse_file(Path::new("s.yaml"), secret)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("Secret: stringData"), "{err}");
        // A token file linked in as a manifest is one YAML string: not quoted either.
        let err = parse_file(Path::new("t.yaml"), "eyJhbGciOiJSUzI1NiJ9.secret-token\n")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("eyJ"), "{err}");
        let forged = "apiVersion: v1\nkind: Secret\nmetadata: {name: \"a\\nERROR forged line\"}\n";
        let err = parse_file(Path::new("f.yaml"), forged)
            .unwrap_err()
            .to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("metadata.name"), "{err}");
    }
}
