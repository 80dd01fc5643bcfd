//! The building blocks of what nodes are served, independent of any BootConfig: the template
//! environment and its variables, iPXE scripts, kernel parameters and cloud-init documents.
//! A compiled BootConfig (`compile`) and the snapshot (`snapshot`) put them together.

pub mod cloud_init;
pub mod grub;
pub mod ipxe;
mod memo;
pub mod params;
mod settings;
pub mod shape;
pub mod template;
pub mod template_set;

pub use settings::RenderSettings;

use params::ParamsError;

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
