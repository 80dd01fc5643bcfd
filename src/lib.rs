//! nodeboot, the binary's crate: the edges around `nodeboot-core`.
//!
//! - `cli`: the command line (the only module that knows clap), `app`: what each command does,
//!   `error`: the one error `main` reports.
//! - `runtime`: one rebuild loop over a `Source` of inputs, the listeners, shutdown.
//! - `manifests`: the manifest folder (`nodeboot serve`), a `Source`.
//! - `operator`: the cluster's watches (a `Source`), leader election, the status writer.
//! - `http`: the boot and admin listeners; handlers translate `Snapshot::answer` to HTTP.
//! - `import`: `nodeboot import`, reading OpenCHAMI sources for `nodeboot-openchami`.
//! - `tracking`: what each node last fetched and when it phoned home; unknown MACs that asked.
//! - `metrics`, `memory`, `logging`: Prometheus metrics, giving memory back after a rebuild,
//!   log set-up (control characters escaped).
//! - `webhook`: the validating admission webhook of `nodeboot run` and its certificates.

pub mod adopt;
pub mod app;
pub mod cli;
pub mod error;
pub mod http;
pub mod import;
pub mod logging;
pub mod manifests;
pub mod memory;
pub mod metrics;
pub mod operator;
pub mod runtime;
pub mod tracking;
pub mod webhook;
