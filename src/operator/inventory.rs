//! The operator's view of the cluster: reflector stores of NodeGroups, BootConfigs and Secrets,
//! kept current by watches that reconnect with backoff, and a signal on every change. As the
//! runtime's source it hands over the desired state when a spec (not a status) changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use nodeboot_core::crd::{BootConfig, NodeGroup};
use nodeboot_core::labels::USER_DATA_SECRET_SELECTOR;
use nodeboot_core::secrets::Secrets;
use nodeboot_core::snapshot::Desired;

use crate::runtime::Source;

/// Changes that arrive within this window are resolved together: a `kubectl apply` of many
/// objects costs one rebuild, not one per object.
const DEBOUNCE: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct Inventory {
    pub node_groups: Store<NodeGroup>,
    pub boot_configs: Store<BootConfig>,
    pub secrets: Store<Secret>,
    /// Notified after any watched object changes.
    pub changed: Arc<Notify>,
    /// The inputs of the last load: a change to anything else (a status, say) is no reason
    /// to rebuild.
    last_key: Option<InputKey>,
}

pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

impl Inventory {
    /// Starts the three watches; they run until `shutdown`.
    pub fn start(
        client: &Client,
        namespace: Option<&str>,
        shutdown: &CancellationToken,
    ) -> Inventory {
        let changed = Arc::new(Notify::new());
        let all = watcher::Config::default();
        let node_groups = spawn_reflector(
            api::<NodeGroup>(client, namespace),
            all.clone(),
            changed.clone(),
            shutdown.clone(),
        );
        let boot_configs = spawn_reflector(
            api::<BootConfig>(client, namespace),
            all,
            changed.clone(),
            shutdown.clone(),
        );
        // Only Secrets that opted in: no other Secret's data ever reaches this process.
        let secrets = spawn_reflector(
            api::<Secret>(client, namespace),
            watcher::Config::default().labels(USER_DATA_SECRET_SELECTOR),
            changed.clone(),
            shutdown.clone(),
        );
        Inventory {
            node_groups,
            boot_configs,
            secrets,
            changed,
            last_key: None,
        }
    }
}

/// How long a watch waits before trying again after an error: doubling from 250 ms to at most
/// 2 s, and back to 250 ms once it works. kube's default grows to 30 s and resets only after
/// two quiet minutes, so a change made just after an API server outage waited up to a minute;
/// here it is served within a few seconds. Three watches retrying every 2 s cost the API
/// server nothing. (kube's own ExponentialBackoff cannot be built with other bounds.)
struct RetrySoon {
    next: Duration,
}

const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(2);

impl Iterator for RetrySoon {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (now * 2).min(RETRY_MAX);
        Some(now)
    }
}

impl Backoff for RetrySoon {
    fn reset(&mut self) {
        self.next = RETRY_FIRST;
    }
}

pub(super) fn spawn_reflector<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: Arc<Notify>,
    shutdown: CancellationToken,
) -> Store<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let stream = reflector::reflector(
        writer,
        watcher(api, config).backoff(RetrySoon { next: RETRY_FIRST }),
    );
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => break,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(_)) => changed.notify_one(),
                Some(Err(e)) => {
                    // The watcher retries with backoff; serving goes on from the store meanwhile.
                    tracing::warn!(kind = %kind, error = %e, "watch failed; retrying with backoff");
                }
                None => break,
            }
        }
    });
    reader
}

/// What an object contributes to the desired state: a change to anything else (status, say)
/// need not trigger a rebuild.
pub type InputKey = Vec<(char, String, String, String)>;

impl Inventory {
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.node_groups.wait_until_ready().await?;
        self.boot_configs.wait_until_ready().await?;
        self.secrets.wait_until_ready().await
    }

    /// Generations of NodeGroups and BootConfigs and resourceVersions of referenced Secrets.
    pub fn input_key(&self) -> InputKey {
        let mut key: InputKey = Vec::new();
        let id = |m: &kube::api::ObjectMeta| {
            (
                m.namespace.clone().unwrap_or_default(),
                m.name.clone().unwrap_or_default(),
            )
        };
        for o in self.node_groups.state() {
            let (ns, name) = id(&o.metadata);
            key.push((
                'g',
                ns,
                name,
                o.metadata.generation.unwrap_or_default().to_string(),
            ));
        }
        let mut referenced = BTreeMap::new();
        for o in self.boot_configs.state() {
            let (ns, name) = id(&o.metadata);
            if let Some(r) = o
                .spec
                .cloud_init
                .as_ref()
                .and_then(|c| c.user_data_secret_ref.as_ref())
            {
                referenced.insert((ns.clone(), r.name.clone()), ());
            }
            key.push((
                'b',
                ns,
                name,
                o.metadata.generation.unwrap_or_default().to_string(),
            ));
        }
        for s in self.secrets.state() {
            let (ns, name) = id(&s.metadata);
            if referenced.contains_key(&(ns.clone(), name.clone())) {
                key.push((
                    's',
                    ns,
                    name,
                    s.metadata.resource_version.clone().unwrap_or_default(),
                ));
            }
        }
        key.sort();
        key
    }

    /// A copy of the inputs for a build. Only Secrets that some BootConfig references are kept.
    pub fn desired(&self) -> Desired {
        let boot_configs: Vec<BootConfig> = self
            .boot_configs
            .state()
            .iter()
            .map(|o| (**o).clone())
            .collect();
        let mut secrets = Secrets::default();
        for s in self.secrets.state() {
            let ns = s.metadata.namespace.as_deref().unwrap_or_default();
            let name = s.metadata.name.as_deref().unwrap_or_default();
            let referenced = boot_configs.iter().any(|bc| {
                bc.metadata.namespace.as_deref() == Some(ns)
                    && bc
                        .spec
                        .cloud_init
                        .as_ref()
                        .and_then(|c| c.user_data_secret_ref.as_ref())
                        .is_some_and(|r| r.name == name)
            });
            if referenced {
                secrets.insert(&s);
            }
        }
        Desired {
            node_groups: self.node_groups.state(),
            boot_configs,
            secrets,
        }
    }
}

impl Source for Inventory {
    async fn changed(&mut self) {
        if self.last_key.is_none() {
            if self.wait_until_ready().await.is_err() {
                // The watches are gone (shutdown): nothing will change again.
                std::future::pending::<()>().await;
            }
            tracing::info!("caches synced");
            return;
        }
        self.changed.notified().await;
        tokio::time::sleep(DEBOUNCE).await;
    }

    fn load(&mut self) -> Option<Desired> {
        let key = self.input_key();
        if self.last_key.as_ref() == Some(&key) {
            return None;
        }
        self.last_key = Some(key);
        Some(self.desired())
    }
}
