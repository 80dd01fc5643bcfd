//! Rendering a resolved node under its BootConfig: everything the node can be asked, made once
//! when the inputs change, so that a request is a lookup.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{NodeBoot, PreparedBoot, PreparedCloudInit, RenderFailure, ServedNode, Snapshot};
use crate::compile::CompiledBootConfig;
use crate::crd::NodePhase;
use crate::mac::Mac;
use crate::render::ipxe::{self, Script, WaitReason};
use crate::render::params::{AutoParams, check_one_line, with_auto_params};
use crate::render::template::{
    self, BootView, GRUB_SCRIPT, LabelsRef, NETWORK_CONFIG, NodeVars, NodeView, PARAMS, SCRIPT,
    USER_DATA, VENDOR_DATA,
};
use crate::render::{RenderError, RenderSettings, cloud_init};
use crate::resolve::{Outcome, ResolvedNode};

/// The most a node's merged meta-data may serialize to. Each node holds its own copy, so a
/// large meta-data layer shared by many nodes would multiply; nothing a node boots with needs
/// more.
pub const MAX_META_DATA_BYTES: usize = 64 * 1024;

/// A node's boot for one asking MAC, as rendered.
#[derive(Debug, Clone)]
pub struct RenderedBoot {
    pub params: String,
    /// How many leading bytes of `params` the BootConfig's own `params` gave (what BSS calls
    /// the stored params); autoParams only ever append after them.
    pub stored_len: usize,
    pub script: Script,
    /// The node's own GRUB config, when its BootConfig has a `grubScript`; the default one is
    /// put together per request (`render::grub::DefaultConfig`). Boxed: most nodes have none.
    pub grub: Option<Box<Bytes>>,
}

/// The NoCloud documents of a node, as rendered.
#[derive(Debug, Clone, Default)]
pub struct RenderedDocs {
    pub meta_data: String,
    pub user_data: String,
    pub vendor_data: String,
    pub network_config: Option<String>,
}

/// Renders the boot of `node` under `config`, as asked by `node.mac`. `seed_id` names the node
/// in its `ds=` URL (node name, or MAC for an unknown node).
pub fn render_boot(
    config: &CompiledBootConfig,
    node: &NodeView<'_>,
    vars: &NodeVars,
    seed_id: &str,
    settings: &RenderSettings,
) -> Result<RenderedBoot, RenderError> {
    let mut boot = BootView {
        config: &config.id.name,
        kernel: &config.kernel,
        initrd: config.initrd.as_deref(),
        params: None,
        server_url: &settings.server_url,
    };
    let raw = config
        .render(PARAMS, &template::variables(vars, &boot))?
        .unwrap_or_default();
    check_one_line(&raw)?;
    let stored_len = raw.trim().len();
    let params = if config.auto_params {
        let seed_url = format!("{}/cloud-init/{seed_id}/", settings.server_url);
        with_auto_params(
            &raw,
            &AutoParams {
                mac: node.mac,
                xname: (!node.name.is_empty()).then_some(node.name),
                nid: node.nid,
                seed_url: Some(&seed_url),
            },
        )
    } else {
        raw.trim().to_owned()
    };
    boot.params = Some(&params);
    let vars = template::variables(vars, &boot);
    let script = match config.render(SCRIPT, &vars)? {
        Some(custom) => Script::Custom(exact(custom)),
        None => Script::Default(exact(ipxe::default_head(
            &config.kernel,
            config.initrd.as_deref(),
            &params,
        ))),
    };
    let grub = config
        .render(GRUB_SCRIPT, &vars)?
        .map(|custom| Box::new(exact(custom)));
    Ok(RenderedBoot {
        params,
        stored_len,
        script,
        grub,
    })
}

