//! The standalone source: NodeGroups, BootConfigs and Secrets from YAML files in a directory.
//! A file that does not parse or that the API server would refuse is reported with its path
//! and reason, and that file's last good content stays in force.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

use nodeboot_core::crd::{BootConfig, NodeGroup, validate_boot_config, validate_node_group};
use nodeboot_core::secrets::Secrets;
use nodeboot_core::snapshot::Desired;

mod folder;
pub use folder::ManifestFolder;

/// Objects without `metadata.namespace` land here, as `kubectl apply` would put them.
pub const DEFAULT_NAMESPACE: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read the manifest directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: document {doc}: {message}")]
    Document {
        path: PathBuf,
        doc: usize,
        message: String,
    },
}

/// Parsed objects are shared (not copied) with every build that uses them.
#[derive(Debug, Clone)]
pub enum Object {
    NodeGroup(Arc<NodeGroup>),
    BootConfig(Arc<BootConfig>),
    Secret(Arc<Secret>),
}

impl Object {
    fn key(&self) -> (&'static str, String, String) {
        let (kind, meta) = match self {
            Object::NodeGroup(o) => ("NodeGroup", &o.metadata),
            Object::BootConfig(o) => ("BootConfig", &o.metadata),
            Object::Secret(o) => ("Secret", &o.metadata),
        };
        (
            kind,
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    api_version: Option<String>,
    kind: Option<String>,
}

fn doc_error(path: &Path, doc: usize, message: impl Into<String>) -> ManifestError {
    ManifestError::Document {
        path: path.to_owned(),
        doc,
        message: message.into(),
    }
}

/// Parses one file's documents. Kinds nodeboot does not use (a Namespace, say) are skipped.
pub fn parse_file(path: &Path, text: &str) -> Result<Vec<Object>, ManifestError> {
    match parse_file_typed(text) {
        Some(objects) => objects
            .into_iter()
            .enumerate()
            .map(|(i, o)| finish_object(path, i + 1, o))
            .collect(),
        None => parse_file_generic(path, text),
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
        if doc.api_version != "nodeboot.io/v1alpha1" {
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

/// What both paths check once an object is read: the API server's validation, a name, and
/// the default namespace.
fn finish_object(path: &Path, doc: usize, mut object: Object) -> Result<Object, ManifestError> {
    match &object {
        Object::NodeGroup(o) => validate_node_group(&o.spec)
            .map_err(|e| doc_error(path, doc, format!("NodeGroup: {e}")))?,
        Object::BootConfig(o) => validate_boot_config(&o.spec)
            .map_err(|e| doc_error(path, doc, format!("BootConfig: {e}")))?,
        Object::Secret(_) => {}
    }
    // Just created: this is the only reference.
    let meta = match &mut object {
        Object::NodeGroup(o) => Arc::get_mut(o).map(|o| &mut o.metadata),
        Object::BootConfig(o) => Arc::get_mut(o).map(|o| &mut o.metadata),
        Object::Secret(o) => Arc::get_mut(o).map(|o| &mut o.metadata),
    }
    .ok_or_else(|| doc_error(path, doc, "internal: parsed object is shared"))?;
    if meta.name.as_deref().is_none_or(str::is_empty) {
        return Err(doc_error(path, doc, "metadata.name is required"));
    }
    meta.namespace
        .get_or_insert_with(|| DEFAULT_NAMESPACE.into());
    Ok(object)
}

/// The general path: each document through a YAML value, so any kind can be recognized and
/// skipped, and errors name the kind.
fn parse_file_generic(path: &Path, text: &str) -> Result<Vec<Object>, ManifestError> {
    let mut objects = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let doc = i + 1;
        let value = serde_yaml_ng::Value::deserialize(document)
            .map_err(|e| doc_error(path, doc, format!("not valid YAML: {e}")))?;
        if value.is_null() {
            continue;
        }
        let tm: TypeMeta = serde_yaml_ng::from_value(value.clone())
            .map_err(|e| doc_error(path, doc, format!("not a Kubernetes object: {e}")))?;
        let (api_version, kind) = match (tm.api_version.as_deref(), tm.kind.as_deref()) {
            (Some(a), Some(k)) => (a, k),
            _ => return Err(doc_error(path, doc, "apiVersion and kind are required")),
        };
        let object = match (api_version, kind) {
            ("nodeboot.io/v1alpha1", "NodeGroup") => {
                let ng: NodeGroup = serde_yaml_ng::from_value(value)
                    .map_err(|e| doc_error(path, doc, format!("NodeGroup: {e}")))?;
                Object::NodeGroup(Arc::new(ng))
            }
            ("nodeboot.io/v1alpha1", "BootConfig") => {
                let bc: BootConfig = serde_yaml_ng::from_value(value)
                    .map_err(|e| doc_error(path, doc, format!("BootConfig: {e}")))?;
                Object::BootConfig(Arc::new(bc))
            }
            ("v1", "Secret") => {
                let s: Secret = serde_yaml_ng::from_value(value)
                    .map_err(|e| doc_error(path, doc, format!("Secret: {e}")))?;
                Object::Secret(Arc::new(s))
            }
            (a, k) if a.starts_with("nodeboot.io/") => {
                return Err(doc_error(
                    path,
                    doc,
                    format!("unknown nodeboot kind {a} {k}"),
                ));
            }
            (a, k) => {
                tracing::debug!(path = %path.display(), doc, api_version = a, kind = k, "skipping a kind nodeboot does not use");
                continue;
            }
        };
        objects.push(finish_object(path, doc, object)?);
    }
    Ok(objects)
}

/// Manifest files below `dir`: `*.yaml`, `*.yml` and `*.json`, skipping hidden entries
/// (a ConfigMap volume's `..data` directory is reached through its visible links).
pub fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| ManifestError::Dir {
            path: d.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if hidden {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Objects of one file, each with the hash of its spec (for the generation counter),
/// computed here because hashing 5000 nodes' specs is worth doing on every core.
type ParsedFile = Vec<(Object, u64)>;

fn spec_hash(spec: &impl serde::Serialize) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(spec).unwrap_or_default().hash(&mut h);
    h.finish()
}

fn read_and_parse(path: &Path) -> Result<ParsedFile, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(parse_file(path, &text)?
        .into_iter()
        .map(|o| {
            let hash = match &o {
                Object::NodeGroup(g) => spec_hash(&g.spec),
                Object::BootConfig(b) => spec_hash(&b.spec),
                Object::Secret(_) => 0,
            };
            (o, hash)
        })
        .collect())
}

/// Parses files on all cores, keeping their order.
fn parse_files(paths: Vec<&Path>) -> Vec<Result<ParsedFile, ManifestError>> {
    nodeboot_core::parallel::map_in_order(paths, 1, read_and_parse)
}

/// Size and modification time of every manifest: a cheap way to notice any change.
pub type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

pub fn fingerprint(dir: &Path) -> Result<Fingerprint, ManifestError> {
    Ok(manifest_files(dir)?
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
            let modified = meta.and_then(|m| m.modified().ok());
            (p, len, modified)
        })
        .collect())
}

type Generations = BTreeMap<(&'static str, String, String), (u64, i64)>;

fn next_generation(
    generations: &mut Generations,
    key: &(&'static str, String, String),
    spec_hash: u64,
) -> i64 {
    match generations.get_mut(key) {
        Some((last, generation)) => {
            if *last != spec_hash {
                *last = spec_hash;
                *generation += 1;
            }
            *generation
        }
        None => {
            generations.insert(key.clone(), (spec_hash, 1));
            1
        }
    }
}

/// A file's size and modification time: unchanged files are not parsed again.
type Stamp = (u64, Option<SystemTime>);

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()))
}

/// A directory of manifests, remembering each file's last good content.
pub struct ManifestSource {
    dir: PathBuf,
    last_good: BTreeMap<PathBuf, (Option<Stamp>, Vec<Object>)>,
    /// Stands in for the API server's `metadata.generation`: bumped when an object's spec
    /// changes, so "still serving generation N" means the same thing in both modes.
    generations: Generations,
}

/// The outcome of a load: what to serve, and what was wrong.
pub struct Loaded {
    pub desired: Desired,
    pub errors: Vec<ManifestError>,
}

impl ManifestSource {
    pub fn new(dir: impl Into<PathBuf>) -> ManifestSource {
        ManifestSource {
            dir: dir.into(),
            last_good: BTreeMap::new(),
            generations: BTreeMap::new(),
        }
    }

