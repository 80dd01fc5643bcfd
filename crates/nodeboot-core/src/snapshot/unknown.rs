//! Unknown nodes (a MAC in no NodeGroup): resolved against discovery BootConfigs per request,
//! since what they are rendered with (their MAC, their arch) is only known then.

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
    /// The NoCloud documents, rendered when first asked for.
    documents: OnceLock<Result<PreparedCloudInit, RenderError>>,
}

impl UnknownNode {
    pub fn resolve(snapshot: &Snapshot, mac: Mac, arch: Option<Arch>) -> UnknownNode {
        let resolution = resolve_unknown(&snapshot.discovery, mac, arch);
        let id = mac.hyphenated();
        let bc_meta = resolution.outcome.config().map(|c| &c.meta_data);
        let meta = merge_meta(&[bc_meta], &id, &id);
        let mut node = UnknownNode {
            mac,
            arch,
            id,
            resolution,
            meta,
            boot: None,
            documents: OnceLock::new(),
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

    /// The node's NoCloud documents, rendered once.
    pub fn documents(&self, snapshot: &Snapshot) -> &Result<PreparedCloudInit, RenderError> {
        self.documents.get_or_init(|| {
            let config = self.resolution.outcome.config().map(|c| c.as_ref());
            let params = match &self.boot {
                Some(Ok(b)) => Some(b.params.as_str()),
                _ => None,
            };
            let vars = node_vars(&self.view());
            render_cloud_init(
                config.map(|c| (c, &vars)),
                &self.meta,
                params,
                &snapshot.settings,
            )
            .map(prepared_docs)
        })
    }
}
