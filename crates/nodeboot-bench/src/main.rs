//! Writes a synthetic site of N nodes as manifests, for benchmarks:
//! `nodeboot-synth --nodes 100000 --out /tmp/site` then `nodeboot serve --manifests /tmp/site`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Write a synthetic site (NodeGroups and BootConfigs) as manifests")]
struct Args {
    /// Number of nodes (in cabinets of 5000).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Directory to write into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Also write one MAC per line to this file, for load generators.
    #[arg(long)]
    macs: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let site = nodeboot_bench::synthetic::site(args.nodes);
    let run = || -> Result<(), String> {
        std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
        for (name, text) in
            nodeboot_bench::synthetic::site_manifests(&site).map_err(|e| e.to_string())?
        {
            let path = args.out.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if let Some(path) = &args.macs {
            let macs: String = (0..args.nodes)
                .map(|i| nodeboot_bench::synthetic::node_mac(i) + "\n")
                .collect();
            std::fs::write(path, macs).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nodeboot-synth: {e}");
            ExitCode::FAILURE
        }
    }
}
