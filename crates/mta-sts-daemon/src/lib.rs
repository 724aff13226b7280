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
//! let (cfg, _diagnostics) = mta_sts_daemon::config::Config::parse("host: 127.0.0.1\nport: 8461\n")?;
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
mod error;
pub mod exit;
pub mod listen;
pub mod metrics;
#[cfg(feature = "postgres")]
mod postgres;
pub mod run;
pub mod server;
mod stores;
pub mod systemd;

pub use daemon::{Bound, Running};
pub use error::StartError;
