//! `mta-sts-daemon` binary: parses flags and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use mta_sts_daemon::exit::Exit;

fn main() -> ExitCode {
    let cli = mta_sts_daemon::cli::Cli::parse();
    if let Some(kind) = cli.generate {
        use clap::CommandFactory as _;
        return match kind.print(mta_sts_daemon::cli::Cli::command(), "8") {
            Ok(()) => Exit::Success.into(),
            Err(e) => {
                eprintln!("mta-sts-daemon: {e}");
                Exit::Failure.into()
            }
        };
    }
    match &cli.command {
        Some(mta_sts_daemon::cli::Command::Cache(command)) => {
            mta_sts_daemon::admin::run(&cli, command)
        }
        None => mta_sts_daemon::run::run(&cli),
    }
}
