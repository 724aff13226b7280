//! `mta-sts-daemon --check-config` (`-t`): reads and validates the configuration as the daemon does at start, then
//! exits, having bound and opened nothing — so that a migration can be checked next to the daemon in production,
//! without touching its port.
//!
//! Checked: every key and zone (the reader), the listen addresses (the host resolves, the UNIX socket's directory
//! exists), the CA file, the resolver configuration and the proxy URL (the policy fetcher is built, which reads
//! them and connects nowhere), the store options (as the daemon checks them before its first connection; nothing
//! is connected), and `-u`/`-g` (looked up). Warnings go to standard error, the verdict to standard output; the
//! exit status is 0 (valid, maybe with warnings) or 78 (not).

use std::io::Write as _;
use std::net::ToSocketAddrs as _;
use std::path::Path;
use std::process::ExitCode;

use crate::StartError;
use crate::admin::command_runtime;
use crate::cli::Cli;
use crate::config::{Config, ListenConfig};
use crate::daemon;
use crate::exit::Exit;
use crate::privileges::Privileges;
use crate::stores;

/// Runs the check for `cli` (`-c`, `-u`, `-g`); returns the exit status.
pub(crate) fn run(cli: &Cli) -> ExitCode {
    let path = cli.config_path().display().to_string();
    let (config, diagnostics) = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mta-sts-daemon: {path}: {e}");
            return Exit::Config.into();
        }
    };
    let mut warnings: Vec<String> = diagnostics
        .unknown_keys()
        .iter()
        .map(|key| format!("unknown configuration key `{key}` ignored"))
        .collect();
    warnings.extend(diagnostics.warnings().iter().cloned());
    let Some(runtime) = command_runtime() else {
        return Exit::Failure.into();
    };
    // The Redis client is built (not connected) inside a runtime.
    let checked = runtime.block_on(async { check(cli, &config) });
    match checked {
        Ok(more) => {
            warnings.extend(more);
            for warning in &warnings {
                eprintln!("mta-sts-daemon: warning: {warning}");
            }
            let _ = writeln!(
                std::io::stdout(),
                "{path}: configuration OK ({} {})",
                warnings.len(),
                if warnings.len() == 1 {
                    "warning"
                } else {
                    "warnings"
                }
            );
            Exit::Success.into()
        }
        Err(e) => {
            for warning in &warnings {
                eprintln!("mta-sts-daemon: warning: {warning}");
            }
            eprintln!("mta-sts-daemon: {path}: {e}");
            Exit::Config.into()
        }
    }
}

/// Everything past the reader: returns the warnings, or the first error.
fn check(cli: &Cli, config: &Config) -> Result<Vec<String>, StartError> {
    let mut warnings = Vec::new();
    warnings.extend(listen_address("listen address", &config.listen)?);
    if let Some(metrics) = &config.metrics {
        warnings.extend(listen_address("metrics.listen", &metrics.listen)?);
    }
    let fetcher = daemon::build_fetcher(config)?;
    warnings.extend(daemon::discovery_warnings(config, &fetcher));
    warnings.extend(stores::check(&config.cache)?);
    Privileges::resolve(cli.user.as_deref(), cli.group.as_deref())?;
    Ok(warnings)
}

/// What binding `listen` needs and can be known without binding: the host resolves to an address (else an
/// error), the UNIX socket's directory exists (else a warning: systemd may create it before the start, as
/// `RuntimeDirectory=` does).
fn listen_address(what: &'static str, listen: &ListenConfig) -> Result<Option<String>, StartError> {
    match listen {
        ListenConfig::Tcp { host, port } => {
            let refused = |source| StartError::Bind {
                addr: format!("{what} {listen}"),
                source,
            };
            let bare = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            let mut addrs = (bare, *port).to_socket_addrs().map_err(refused)?;
            if addrs.next().is_none() {
                return Err(refused(std::io::Error::new(
                    std::io::ErrorKind::AddrNotAvailable,
                    "host name resolves to no address",
                )));
            }
            Ok(None)
        }
        ListenConfig::Unix { path, .. } => {
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            Ok(match std::fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => None,
                Ok(_) => Some(format!(
                    "{what} {listen}: {} is not a directory",
                    dir.display()
                )),
                Err(e) => Some(format!(
                    "{what} {listen}: directory {}: {e} (the daemon cannot bind the socket unless it is created \
                     before the start)",
                    dir.display()
                )),
            })
        }
    }
}
