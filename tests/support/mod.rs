//! What the integration tests share: the real `nodeboot` binary on loopback ports, manifest
//! directories, waiting for a condition, processes that never outlive their test, and the test
//! API server. Each test binary uses a part of it.
#![allow(dead_code, unused_imports)]

pub mod apiserver;
pub mod manifests;
pub mod nodeboot;
pub mod openchami;
pub mod process;
pub mod qemu;
pub mod wait;

pub use manifests::{examples, manifest_dir, rewrite};
pub use nodeboot::{Nodeboot, free_port, get};

/// The repository root: manifests, charts, scripts and examples are found from here.
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
