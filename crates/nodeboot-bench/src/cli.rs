//! The `nodeboot-bench` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use nodeboot_core::render::RenderSettings;

#[derive(Debug, Parser)]
#[command(
    name = "nodeboot-bench",
    about = "Benchmark tooling for nodeboot: the synthetic site, the boot-storm requests, the tree nginx serves, the exact compare, the storm report"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the synthetic site (NodeGroups and BootConfigs) as manifests for `nodeboot serve`.
    Site {
        #[command(flatten)]
        site: SiteArgs,
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the storm's requests (PATH, tree FILE, node IP per line): what bench/storm.lua
    /// walks and `compare` checks.
    Requests {
        #[command(flatten)]
        site: SiteArgs,
        /// File to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write, for every storm request, the exact body nodeboot answers, as files nginx serves
    /// under the same URLs (bootscript/MAC, cloud-init/NAME/DOC).
    Tree {
        #[command(flatten)]
        site: SiteArgs,
        #[command(flatten)]
        render: RenderArgs,
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Fetch requests from a running server and compare every status and body with the tree;
    /// prints `COMPARE {json}` and exits 1 on any difference or error.
    Compare {
        /// The requests file (`nodeboot-bench requests`).
        #[arg(long)]
        requests: PathBuf,
        /// The tree of expected bodies (`nodeboot-bench tree`).
        #[arg(long)]
        tree: PathBuf,
        /// The server, HOST:PORT (an address: the bench runs on loopback).
        #[arg(long)]
        server: SocketAddr,
        /// Name of this check in the output.
        #[arg(long, default_value = "")]
        label: String,
        /// Every request once; otherwise the first, the last and --sample at random.
        #[arg(long)]
        all: bool,
        /// How many requests at random, without --all.
        #[arg(long, default_value_t = 1000)]
        sample: usize,
        /// With --all: send the requests in a random order.
        #[arg(long)]
        shuffle: bool,
        /// Seed of the sample and the shuffle.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Keep-alive connections, one request at a time on each.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Send each node's address as X-Forwarded-For (nodeboot's source check on).
        #[arg(long)]
        forwarded_for: bool,
        /// Seconds to wait for a whole answer before counting it as an error.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Serve one constant body to every request on the HTTP stack nodeboot uses (tokio, hyper's
    /// HTTP/1.1 server): the ceiling of that stack on this machine, a baseline for the storm.
    ConstantServer {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// The body every answer carries (e.g. a typical bootscript from the tree).
        #[arg(long)]
        body_file: PathBuf,
        /// Runtime worker threads (nodeboot's default: one per core).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Print oha's JSON summary (`oha --output-format json`) as the RESULT line wrk's script
    /// prints, for results.tsv.
    OhaResult {
        /// The file oha wrote.
        json: PathBuf,
    },
    /// Print COUNT free TCP ports on 127.0.0.1, space-separated, for the servers under test.
    FreePorts {
        #[arg(default_value_t = 1)]
        count: usize,
    },
    /// Print the Markdown summary of a bench/storm.sh results directory.
    Report {
        /// The run's --out directory.
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct SiteArgs {
    /// Number of nodes (in cabinets of 5000).
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Also this many MACs no NodeGroup lists, each asking for its bootscript once (the
    /// discovery storm; their tree files are under discovery/).
    #[arg(long, default_value_t = 0)]
    pub discovery: usize,
}

/// The settings that change what nodeboot renders: give the ones of the process under test.
#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    /// The nodeboot process's --advertise-url (its scripts carry it).
    #[arg(long)]
    pub advertise_url: String,
    /// The nodeboot process's --retry-max-delay.
    #[arg(long, default_value_t = 60)]
    pub retry_max_delay: u32,
}

impl RenderArgs {
    pub fn settings(&self) -> RenderSettings {
        RenderSettings {
            // As nodeboot stores it.
            server_url: self.advertise_url.trim_end_matches('/').to_owned(),
            retry_max_delay: self.retry_max_delay,
        }
    }
}
