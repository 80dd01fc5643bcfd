//! Unknown nodes (a MAC in no NodeGroup): resolved against discovery BootConfigs per request,
//! since what they are rendered with (their MAC, their arch) is only known then.

use serde_json::Map;

use super::Snapshot;
use crate::crd::Arch;
use crate::mac::Mac;
use crate::render::cloud_init::merge_meta;
use crate::render::template::{LabelsRef, NodeView, node_vars};
use crate::render::{BootRender, CloudInitDocs, RenderError, render_boot, render_cloud_init};
use crate::resolve::{Outcome, UnknownResolution, resolve_unknown};

pub struct UnknownNode {
    pub mac: Mac,
    pub arch: Option<Arch>,
    /// Stands in for a name: the node's MAC as `aa-bb-cc-dd-ee-ff`, used in its `ds=` URL and
    /// as instance-id and hostname.
    pub id: String,
    pub resolution: UnknownResolution,
    pub meta: Map<String, serde_json::Value>,
}

impl UnknownNode {
    pub fn resolve(snapshot: &Snapshot, mac: Mac, arch: Option<Arch>) -> UnknownNode {
        let resolution = resolve_unknown(&snapshot.discovery, mac, arch);
        let id = mac.hyphenated();
        let bc_meta = resolution.outcome.config().map(|c| &c.meta_data);
        let meta = merge_meta(&[bc_meta], &id, &id);
        UnknownNode {
            mac,
            arch,
            id,
            resolution,
            meta,
        }
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
                .map(|c| c.namespace.as_str())
                .unwrap_or_default(),
            labels: LabelsRef::Map(&self.resolution.labels),
            meta: &self.meta,
        }
    }

    /// The discovery boot, when a discovery BootConfig wins for this node.
    pub fn boot(&self, snapshot: &Snapshot) -> Option<Result<BootRender, RenderError>> {
        match &self.resolution.outcome {
            Outcome::Assigned(config) => {
                let view = self.view();
                let vars = node_vars(&view);
                Some(render_boot(
                    config,
                    &view,
                    &vars,
                    &self.id,
                    &snapshot.settings,
                ))
            }
            _ => None,
        }
    }

    pub fn cloud_init(&self, snapshot: &Snapshot) -> Result<CloudInitDocs, RenderError> {
        let config = self.resolution.outcome.config().map(|c| c.as_ref());
        let params = match self.boot(snapshot) {
            Some(Ok(b)) => Some(b.params),
            _ => None,
        };
        let vars = node_vars(&self.view());
        render_cloud_init(
            config.map(|c| (c, &vars)),
            &self.meta,
            params.as_deref(),
            &snapshot.settings,
        )
    }
}
