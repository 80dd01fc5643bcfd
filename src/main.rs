use std::process::ExitCode;

use nodeboot::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::from_command_line();
    // One-shot commands print their answer on stdout; only problems belong on stderr.
    let default_level = match cli.command {
        Command::Explain { .. } | Command::Crds | Command::Import { .. } => "warn",
        _ => "info",
    };
    nodeboot::logging::init(cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nodeboot: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(nodeboot::app::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nodeboot: {e}");
            ExitCode::FAILURE
        }
    }
}
