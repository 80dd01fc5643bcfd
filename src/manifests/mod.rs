//! The standalone source: NodeGroups, BootConfigs and Secrets from YAML files in a directory.
//! A file that does not parse or that the API server would refuse is reported with its path
//! and reason, and that file's last good content stays in force.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Secret;
use nodeboot_core::crd::{BootConfig, NodeGroup};
use nodeboot_core::secrets::Secrets;
use nodeboot_core::snapshot::Desired;

mod files;
mod folder;
mod guard;
mod parse;

pub use files::{Fingerprint, fingerprint};
pub use folder::ManifestFolder;
pub use guard::{Refused, check as check_yaml_shape};
pub use parse::parse_file;

use files::{Stamp, manifest_files, read_manifest, settled, stamp};

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
    let text = read_manifest(path)?;
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

/// What the source knows of one file.
#[derive(Default)]
struct FileState {
    /// The stamp of the content last parsed, good or bad: unchanged files are not parsed again.
    parsed: Option<Stamp>,
    /// The objects of the last good content: in force while the file is broken or unsettled.
    objects: Vec<Object>,
    /// Why the last parse failed: reported again without parsing again.
    error: Option<Arc<ManifestError>>,
}

/// A directory of manifests, remembering each file's last good content.
pub struct ManifestSource {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    /// Stands in for the API server's `metadata.generation`: bumped when an object's spec
    /// changes, so "still serving generation N" means the same thing in both modes.
    generations: Generations,
    /// Some file was still being written at the last load: look again soon.
    unsettled: bool,
}

/// The outcome of a load: what to serve, and what was wrong.
pub struct Loaded {
    pub desired: Desired,
    pub errors: Vec<Arc<ManifestError>>,
}

impl ManifestSource {
    pub fn new(dir: impl Into<PathBuf>) -> ManifestSource {
        ManifestSource {
            dir: dir.into(),
            files: BTreeMap::new(),
            generations: BTreeMap::new(),
            unsettled: false,
        }
    }

    /// Whether a file was left unread at the last load because it was still being written.
    pub fn waiting_for_writes(&self) -> bool {
        self.unsettled
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

    /// Reads the directory again, parsing the files that changed and have settled (in
    /// parallel: a large site's YAML is most of a cold start). Fails only when the directory
    /// itself cannot be read.
    pub fn load(&mut self) -> Result<Loaded, ManifestError> {
        let (paths, refused) = manifest_files(&self.dir)?;
        let mut errors: Vec<Arc<ManifestError>> = refused.into_iter().map(Arc::new).collect();
        let now = SystemTime::now();
        let mut current = BTreeMap::new();
        let mut changed = Vec::new();
        self.unsettled = false;
        for path in paths {
            let stamp = stamp(&path);
            let state = self.files.remove(&path).unwrap_or_default();
            if stamp.is_some() && state.parsed == stamp {
                errors.extend(state.error.clone());
                current.insert(path, state);
            } else if stamp.is_some_and(|s| !settled(&s, now)) {
                // Still being written: keep what was in force, look again once it settles.
                self.unsettled = true;
                current.insert(path, state);
            } else {
                changed.push((path, stamp, state));
            }
        }
        let parsed = parse_files(changed.iter().map(|(p, _, _)| p.as_path()).collect());
        for ((path, stamp, mut state), result) in changed.into_iter().zip(parsed) {
            state.parsed = stamp;
            match result {
                Ok(parsed) => {
                    state.objects = parsed
                        .into_iter()
                        .map(|(mut object, hash)| {
                            self.set_generation(&mut object, hash);
                            object
                        })
                        .collect();
                    state.error = None;
                }
                Err(e) => {
                    let e = Arc::new(e);
                    errors.push(e.clone());
                    state.error = Some(e);
                }
            }
            current.insert(path, state);
        }
        self.files = current;
        let mut desired = Desired::default();
        let mut seen: BTreeMap<(&'static str, String, String), &Path> = BTreeMap::new();
        let mut secrets = Secrets::default();
        for (path, state) in &self.files {
            for (i, object) in state.objects.iter().enumerate() {
                let key = object.key();
                if let Some(first) = seen.get(&key) {
                    errors.push(Arc::new(parse::doc_error(
                        path,
                        i + 1,
                        format!(
                            "{} {}/{} is also defined in {}; that one is used",
                            key.0,
                            key.1,
                            key.2,
                            first.display()
                        ),
                    )));
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
