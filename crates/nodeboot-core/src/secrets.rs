//! Secret data that BootConfigs reference, as plain data shared by `serve` and the operator.
//! Values are never logged, shown in status, events or admin endpoints.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Secret;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Secrets {
    by_name: HashMap<(String, String), BTreeMap<String, Vec<u8>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("Secret {namespace}/{name} does not exist (or nodeboot may not read it)")]
    Missing { namespace: String, name: String },
    #[error("Secret {namespace}/{name} has no key '{key}'")]
    MissingKey {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("Secret {namespace}/{name} key '{key}' is not UTF-8 text")]
    NotText {
        namespace: String,
        name: String,
        key: String,
    },
}

impl Secrets {
    pub fn insert(&mut self, secret: &Secret) {
        let namespace = secret.metadata.namespace.clone().unwrap_or_default();
        let name = secret.metadata.name.clone().unwrap_or_default();
        let mut data: BTreeMap<String, Vec<u8>> = secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        // stringData is write-only on a real API server; manifests on disk may use it.
        for (k, v) in secret.string_data.iter().flatten() {
            data.insert(k.clone(), v.clone().into_bytes());
        }
        self.by_name.insert((namespace, name), data);
    }

    pub fn get_text(&self, namespace: &str, name: &str, key: &str) -> Result<&str, SecretError> {
        let data = self
            .by_name
            .get(&(namespace.to_owned(), name.to_owned()))
            .ok_or_else(|| SecretError::Missing {
                namespace: namespace.into(),
                name: name.into(),
            })?;
        let bytes = data.get(key).ok_or_else(|| SecretError::MissingKey {
            namespace: namespace.into(),
            name: name.into(),
            key: key.into(),
        })?;
        std::str::from_utf8(bytes).map_err(|_| SecretError::NotText {
            namespace: namespace.into(),
            name: name.into(),
            key: key.into(),
        })
    }
}
