//! `mta-sts-daemon`: an MTA-STS (RFC 8461) socketmap daemon for Postfix, a drop-in replacement for the Python
//! `postfix-mta-sts-resolver` (same flags, same YAML configuration, same answers, shared caches).
//!
//! This crate is the program, not a library to build on (it is not published): the binary calls [`main`], and
//! the integration tests run the daemon in-process through a small surface:
//! - [`Config`]: the YAML file, read as PyYAML reads it (YAML 1.1), with its [`Diagnostics`] (unknown keys,
//!   warnings) or a [`ConfigError`];
//! - [`Bound`] / [`Running`]: bind (or take systemd's sockets), then, after privileges are dropped, open the
//!   store and serve; [`LocalAddr`] says where; [`StartError`] says why not;
//! - [`Metrics`]: the daemon's counters ([`AnswerKind`] by [`ZoneId`]), kept whether or not the Prometheus
//!   endpoint is enabled.
//!
//! Embedding MTA-STS in a Rust MTA is `mtasts-engine`'s job; the module map is in ARCHITECTURE.md.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mta_sts_daemon::StartError> {
//! let (config, _diagnostics) = mta_sts_daemon::Config::parse("host: 127.0.0.1\nport: 8461\n")?;
//! let running = mta_sts_daemon::Running::start(config).await?;
//! println!("listening on {}", running.local_addr());
//! running.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Crate features
//! - `sqlite`, `redis`, `postgres` (all default): the persistent policy stores (`cache.type`).

mod admin;
mod answer;
mod ask;
mod check;
mod cli;
mod config;
mod control;
mod control_client;
mod daemon;
mod descriptors;
mod error;
mod exit;
#[cfg(test)]
mod layers;
mod listen;
mod logging;
mod metrics;
mod pidfile;
#[cfg(feature = "postgres")]
mod postgres;
mod privileges;
mod ratelimit;
mod run;
mod server;
mod stores;
mod systemd;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};

pub use answer::AnswerKind;
pub use config::{Config, ConfigError, Diagnostics, YamlError};
pub use daemon::{Bound, Running};
pub use error::StartError;
pub use listen::LocalAddr;
pub use metrics::{Metrics, ZoneId};
pub use pidfile::PidfileError;

/// The `mta-sts-daemon` program: parses the command line, then prints what `--generate` asks for, checks the
/// configuration (`--check-config`), runs a `cache` command, or runs the daemon until a signal stops it. Returns the exit status (one table for every
/// command: 0 done, 1 other failure, 2 usage, 69 a needed service is unreachable, 73 the pidfile or log file
/// cannot be created, 78 configuration error; `mta-sts-daemon --help` prints it).
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let Some(kind) = cli.generate {
        // The man page is written by hand (docs/man/mta-sts-daemon.8); the completions come from clap.
        let printed = if kind == cli::Generate::Man {
            cli::print_man_page()
        } else {
            kind.print(cli::Cli::command(), "8")
        };
        return match printed {
            Ok(()) => exit::Exit::Success.into(),
            Err(e) => {
                eprintln!("mta-sts-daemon: {e}");
                exit::Exit::Failure.into()
            }
        };
    }
    if cli.check_config {
        return check::run(&cli);
    }
    match &cli.command {
        Some(cli::Command::Cache(command)) => admin::run(&cli, command),
        Some(cli::Command::Query(args)) => ask::run(&cli, args),
        None => run::run(&cli),
    }
}
