//! `mta-sts-daemon`: an MTA-STS (RFC 8461) socketmap daemon for Postfix, a drop-in replacement for the Python
//! `postfix-mta-sts-resolver` (same flags, same YAML configuration, same answers, shared caches).
//!
//! The binary is thin ([`run::run`]); everything lives here so that tests can run the server in-process:
//! - [`config`]: the YAML file, read as PyYAML reads it (YAML 1.1), into a typed [`config::Config`];
//! - [`cli`]: the Python daemon's flags;
//! - [`admin`]: the `cache` subcommands (list, show, purge, export on the configured store);
//! - [`answer`]: key normalization and the Postfix policy-table reply;
//! - [`server`]: the socketmap server (pipelining, bounded queues, graceful shutdown);
//! - [`listen`]: TCP with `SO_REUSEPORT`, UNIX sockets, systemd socket activation;
//! - [`metrics`]: counters and the Prometheus endpoint (`metrics.listen`);
//! - [`Bound`] / [`Running`]: bind, then (after dropping privileges) start serving.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mta_sts_daemon::StartError> {
//! let cfg = mta_sts_daemon::config::Config::parse("host: 127.0.0.1\nport: 8461\n")?;
//! let running = mta_sts_daemon::Running::start(cfg).await?;
//! running.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Crate features
//! - `sqlite`, `redis`, `postgres` (all default): the persistent policy stores (`cache.type`).

pub mod admin;
pub mod answer;
pub mod cli;
pub mod config;
mod daemon;
pub mod listen;
pub mod metrics;
#[cfg(feature = "postgres")]
mod postgres;
pub mod run;
pub mod server;
mod stores;
pub mod systemd;

use std::path::PathBuf;

pub use daemon::{Bound, Running};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid (exit code 78).
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// What was to be bound.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A socket passed by systemd could not be used.
    #[error("cannot use the {what}: {source}")]
    Systemd {
        /// Which systemd facility.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The policy store could not be opened.
    #[error("cannot open the {kind} cache: {source}")]
    Store {
        /// `cache.type`.
        kind: &'static str,
        /// The store's error.
        #[source]
        source: mtasts_cache::CacheError,
    },
    /// The store type was not compiled in.
    #[error("the {kind} cache is not supported by this build")]
    StoreNotBuilt {
        /// `cache.type`.
        kind: &'static str,
    },
    /// The policy fetcher could not be built (resolver configuration, CA file...).
    #[error("cannot set up policy discovery: {0}")]
    Fetcher(#[source] mtasts_fetch::BuildError),
    /// `--user`/`--group` could not be applied.
    #[error("cannot drop privileges ({what}): {source}")]
    Privileges {
        /// What failed.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The pidfile could not be written.
    #[error("cannot write pidfile {path}: {source}")]
    Pidfile {
        /// The pidfile.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}