/// Renders the NoCloud documents of a node whose merged meta-data is `meta`; without a
/// BootConfig only meta-data has content.
pub fn render_cloud_init(
    config: Option<(&CompiledBootConfig, &NodeVars)>,
    meta: &Map<String, Value>,
    boot_params: Option<&str>,
    settings: &RenderSettings,
) -> Result<RenderedDocs, RenderError> {
    let meta_data = cloud_init::meta_data_yaml(meta);
    if meta_data.len() > MAX_META_DATA_BYTES {
        return Err(RenderError::Template {
            template: "meta-data",
            message: format!(
                "{} bytes is more than the {MAX_META_DATA_BYTES} a node's meta-data may have; \
                 keep large data out of meta-data",
                meta_data.len()
            ),
        });
    }
    let Some((config, vars)) = config else {
        return Ok(RenderedDocs {
            meta_data,
            ..Default::default()
        });
    };
    let boot = BootView {
        config: &config.id.name,
        kernel: &config.kernel,
        initrd: config.initrd.as_deref(),
        params: boot_params,
        server_url: &settings.server_url,
    };
    let vars = template::variables(vars, &boot);
    let user_data = match &config.secret_user_data {
        Some(verbatim) => verbatim.clone(),
        None => config.render(USER_DATA, &vars)?.unwrap_or_default(),
    };
    Ok(RenderedDocs {
        meta_data,
        user_data,
        vendor_data: config.render(VENDOR_DATA, &vars)?.unwrap_or_default(),
        network_config: config.render(NETWORK_CONFIG, &vars)?,
    })
}

fn view<'a>(
    node: &'a ResolvedNode,
    mac: Option<Mac>,
    meta: &'a Map<String, Value>,
) -> NodeView<'a> {
    NodeView {
        name: node.name(),
        hostname: node.hostname(),
        nid: node.nid(),
        ip: node.ip,
        mac,
        macs: &node.macs,
        arch: node.arch(),
        group: node.group_name(),
        namespace: &node.namespace,
        labels: LabelsRef::Group {
            group: &node.group,
            index: node.index,
        },
        meta,
    }
}

/// What the last snapshot rendered, found by NodeGroup object and position in it.
#[derive(Default)]
pub struct Rendered<'a> {
    by_node: HashMap<(usize, usize), &'a ServedNode, foldhash::fast::RandomState>,
}

impl<'a> Rendered<'a> {
    /// The nodes of `previous`, if it was rendered with `settings`.
    pub fn of(previous: &'a Snapshot, settings: &RenderSettings) -> Rendered<'a> {
        if previous.settings != *settings {
            return Rendered::default();
        }
        let by_node = previous
            .nodes()
            .iter()
            .map(|n| ((Arc::as_ptr(&n.node.group) as usize, n.node.index), n))
            .collect();
        Rendered { by_node }
    }

    /// The last rendering of `node`, if every input of it is the same object as then: the
    /// NodeGroup (a changed NodeGroup is a new object, so is a recompiled BootConfig), the
    /// node's place in it and the BootConfig it boots. Comparing the objects' addresses is
    /// sound: the previous snapshot holds both, so neither address can have been reused.
    fn reusable(&self, node: &ResolvedNode) -> Option<&'a ServedNode> {
        let config = node.outcome.config()?;
        let old = self
            .by_node
            .get(&(Arc::as_ptr(&node.group) as usize, node.index))?;
        match &old.boot {
            NodeBoot::Boot { config: then, .. }
                if Arc::ptr_eq(then, config) && Arc::ptr_eq(&old.node.group, &node.group) =>
            {
                Some(old)
            }
            _ => None,
        }
    }
}

/// Renders every node, spread over the machine's cores: rendering is the bulk of a rebuild and
/// each node's is independent. Order is kept. A node whose inputs are the objects its last
/// rendering had keeps that rendering: a change to one BootConfig or one NodeGroup renders
/// that one's nodes only.
pub fn prepare_nodes(
    nodes: Vec<ResolvedNode>,
    settings: &RenderSettings,
    previous: &Rendered<'_>,
) -> Vec<ServedNode> {
    crate::parallel::map_in_order(nodes, 2048, |n| match previous.reusable(&n) {
        Some(old) => ServedNode {
            node: n,
            boot: old.boot.clone(),
            cloud_init: old.cloud_init.clone(),
            render_error: None,
        },
        None => prepare_node(n, settings),
    })
}

