//! nodeboot: a Kubernetes-native network boot service for HPC nodes.
//!
//! The pure core (`crd`, `selector`, `compile`, `resolve`, `render`, `serving`) takes plain
//! data and returns plain data; the edges (`http`, `manifests`, the CLI) feed and serve it.

pub mod cli;
pub mod compile;
pub mod crd;
pub mod explain;
pub mod http;
pub mod labels;
pub mod listeners;
pub mod mac;
pub mod manifests;
pub mod memory;
pub mod metrics;
pub mod operator;
pub mod parallel;
pub mod render;
pub mod resolve;
pub mod secrets;
pub mod selector;
pub mod serving;
pub mod standalone;
pub mod synthetic;
