//! Turning a BootConfig into something that can be resolved and rendered many times: its
//! selector compiled, its templates parsed and tried on a sample node, its Secret resolved.
//! A BootConfig that stops compiling keeps being served at its last good version.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::crd::{BootConfig, BootConfigSpec, MetaData, ObjectId, validate_boot_config};
use crate::labels::Labels;
use crate::mac::Mac;
use crate::meta::merge_meta;
use crate::render::RenderError;
use crate::render::params::check_one_line;
use crate::render::template::{
    self, BootView, GRUB_SCRIPT, NETWORK_CONFIG, NodeView, PARAMS, SCRIPT, USER_DATA, VENDOR_DATA,
};
use crate::render::template_set::{Sources, TemplateSet, UNDEFINED_PREFIX};
use crate::secrets::Secrets;
use crate::selector::Selector;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("{0}")]
    Spec(#[from] crate::crd::SpecError),
    #[error("nodeSelector: {0}")]
    Selector(#[from] crate::selector::SelectorError),
    #[error("cloudInit.userDataSecretRef: {0}")]
    Secret(#[from] crate::secrets::SecretError),
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// A BootConfig ready to use. Immutable; shared by every snapshot that serves it.
pub struct CompiledBootConfig {
    pub id: ObjectId,
    /// The generation this was compiled from: older than the object's when a newer one broke.
    pub generation: Option<i64>,
    /// The spec it was compiled from: what status keeps as the last good version.
    pub spec: BootConfigSpec,
    pub priority: i32,
    pub selector: Selector,
    pub kernel: String,
    pub initrd: Option<String>,
    pub auto_params: bool,
    /// The default GRUB config's frame (`render::grub::DefaultConfig`).
    pub grub_default: crate::render::grub::DefaultConfig,
    pub meta_data: MetaData,
    /// user-data from a Secret, served verbatim: never a template, so no template error message
    /// can ever quote secret material.
    pub secret_user_data: Option<String>,
    templates: TemplateSet,
}

impl std::fmt::Debug for CompiledBootConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledBootConfig")
            .field("id", &self.id)
            .field("generation", &self.generation)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl CompiledBootConfig {
    pub fn compile(
        id: &ObjectId,
        generation: Option<i64>,
        spec: &BootConfigSpec,
        secrets: &Secrets,
    ) -> Result<CompiledBootConfig, CompileError> {
        validate_boot_config(spec)?;
        let selector = Selector::compile(spec.node_selector.as_ref())?;
        let ci = spec.cloud_init.clone().unwrap_or_default();
        let secret_user_data = match &ci.user_data_secret_ref {
            Some(r) => Some(secrets.get_text(&id.namespace, &r.name, &r.key)?.to_owned()),
            None => None,
        };
        let templates = TemplateSet::compile(&Sources {
            params: &spec.params,
            script: &spec.script,
            grub_script: &spec.grub_script,
            user_data: ci.user_data.as_deref(),
            vendor_data: ci.vendor_data.as_deref(),
            network_config: ci.network_config.as_deref(),
        })?;
        let compiled = CompiledBootConfig {
            id: id.clone(),
            generation,
            spec: spec.clone(),
            priority: spec.priority,
            selector,
            kernel: spec.kernel.clone(),
            initrd: spec.initrd.clone(),
            auto_params: spec.auto_params,
            grub_default: crate::render::grub::DefaultConfig::new(
                &spec.kernel,
                spec.initrd.as_deref(),
            ),
            meta_data: ci.meta_data,
            secret_user_data,
            templates,
        };
        compiled.try_on_sample_node()?;
        Ok(compiled)
    }

    pub fn has(&self, template: &str) -> bool {
        self.templates.has(template)
    }

    /// Renders one of this BootConfig's templates, checked for its kind of document;
    /// `Ok(None)` when it has none by that name.
    pub fn render(
        &self,
        template: &'static str,
        vars: &minijinja::Value,
    ) -> Result<Option<String>, RenderError> {
        self.templates.render(template, vars)
    }

    /// Renders every template against a made-up node, as OpenCHAMI's metadata service does at
    /// create time, so that broken filters, iPXE-unsafe output and cloud-config that is not
    /// YAML are refused now rather than at boot. Undefined variables are let through here: the
    /// sample node cannot know the site's meta-data keys; they fail per node, visibly.
    fn try_on_sample_node(&self) -> Result<(), RenderError> {
        let macs = [Mac::new([0x02, 0, 0, 0, 0, 0x01])];
        let labels = Labels::new();
        let meta = merge_meta(&[Some(&self.meta_data)], "x0c0s0b0n0", "nid000001");
        let node = NodeView {
            name: "x0c0s0b0n0",
            hostname: "nid000001",
            nid: Some(1),
            ip: None,
            mac: Some(macs[0]),
            macs: &macs,
            arch: None,
            group: "sample",
            namespace: &self.id.namespace,
            labels: template::LabelsRef::Map(&labels),
            meta: &meta,
        };
        let node_vars = template::node_vars(&node);
        let mut boot = BootView {
            config: &self.id.name,
            kernel: &self.kernel,
            initrd: self.initrd.as_deref(),
            params: None,
            server_url: "http://nodeboot.invalid:8080",
        };
        let tolerate_undefined = |r: Result<Option<String>, RenderError>| match r {
            Err(RenderError::Template { message, .. }) if message.starts_with(UNDEFINED_PREFIX) => {
                Ok(None)
            }
            other => other,
        };
        let params =
            tolerate_undefined(self.render(PARAMS, &template::variables(&node_vars, &boot)))?;
        if let Some(p) = &params {
            check_one_line(p)?;
        }
        boot.params = params.as_deref().or(Some(""));
        let vars = template::variables(&node_vars, &boot);
        for tname in [SCRIPT, GRUB_SCRIPT, USER_DATA, VENDOR_DATA, NETWORK_CONFIG] {
            tolerate_undefined(self.render(tname, &vars))?;
        }
        Ok(())
    }
}

/// Where a BootConfig stands after a compile pass.
#[derive(Debug, Clone)]
pub struct ConfigState {
    pub id: ObjectId,
    /// The object's current generation.
    pub generation: Option<i64>,
    /// The version that is served: this generation, the last good one, or none.
    pub served: Option<Arc<CompiledBootConfig>>,
    pub error: Option<CompileError>,
}

impl ConfigState {
    pub fn serves_current(&self) -> bool {
        self.error.is_none() && self.served.is_some()
    }
}

struct CacheEntry {
    spec: BootConfigSpec,
    secret_text: Option<String>,
    compiled: Arc<CompiledBootConfig>,
}

/// Remembers each BootConfig's last good compilation: unchanged BootConfigs are not compiled
/// again, and a broken one keeps being served at the version that last worked.
#[derive(Default)]
pub struct ConfigCompiler {
    last_good: HashMap<ObjectId, CacheEntry>,
}

impl ConfigCompiler {
    pub fn compile_all(&mut self, configs: &[BootConfig], secrets: &Secrets) -> Vec<ConfigState> {
        let mut seen = HashSet::new();
        let mut states = Vec::with_capacity(configs.len());
        for bc in configs {
            let id = ObjectId::of(&bc.metadata);
            let secret_text = bc
                .spec
                .cloud_init
                .as_ref()
                .and_then(|ci| ci.user_data_secret_ref.as_ref())
                .and_then(|r| secrets.get_text(&id.namespace, &r.name, &r.key).ok())
                .map(str::to_owned);
            let generation = bc.metadata.generation;
            let (served, error) = match self.last_good.get(&id) {
                Some(entry) if entry.spec == bc.spec && entry.secret_text == secret_text => {
                    (Some(entry.compiled.clone()), None)
                }
                _ => match CompiledBootConfig::compile(&id, generation, &bc.spec, secrets) {
                    Ok(compiled) => {
                        let compiled = Arc::new(compiled);
                        self.last_good.insert(
                            id.clone(),
                            CacheEntry {
                                spec: bc.spec.clone(),
                                secret_text,
                                compiled: compiled.clone(),
                            },
                        );
                        (Some(compiled), None)
                    }
                    Err(error) => {
                        // A last good version that serves Secret text stays only while the
                        // Secret still says the same: one whose owner deleted it, changed it
                        // or took its label off is revoked, not kept.
                        if self
                            .last_good
                            .get(&id)
                            .is_some_and(|e| !secret_still_says(&id, &e.compiled, secrets))
                        {
                            self.last_good.remove(&id);
                        }
                        if !self.last_good.contains_key(&id)
                            && let Some(entry) = recall(&id, bc, secrets)
                        {
                            self.last_good.insert(id.clone(), entry);
                        }
                        (
                            self.last_good.get(&id).map(|e| e.compiled.clone()),
                            Some(error),
                        )
                    }
                },
            };
            seen.insert(id.clone());
            let state = ConfigState {
                id,
                generation,
                served,
                error,
            };
            states.push(state);
        }
        // A deleted BootConfig is forgotten: recreating it broken must not revive the old one.
        self.last_good.retain(|k, _| seen.contains(k));
        states
    }
}

/// Does the Secret a compiled BootConfig took its user-data from still hold that text?
fn secret_still_says(id: &ObjectId, compiled: &CompiledBootConfig, secrets: &Secrets) -> bool {
    let (Some(text), Some(r)) = (
        &compiled.secret_user_data,
        compiled
            .spec
            .cloud_init
            .as_ref()
            .and_then(|ci| ci.user_data_secret_ref.as_ref()),
    ) else {
        return true;
    };
    secrets.get_text(&id.namespace, &r.name, &r.key) == Ok(text.as_str())
}

/// The last good version a BootConfig's status recorded (by an earlier process), compiled
/// again: what to serve when the process starts while the BootConfig is broken.
fn recall(id: &ObjectId, bc: &BootConfig, secrets: &Secrets) -> Option<CacheEntry> {
    let last_good = bc.status.as_ref()?.last_good.as_ref()?;
    let spec: BootConfigSpec = serde_json::from_value(last_good.spec.clone()).ok()?;
    let compiled = CompiledBootConfig::compile(id, Some(last_good.generation), &spec, secrets);
    match compiled {
        Ok(compiled) => {
            tracing::info!(bootconfig = %id, generation = last_good.generation, "serving the last good version recorded in status");
            Some(CacheEntry {
                spec,
                secret_text: None,
                compiled: Arc::new(compiled),
            })
        }
        Err(e) => {
            tracing::warn!(bootconfig = %id, error = %e, "the last good version recorded in status does not compile either");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(namespace: &str, name: &str) -> ObjectId {
        ObjectId {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn bc(name: &str, spec: BootConfigSpec, generation: i64) -> BootConfig {
        let mut bc = BootConfig::new(name, spec);
        bc.metadata.namespace = Some("hpc".into());
        bc.metadata.generation = Some(generation);
        bc
    }

    fn spec(params: &str) -> BootConfigSpec {
        BootConfigSpec {
            kernel: "http://img/vmlinuz".into(),
            params: params.into(),
            auto_params: true,
            node_selector: Some(Default::default()),
            ..Default::default()
        }
    }

    #[test]
    fn broken_template_keeps_last_good_version() {
        let mut compiler = ConfigCompiler::default();
        let secrets = Secrets::default();
        let states = compiler.compile_all(&[bc("a", spec("console=ttyS0"), 1)], &secrets);
        assert!(states[0].serves_current());
        let states = compiler.compile_all(&[bc("a", spec("console={{ oops"), 2)], &secrets);
        let st = &states[0];
        assert!(st.error.is_some());
        assert_eq!(st.served.as_ref().unwrap().generation, Some(1));
        assert!(
            st.error
                .as_ref()
                .unwrap()
                .to_string()
                .starts_with("template params:")
        );
    }

    #[test]
    fn a_new_process_serves_the_last_good_version_from_status() {
        let mut broken = bc("a", spec("console={{ oops"), 3);
        broken.status = Some(crate::crd::BootConfigStatus {
            last_good: Some(crate::crd::LastGood {
                generation: 2,
                spec: serde_json::to_value(spec("console=ttyS0")).unwrap(),
            }),
            ..Default::default()
        });
        let mut compiler = ConfigCompiler::default();
        let states = compiler.compile_all(&[broken.clone()], &Secrets::default());
        let served = states[0]
            .served
            .as_ref()
            .expect("the recorded version is served");
        assert_eq!(served.generation, Some(2));
        assert!(states[0].error.is_some());
        // Once fixed, the new generation is served.
        let fixed = bc("a", spec("console=ttyS1"), 4);
        let states = compiler.compile_all(&[fixed], &Secrets::default());
        assert_eq!(states[0].served.as_ref().unwrap().generation, Some(4));
    }

    #[test]
    fn a_revoked_secret_is_not_served_from_the_last_good_version() {
        let secret = |labelled: bool, text: &str| {
            let mut s = k8s_openapi::api::core::v1::Secret::default();
            s.metadata.namespace = Some("hpc".into());
            s.metadata.name = Some("creds".into());
            if labelled {
                s.metadata.labels =
                    Some([("nodeboot.io/user-data".to_owned(), "true".to_owned())].into());
            }
            s.string_data = Some([("user-data".to_owned(), text.to_owned())].into());
            s
        };
        let mut with_ref = spec("console=ttyS0");
        with_ref.cloud_init = Some(crate::crd::CloudInit {
            user_data_secret_ref: Some(crate::crd::SecretKeyRef {
                name: "creds".into(),
                key: "user-data".into(),
            }),
            ..Default::default()
        });
        let mut secrets = Secrets::default();
        secrets.insert(&secret(true, "#cloud-config\npassword: old\n"));
        let mut compiler = ConfigCompiler::default();
        let states = compiler.compile_all(&[bc("a", with_ref.clone(), 1)], &secrets);
        assert!(states[0].serves_current());
        // The owner takes the label off: nothing of it is served any more.
        let mut revoked = Secrets::default();
        revoked.insert(&secret(false, "#cloud-config\npassword: old\n"));
        let states = compiler.compile_all(&[bc("a", with_ref.clone(), 1)], &revoked);
        assert!(states[0].error.is_some());
        assert!(states[0].served.is_none(), "revoked Secret still served");
        // A template error while the Secret is unchanged keeps the last good version.
        let mut compiler = ConfigCompiler::default();
        compiler.compile_all(&[bc("a", with_ref.clone(), 1)], &secrets);
        let mut broken = with_ref;
        broken.params = "{{ oops".into();
        let states = compiler.compile_all(&[bc("a", broken, 2)], &secrets);
        assert_eq!(states[0].served.as_ref().unwrap().generation, Some(1));
    }

    #[test]
    fn new_broken_config_serves_nothing() {
        let mut compiler = ConfigCompiler::default();
        let states = compiler.compile_all(&[bc("a", spec("{% if %}"), 1)], &Secrets::default());
        assert!(states[0].served.is_none());
    }

    #[test]
    fn sample_render_catches_multiline_params_and_bad_cloud_config() {
        let secrets = Secrets::default();
        let multi = spec("a\nkernel http://evil");
        assert!(CompiledBootConfig::compile(&id("ns", "a"), None, &multi, &secrets).is_err());
        let mut bad_yaml = spec("");
        bad_yaml.cloud_init = Some(crate::crd::CloudInit {
            user_data: Some("#cloud-config\nruncmd: [a\n".into()),
            ..Default::default()
        });
        let err =
            CompiledBootConfig::compile(&id("ns", "a"), None, &bad_yaml, &secrets).unwrap_err();
        assert!(err.to_string().contains("user-data"), "{err}");
        // A key only the real site has is not an error at compile time.
        let site_key = spec("log={{ meta.syslog_aggregator }}");
        assert!(CompiledBootConfig::compile(&id("ns", "a"), None, &site_key, &secrets).is_ok());
    }

    #[test]
    fn missing_secret_is_an_error_naming_it() {
        let mut s = spec("");
        s.cloud_init = Some(crate::crd::CloudInit {
            user_data_secret_ref: Some(crate::crd::SecretKeyRef {
                name: "creds".into(),
                key: "user-data".into(),
            }),
            ..Default::default()
        });
        let err = CompiledBootConfig::compile(&id("hpc", "a"), None, &s, &Secrets::default())
            .unwrap_err();
        assert!(err.to_string().contains("hpc/creds"), "{err}");
    }
}