/// Renders everything a node can be asked, once, now.
fn prepare_node(mut node: ResolvedNode, settings: &RenderSettings) -> ServedNode {
    let meta = node.meta();
    let rendered = match &node.outcome {
        Outcome::Assigned(config) => prepare_assigned(&node, config, &meta, settings),
        Outcome::Unassigned(_) | Outcome::Conflict(_) => {
            let reason = if node.outcome.phase() == NodePhase::Conflict {
                WaitReason::Conflict
            } else {
                WaitReason::Unassigned
            };
            render_cloud_init(None, &meta, None, settings)
                .map(|docs| (NodeBoot::Wait(reason), prepared_docs(docs)))
        }
    };
    match rendered {
        Ok((boot, cloud_init)) => ServedNode {
            node,
            boot,
            cloud_init,
            render_error: None,
        },
        Err(err) => {
            let config = node
                .outcome
                .config()
                .map(|c| c.id.name.clone())
                .unwrap_or_default();
            let message = if config.is_empty() {
                format!("its cloud-init data cannot be served: {err}")
            } else {
                format!("BootConfig {config} failed to render for this node: {err}")
            };
            node.outcome = Outcome::Unassigned(message);
            // Its meta-data is still served, as for any node without a BootConfig: the
            // inventory's layers, not the BootConfig's (the report shows the same).
            let cloud_init = render_cloud_init(None, &node.meta(), None, settings)
                .map(prepared_docs)
                .unwrap_or_default();
            ServedNode {
                node,
                boot: NodeBoot::Wait(WaitReason::RenderFailed),
                cloud_init,
                render_error: Some(Box::new(RenderFailure {
                    config,
                    error: err.to_string(),
                })),
            }
        }
    }
}

fn prepare_assigned(
    node: &ResolvedNode,
    config: &Arc<CompiledBootConfig>,
    meta: &Map<String, Value>,
    settings: &RenderSettings,
) -> Result<(NodeBoot, PreparedCloudInit), RenderError> {
    let mut per_mac = Vec::with_capacity(node.macs.len());
    // The first MAC's variables serve its boot script and the cloud-init documents.
    let first_view = view(node, node.macs.first().copied(), meta);
    let first_vars = template::node_vars(&first_view);
    for (i, mac) in node.macs.iter().enumerate() {
        let rendered = if i == 0 {
            render_boot(config, &first_view, &first_vars, node.name(), settings)?
        } else {
            let v = view(node, Some(*mac), meta);
            render_boot(config, &v, &template::node_vars(&v), node.name(), settings)?
        };
        // The params are a stretch of the default script's kernel line: share its bytes.
        let params = match &rendered.script {
            Script::Default(head) => match find(head, rendered.params.as_bytes()) {
                Some(at) => head.slice(at..at + rendered.params.len()),
                None => exact(rendered.params),
            },
            Script::Custom(_) => exact(rendered.params),
        };
        per_mac.push(PreparedBoot {
            mac: *mac,
            stored_len: rendered.stored_len,
            params,
            script: rendered.script,
            grub: rendered.grub,
        });
    }
    let params = per_mac.first().map(PreparedBoot::params);
    let docs = render_cloud_init(Some((config, &first_vars)), meta, params, settings)?;
    Ok((
        NodeBoot::Boot {
            config: config.clone(),
            per_mac,
        },
        prepared_docs(docs),
    ))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Documents that come out the same for many nodes (vendor-data without per-node variables,
/// say) share one allocation.
pub fn intern_documents(nodes: &mut [ServedNode]) {
    let mut seen: HashSet<Bytes, foldhash::fast::RandomState> = HashSet::default();
    let mut intern = |doc: &mut Bytes| {
        if doc.is_empty() {
            return;
        }
        match seen.get(doc) {
            Some(existing) => *doc = existing.clone(),
            None => {
                seen.insert(doc.clone());
            }
        }
    };
    for n in nodes {
        intern(&mut n.cloud_init.user_data);
        intern(&mut n.cloud_init.vendor_data);
        if let Some(doc) = n.cloud_init.network_config.as_mut() {
            intern(doc);
        }
    }
}

/// Bytes that hold no spare capacity: rendered strings grow by doubling, and with 100,000
/// nodes the slack would be a third of the snapshot.
fn exact(s: String) -> Bytes {
    Bytes::from(s.into_boxed_str().into_boxed_bytes())
}

pub fn prepared_docs(docs: RenderedDocs) -> PreparedCloudInit {
    PreparedCloudInit {
        meta_data: exact(docs.meta_data),
        user_data: exact(docs.user_data),
        vendor_data: exact(docs.vendor_data),
        network_config: docs.network_config.map(exact),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nodes_meta_data_is_capped() {
        let settings = RenderSettings {
            server_url: "http://s".into(),
            retry_max_delay: 60,
        };
        let small: Map<String, Value> = [("k".to_owned(), Value::from("v"))].into_iter().collect();
        assert!(render_cloud_init(None, &small, None, &settings).is_ok());
        let large: Map<String, Value> = [("k".to_owned(), Value::from("v".repeat(70_000)))]
            .into_iter()
            .collect();
        let err = render_cloud_init(None, &large, None, &settings).unwrap_err();
        assert!(err.to_string().contains("65536"), "{err}");
    }
}
