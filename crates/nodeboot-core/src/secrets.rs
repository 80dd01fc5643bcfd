//! Secret data that BootConfigs reference, as plain data shared by `serve` and the operator.
//! Only Secrets labelled `nodeboot.io/user-data: "true"` can be referenced; the data of any
//! other Secret is not even kept. Values are never logged, shown in status, events or admin
//! endpoints, and this type has no `Debug` that could print them.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Secret;

use crate::labels::USER_DATA_SECRET;

/// One Secret's keys and values; `None` for a Secret that did not opt in.
type SecretData = Option<BTreeMap<String, Vec<u8>>>;

#[derive(Clone, Default, PartialEq)]
pub struct Secrets {
    by_name: HashMap<(String, String), SecretData>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.by_name.keys().map(|(ns, name)| format!("{ns}/{name}")))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "Secret {namespace}/{name} does not exist, or is not labelled {USER_DATA_SECRET}=true \
         (nodeboot reads only Secrets that opt in: kubectl label secret -n {namespace} {name} \
         {USER_DATA_SECRET}=true)"
    )]
    Missing { namespace: String, name: String },
    #[error(
        "Secret {namespace}/{name} is not labelled {USER_DATA_SECRET}=true, so no BootConfig may \
         use it (kubectl label secret -n {namespace} {name} {USER_DATA_SECRET}=true opts it in)"
    )]
    NotOptedIn { namespace: String, name: String },
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

/// Does this Secret let BootConfigs use it?
pub fn opted_in(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(USER_DATA_SECRET))
        .is_some_and(|v| v == "true")
}

impl Secrets {
    pub fn insert(&mut self, secret: &Secret) {
        let namespace = secret.metadata.namespace.clone().unwrap_or_default();
        let name = secret.metadata.name.clone().unwrap_or_default();
        let data = opted_in(secret).then(|| {
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
            data
        });
        self.by_name.insert((namespace, name), data);
    }

    pub fn get_text(&self, namespace: &str, name: &str, key: &str) -> Result<&str, SecretError> {
        let data = self
            .by_name
            .get(&(namespace.to_owned(), name.to_owned()))
            .ok_or_else(|| SecretError::Missing {
                namespace: namespace.into(),
                name: name.into(),
            })?
            .as_ref()
            .ok_or_else(|| SecretError::NotOptedIn {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(labelled: bool) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = Some("hpc".into());
        s.metadata.name = Some("creds".into());
        if labelled {
            s.metadata.labels = Some([(USER_DATA_SECRET.to_owned(), "true".to_owned())].into());
        }
        s.string_data = Some([("user-data".to_owned(), "#cloud-config\n".to_owned())].into());
        s
    }

    #[test]
    fn only_labelled_secrets_can_be_read() {
        let mut secrets = Secrets::default();
        secrets.insert(&secret(false));
        let err = secrets.get_text("hpc", "creds", "user-data").unwrap_err();
        assert!(
            err.to_string()
                .contains("kubectl label secret -n hpc creds nodeboot.io/user-data=true"),
            "{err}"
        );
        assert!(!format!("{secrets:?}").contains("cloud-config"));
        secrets.insert(&secret(true));
        assert_eq!(
            secrets.get_text("hpc", "creds", "user-data"),
            Ok("#cloud-config\n")
        );
        assert!(!format!("{secrets:?}").contains("cloud-config"));
        let err = Secrets::default().get_text("hpc", "gone", "k").unwrap_err();
        assert!(
            err.to_string().contains("nodeboot.io/user-data=true"),
            "{err}"
        );
    }
}
