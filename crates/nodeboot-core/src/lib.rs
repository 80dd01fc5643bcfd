//! nodeboot's pure core: plain data in, plain data out. No async runtime, HTTP stack, CLI
//! parser or Kubernetes client: the edges (HTTP, operator, manifest folder, CLI) feed it and
//! serve what it returns.
//!
//! Modules depend one way, from the domain up:
//! `crd`, `labels`, `mac`, `selector`, `secrets`, `meta` (the domain) ->
//! `render` (templates, iPXE, params, cloud-init documents) -> `compile` (a BootConfig made
//! ready) -> `resolve` (which BootConfig each node gets) -> `report` (status wording) ->
//! `snapshot` (build, index, `answer()`) -> `explain`.

pub mod compile;
pub mod crd;
pub mod explain;
pub mod labels;
pub mod mac;
pub mod meta;
pub mod parallel;
pub mod render;
pub mod report;
pub mod resolve;
pub mod secrets;
pub mod selector;
pub mod snapshot;
