//! `mta-sts-daemon` binary: parses flags and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mta_sts_daemon::cli::Cli::parse();
    mta_sts_daemon::run::run(&cli)
}
