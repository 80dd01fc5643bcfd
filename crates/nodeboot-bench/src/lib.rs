//! Benchmark tooling for nodeboot, all of it from the core: the synthetic site, the storm's
//! request list, the tree of expected answers nginx serves, the exact compare against a
//! running server, a constant-body server on nodeboot's HTTP stack, the report of a bench/storm.sh run, and free loopback ports for its
//! servers. The `nodeboot-bench` binary drives them.

pub mod client;
pub mod compare;
pub mod constant_server;
pub mod oha;
pub mod ports;
pub mod report;
pub mod requests;
pub mod site;
pub mod synthetic;
pub mod tree;
