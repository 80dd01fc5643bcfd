//! Unknown nodes (a MAC in no NodeGroup): resolved against discovery BootConfigs per request,
//! since what they are rendered with (their MAC, their arch) is only known then.

use std::borrow::Cow;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::prepare::{RenderedBoot, prepared_docs, render_boot, render_cloud_init};
use super::{PreparedCloudInit, Snapshot};
use crate::crd::Arch;
use crate::mac::Mac;
use crate::meta::merge_meta;
use crate::render::RenderError;
use crate::render::template::{LabelsRef, NodeView, node_vars};
use crate::resolve::{Outcome, UnknownResolution, resolve_unknown};

#[derive(Debug)]
pub struct UnknownNode {
    pub mac: Mac,
    pub arch: Option<Arch>,
    /// Stands in for a name: the node's MAC as `aa-bb-cc-dd-ee-ff`, used in its `ds=` URL and
    /// as instance-id and hostname.
    pub id: String,
    pub resolution: UnknownResolution,
    pub meta: Map<String, Value>,
    /// The discovery boot, when a discovery BootConfig wins for this node.
    pub boot: Option<Result<RenderedBoot, RenderError>>,
    /// The NoCloud documents once rendered, when small (`DOCUMENTS_KEPT_BYTES`).
    documents: OnceLock<PreparedCloudInit>,
    /// The bytes its meta-data holds: part of its weight in the cache.
    meta_bytes: usize,
}

impl UnknownNode {
    pub fn resolve(snapshot: &Snapshot, mac: Mac, arch: Option<Arch>) -> UnknownNode {
        let resolution = resolve_unknown(&snapshot.discovery, mac, arch);
        let id = mac.hyphenated();
        let bc_meta = resolution.outcome.config().map(|c| &c.meta_data);
        let meta = merge_meta(&[bc_meta], &id, &id);
        let meta_bytes = serde_json::to_vec(&meta).map_or(usize::MAX / 2, |v| v.len());
        let mut node = UnknownNode {
            mac,
            arch,
            id,
            resolution,
            meta,
            boot: None,
            documents: OnceLock::new(),
            meta_bytes,
        };
        if let Outcome::Assigned(config) = &node.resolution.outcome {
            let view = node.view();
            let vars = node_vars(&view);
            let boot = render_boot(config, &view, &vars, &node.id, &snapshot.settings);
            node.boot = Some(boot);
        }
        node
    }

    fn view(&self) -> NodeView<'_> {
        NodeView {
            name: "",
            hostname: &self.id,
            nid: None,
            ip: None,
            mac: Some(self.mac),
            macs: std::slice::from_ref(&self.mac),
            arch: self.arch,
            group: "",
            namespace: self
                .resolution
                .outcome
                .config()
                .map(|c| c.id.namespace.as_str())
                .unwrap_or_default(),
            labels: LabelsRef::Map(&self.resolution.labels),
            meta: &self.meta,
        }
    }

    /// Documents kept with the node when they are this small at most; larger ones are
    /// rendered again for each request, so that what the cache holds stays bounded.
    pub const DOCUMENTS_KEPT_BYTES: usize = 4096;

    /// What this node weighs in the cache of unknown nodes: fixed when it is made.
    pub fn weight(&self) -> u64 {
        let boot = match &self.boot {
            Some(Ok(b)) => {
                b.params.len() + b.script.stored().len() + b.grub.as_ref().map_or(0, |g| g.len())
            }
            _ => 0,
        };
        (boot + self.meta_bytes + Self::DOCUMENTS_KEPT_BYTES + 512) as u64
    }

    /// The node's NoCloud documents: rendered once when they are small, each time otherwise.
    pub fn documents(
        &self,
        snapshot: &Snapshot,
    ) -> Result<Cow<'_, PreparedCloudInit>, RenderError> {
        if let Some(kept) = self.documents.get() {
            return Ok(Cow::Borrowed(kept));
        }
        let config = self.resolution.outcome.config().map(|c| c.as_ref());
        let params = match &self.boot {
            Some(Ok(b)) => Some(b.params.as_str()),
            _ => None,
        };
        let vars = node_vars(&self.view());
        let docs = render_cloud_init(
            config.map(|c| (c, &vars)),
            &self.meta,
            params,
            &snapshot.settings,
        )
        .map(prepared_docs)?;
        let size = docs.meta_data.len()
            + docs.user_data.len()
            + docs.vendor_data.len()
            + docs.network_config.as_ref().map_or(0, |d| d.len());
        if size <= Self::DOCUMENTS_KEPT_BYTES {
            // Another request may have kept them first: the same bytes either way.
            let _ = self.documents.set(docs.clone());
        }
        Ok(Cow::Owned(docs))
    }
}
