//! `/firmware/{file}`: boot files that firmware fetches by URL, served from `--firmware-dir`,
//! so that a site needs no other web server for them. UEFI HTTP Boot loads an EFI binary
//! (Debian's `snponly.efi`, say) from the URL its DHCP server hands out; GRUB and iPXE can
//! fetch from here too. tower-http's `ServeDir` serves only files under the directory (it
//! refuses `..` and absolute paths), answers Range requests and HEAD, and sets the length;
//! the boot listener's title-case headers apply as to every answer.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::routing::get_service;
use tower_http::services::ServeDir;

use super::instrument::instrumented;
use crate::metrics::{Endpoint, Metrics};

/// The boot router with `/firmware/` serving `dir`, when one is set.
pub fn mount(router: Router, dir: Option<&Path>, metrics: &Arc<Metrics>) -> Router {
    let Some(dir) = dir else {
        return router;
    };
    let files = get_service(ServeDir::new(dir).append_index_html_on_directories(false));
    router.nest_service(
        "/firmware",
        instrumented((metrics.clone(), Endpoint::firmware), files),
    )
}
