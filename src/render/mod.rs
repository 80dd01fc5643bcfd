//! Rendering: from a resolved node and its BootConfig to the exact bytes nodes are served.

pub mod cloud_init;
pub mod ipxe;
pub mod params;
pub mod template;

use crate::compile::CompiledBootConfig;
use ipxe::{Asker, WaitReason};
use params::{AutoParams, ParamsError, check_one_line, with_auto_params};
use template::{
    BootView, NETWORK_CONFIG, NodeVars, NodeView, PARAMS, SCRIPT, USER_DATA, VENDOR_DATA,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("template {template}: {message}")]
    Template {
        template: &'static str,
        message: String,
    },
    #[error("params: {0}")]
    Params(#[from] ParamsError),
}

/// Where nodes reach nodeboot, and how long a waiting node sleeps at most.
#[derive(Debug, Clone)]
pub struct RenderSettings {
    /// Advertised base URL of the boot listener, without a trailing slash.
    pub server_url: String,
    pub retry_max_delay: u32,
}

/// A node's boot script for one asking MAC.
#[derive(Debug, Clone)]
pub struct BootRender {
    pub kernel: String,
    pub initrd: Option<String>,
    pub params: String,
    /// The whole script for the first request (`retry=0`).
    pub script: String,
    /// Length of the part before `:boot_retry`; the tail differs with `retry`. `None` for a
    /// BootConfig's own `script`, which is served as written.
    pub head_len: Option<usize>,
}

/// The NoCloud documents of a node.
#[derive(Debug, Clone, Default)]
pub struct CloudInitDocs {
    pub meta_data: String,
    pub user_data: String,
    pub vendor_data: String,
    pub network_config: Option<String>,
}

/// Renders the boot script of `node` under `config`, as asked by `mac`. `seed_id` names the
/// node in its `ds=` URL (node name, or MAC for an unknown node).
pub fn render_boot(
    config: &CompiledBootConfig,
    node: &NodeView<'_>,
    vars: &NodeVars,
    seed_id: &str,
    settings: &RenderSettings,
) -> Result<BootRender, RenderError> {
    let mut boot = BootView {
        config: &config.name,
        kernel: &config.kernel,
        initrd: config.initrd.as_deref(),
        params: None,
        server_url: &settings.server_url,
    };
    let raw = config
        .render(PARAMS, &template::variables(vars, &boot))?
        .unwrap_or_default();
    check_one_line(&raw)?;
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
    let (script, head_len) = match config.render(SCRIPT, &template::variables(vars, &boot))? {
        Some(custom) => (custom, None),
        None => {
            let mut script = ipxe::default_head(&config.kernel, config.initrd.as_deref(), &params);
            let head_len = script.len();
            let asker = match node.mac {
                Some(mac) => Asker::Mac(mac),
                None => Asker::Name(node.name),
            };
            ipxe::retry_tail(
                &mut script,
                WaitReason::BootFailed,
                &settings.server_url,
                asker,
                0,
                settings.retry_max_delay,
            );
            (script, Some(head_len))
        }
    };
    Ok(BootRender {
        kernel: config.kernel.clone(),
        initrd: config.initrd.clone(),
        params,
        script,
        head_len,
    })
}

/// Renders the NoCloud documents of a node whose merged meta-data is `meta`; without a
/// BootConfig only meta-data has content.
pub fn render_cloud_init(
    config: Option<(&CompiledBootConfig, &NodeVars)>,
    meta: &serde_json::Map<String, serde_json::Value>,
    boot_params: Option<&str>,
    settings: &RenderSettings,
) -> Result<CloudInitDocs, RenderError> {
    let meta_data = cloud_init::meta_data_yaml(meta);
    let Some((config, vars)) = config else {
        return Ok(CloudInitDocs {
            meta_data,
            ..Default::default()
        });
    };
    let boot = BootView {
        config: &config.name,
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
    Ok(CloudInitDocs {
        meta_data,
        user_data,
        vendor_data: config.render(VENDOR_DATA, &vars)?.unwrap_or_default(),
        network_config: config.render(NETWORK_CONFIG, &vars)?,
    })
}

/// The script for a node that cannot boot yet: wait, then ask again.
pub fn wait_script(
    reason: WaitReason,
    asker: Asker<'_>,
    retry: u32,
    settings: &RenderSettings,
) -> String {
    ipxe::wait_script(
        reason,
        &settings.server_url,
        asker,
        retry,
        settings.retry_max_delay,
    )
}

/// The default script with the retry tail for round `retry` (the pre-rendered script is for 0).
pub fn with_retry_tail(
    head: &str,
    asker: Asker<'_>,
    retry: u32,
    settings: &RenderSettings,
) -> String {
    let mut script = String::with_capacity(head.len() + 200);
    script.push_str(head);
    ipxe::retry_tail(
        &mut script,
        WaitReason::BootFailed,
        &settings.server_url,
        asker,
        retry,
        settings.retry_max_delay,
    );
    script
}
