//! `nodeboot-bench`: the tools bench/storm.sh runs, each straight from nodeboot-core.
//!
//!   nodeboot-bench site --nodes 100000 --out /tmp/site
//!   nodeboot-bench requests --nodes 100000 --out /tmp/requests.tsv
//!   nodeboot-bench tree --nodes 100000 --advertise-url http://127.0.0.1:8080 --out /tmp/www
//!   nodeboot-bench compare --requests /tmp/requests.tsv --tree /tmp/www --server 127.0.0.1:8080
//!   nodeboot-bench report bench/results/RUN
//!   nodeboot-bench constant-server --listen 127.0.0.1:8081 --body-file /tmp/www/bootscript/MAC
//!   nodeboot-bench free-ports 3

mod cli;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use nodeboot_bench::compare::{CompareOptions, Selection, compare, load_expected, select};
use nodeboot_bench::{constant_server, oha, ports, report, requests, site, tree};
use nodeboot_core::render::RenderSettings;

use cli::{Cli, Command};

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nodeboot-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Requests do not depend on rendering; any settings do.
fn listing_settings() -> RenderSettings {
    RenderSettings {
        server_url: "http://127.0.0.1".into(),
        retry_max_delay: 60,
    }
}

fn run(command: Command) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match command {
        Command::Site { site, out } => {
            site::write_manifests(site.nodes, &out)?;
        }
        Command::Requests { site, out } => {
            let snapshot = site::snapshot(site.nodes, &listing_settings());
            let list = site::requests(&snapshot, site.discovery);
            requests::write(&list, &out)?;
            eprintln!("{} requests -> {}", list.len(), out.display());
        }
        Command::Tree { site, render, out } => {
            let started = Instant::now();
            let snapshot = site::snapshot(site.nodes, &render.settings());
            let list = site::requests(&snapshot, site.discovery);
            let summary = tree::write_tree(&snapshot, &list, &out)?;
            println!(
                "tree: {:.1}s -> {}; {summary}",
                started.elapsed().as_secs_f64(),
                out.display()
            );
        }
        Command::Compare {
            requests: requests_file,
            tree,
            server,
            label,
            all,
            sample,
            shuffle,
            seed,
            connections,
            forwarded_for,
            timeout,
        } => {
            let selection = if all {
                Selection::All {
                    shuffle: shuffle.then_some(seed),
                }
            } else {
                Selection::Sample {
                    count: sample,
                    seed,
                }
            };
            let lines = select(requests::read(&requests_file)?, selection);
            let expected = load_expected(&tree, &lines)?;
            let options = CompareOptions {
                server,
                label: label.clone(),
                connections,
                forwarded_for,
                timeout: Duration::from_secs(timeout),
            };
            let (summary, examples) = compare(lines, expected, &options)?;
            for e in &examples {
                eprintln!("compare {label}: {e}");
            }
            println!("COMPARE {}", serde_json::to_string(&summary)?);
            if !summary.all_identical() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::ConstantServer {
            listen,
            body_file,
            workers,
        } => {
            let body =
                std::fs::read(&body_file).map_err(|e| format!("{}: {e}", body_file.display()))?;
            constant_server::run(listen, body.into(), workers)?;
        }
        Command::OhaResult { json } => {
            println!("{}", oha::result_line(&json)?);
        }
        Command::FreePorts { count } => {
            let ports: Vec<String> = ports::free_ports(count)?
                .iter()
                .map(u16::to_string)
                .collect();
            println!("{}", ports.join(" "));
        }
        Command::Report { dir } => {
            print!("{}", report::report(&dir)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
