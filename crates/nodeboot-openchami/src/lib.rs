//! OpenCHAMI data onto nodeboot: the exports of BSS (etcd and Postgres back ends), SMD, the
//! cloud-init server, boot-service and metadata-service, and the `ochami discover static`
//! inventory, read into NodeGroups, BootConfigs and Secrets with a report of every object
//! (`mapping`); and what the source would serve each node, to check the result against
//! (`expected`, `verify`). Pure: the `nodeboot import` edge fetches and writes.

pub mod expected;
pub mod formats;
pub mod mapping;
pub mod report;
pub mod site;
pub mod verify;

pub use formats::{FormatError, Input, parse};
pub use mapping::{Imported, Options, import};
pub use report::Report;
pub use site::Source;