    /// Stands in for the API server's generation counter on a freshly parsed object.
    fn set_generation(&mut self, object: &mut Object, spec_hash: u64) {
        if matches!(object, Object::Secret(_)) {
            return;
        }
        let generation = next_generation(&mut self.generations, &object.key(), spec_hash);
        let meta = match object {
            Object::NodeGroup(o) => Arc::get_mut(o).map(|o| &mut o.metadata),
            Object::BootConfig(o) => Arc::get_mut(o).map(|o| &mut o.metadata),
            Object::Secret(_) => None,
        };
        if let Some(meta) = meta {
            meta.generation = Some(generation);
        }
    }

    /// Reads the directory again, parsing the files that changed (in parallel: a large site's
    /// YAML is most of a cold start). Fails only when the directory itself cannot be read.
    pub fn load(&mut self) -> Result<Loaded, ManifestError> {
        let files = manifest_files(&self.dir)?;
        let mut errors = Vec::new();
        let mut current = BTreeMap::new();
        let mut changed = Vec::new();
        for path in files {
            let now = stamp(&path);
            match self.last_good.remove(&path) {
                Some((then, objects)) if then.is_some() && then == now => {
                    current.insert(path, (now, objects));
                }
                previous => changed.push((path, now, previous)),
            }
        }
        let parsed = parse_files(changed.iter().map(|(p, _, _)| p.as_path()).collect());
        for ((path, now, previous), result) in changed.into_iter().zip(parsed) {
            match result {
                Ok(parsed) => {
                    let objects = parsed
                        .into_iter()
                        .map(|(mut object, hash)| {
                            self.set_generation(&mut object, hash);
                            object
                        })
                        .collect();
                    current.insert(path, (now, objects));
                }
                Err(e) => {
                    if let Some((_, objects)) = previous {
                        // Keep the old content, but not its stamp: retry the file next time.
                        current.insert(path, (None, objects));
                    }
                    errors.push(e);
                }
            }
        }
        self.last_good = current;
        let mut desired = Desired::default();
        let mut seen: BTreeMap<(&'static str, String, String), &Path> = BTreeMap::new();
        let mut secrets = Secrets::default();
        for (path, (_, objects)) in &self.last_good {
            for (i, object) in objects.iter().enumerate() {
                let key = object.key();
                if let Some(first) = seen.get(&key) {
                    errors.push(doc_error(
                        path,
                        i + 1,
                        format!(
                            "{} {}/{} is also defined in {}; that one is used",
                            key.0,
                            key.1,
                            key.2,
                            first.display()
                        ),
                    ));
                    continue;
                }
                seen.insert(key.clone(), path);
                match object {
                    Object::NodeGroup(o) => desired.node_groups.push(o.clone()),
                    Object::BootConfig(o) => desired.boot_configs.push((**o).clone()),
                    Object::Secret(o) => secrets.insert(o),
                }
            }
        }
        let live: std::collections::BTreeSet<_> = seen.into_keys().collect();
        self.generations.retain(|k, _| live.contains(k));
        desired.secrets = secrets;
        Ok(Loaded { desired, errors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let general = parse_file_generic(Path::new("x.yaml"), text).unwrap();
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
            err.starts_with("site/bad.yaml: document 1: NodeGroup: spec.nodes[0].macs:"),
            "{err}"
        );
    }
}
