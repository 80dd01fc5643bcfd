//! nodeboot, the binary's crate: the edges around `nodeboot-core`.
//!
//! - `cli`: the command line (the only module that knows clap), `app`: what each command does,
//!   `error`: the one error `main` reports.
//! - `runtime`: one rebuild loop over a `Source` of inputs, the listeners, shutdown.
//! - `manifests`: the manifest folder (`nodeboot serve`), a `Source`.
//! - `operator`: the cluster's watches (a `Source`), leader election, the status writer.
//! - `http`: the boot and admin listeners; handlers translate `Snapshot::answer` to HTTP.
//! - `metrics`, `memory`, `logging`: Prometheus metrics, giving memory back after a rebuild,
//!   log set-up (control characters escaped).
//! - `webhook`: the validating admission webhook of `nodeboot run` and its certificates.

pub mod app;
pub mod cli;
pub mod error;
pub mod http;
pub mod logging;
pub mod manifests;
pub mod memory;
pub mod metrics;
pub mod operator;
pub mod runtime;
pub mod webhook;
