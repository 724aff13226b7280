//! [`StartError`]: why the daemon could not start.

use std::path::PathBuf;

use crate::config;
use crate::pidfile::PidfileError;

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
    /// The pidfile could not be created: an I/O error, a symbolic link, or a running process holds it.
    #[error("cannot write pidfile {path}: {source}")]
    Pidfile {
        /// The pidfile.
        path: PathBuf,
        /// Why.
        #[source]
        source: PidfileError,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}
