//! The two custom resources of nodeboot (`nodeboot.io/v1alpha1`) and their schemas.

mod boot_config;
mod node_group;
mod schema;
mod validate;

pub use boot_config::{
    BootConfig, BootConfigSpec, BootConfigStatus, CloudInit, DiscoveredMac, LastGood, Rollout,
    SecretKeyRef,
};
pub use node_group::{
    Arch, NodeGroup, NodeGroupSpec, NodeGroupStatus, NodePhase, NodeSpec, NodeStatus,
};
pub use validate::{
    SpecError, validate_boot_config, validate_namespace, validate_node_group, validate_object_name,
};

use kube::CustomResourceExt;
use serde::Serialize;

/// Free-form meta-data: any JSON value per key, merged into cloud-init meta-data.
pub type MetaData = std::collections::BTreeMap<String, serde_json::Value>;

/// Which object: namespace and name. Shared by the compiled BootConfig, its compile state and
/// its status report, instead of each repeating both fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectId {
    pub namespace: String,
    pub name: String,
}

impl ObjectId {
    pub fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectId {
        ObjectId {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Both CRDs as one multi-document YAML stream, exactly what `crds/` holds.
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for crd in [NodeGroup::crd(), BootConfig::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}
