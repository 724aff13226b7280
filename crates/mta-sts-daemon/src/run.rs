//! The binary's life cycle: flags, logging, configuration, bind, privileges, pidfile, systemd, signals.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::StartError;
use crate::cli::{Cli, LogFormat};
use crate::config::Config;
use crate::daemon::Bound;
use crate::descriptors;
use crate::exit::Exit;
use crate::privileges::Privileges;
use crate::systemd;

/// Runs the daemon with parsed flags until a signal stops it; returns the process exit code
/// ([`crate::exit`]).
pub(crate) fn run(cli: &Cli) -> ExitCode {
    if let Err(e) = init_logging(cli) {
        eprintln!("mta-sts-daemon: cannot open log file: {e}");
        return Exit::CantCreate.into();
    }
    let (config, diagnostics) = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            let path = cli.config_path().display();
            error!("{path}: {e}");
            eprintln!("mta-sts-daemon: {path}: {e}");
            return Exit::Config.into();
        }
    };
    for key in diagnostics.unknown_keys() {
        warn!(key, "unknown configuration key ignored");
    }
    for warning in diagnostics.warnings() {
        warn!("{warning}");
    }
    if cli.disable_uvloop {
        info!("--disable-uvloop has no effect (accepted for compatibility)");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return Exit::Failure.into();
        }
    };
    match runtime.block_on(serve_until_signalled(cli, config)) {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            error!("{e}");
            eprintln!("mta-sts-daemon: {e}");
            Exit::of(&e).into()
        }
    }
}

async fn serve_until_signalled(cli: &Cli, mut config: Config) -> Result<(), StartError> {
    // Signal handlers first, so that a signal during start-up is not fatal by default.
    let mut term = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;
    // SIGHUP would otherwise kill the daemon without draining; there is no reload (restart to apply a new
    // configuration), so it is logged and ignored.
    let mut hup = signal(SignalKind::hangup()).map_err(StartError::Signals)?;

    // Before any socket: the connection and discovery limits must fit the open-files limit.
    descriptors::raise_and_fit(&mut config.limits, &config.cache);
    // Looked up first: an unknown user or group binds nothing.
    let privileges = Privileges::resolve(cli.user.as_deref(), cli.group.as_deref())?;
    let owner = privileges
        .as_ref()
        .map(Privileges::socket_owner)
        .unwrap_or_default();
    let bound = Bound::bind_owned(config, owner)?;
    // The pidfile is written while still privileged (it usually lives in /run).
    let _pidfile = match &cli.pidfile {
        Some(path) => Some(Pidfile::create(path)?),
        None => None,
    };
    if let Some(privileges) = &privileges {
        privileges.apply()?;
    }
    let running = bound.start().await?;
    if let Err(e) = systemd::notify("READY=1") {
        warn!(error = %e, "could not notify systemd");
    }

    loop {
        tokio::select! {
            _ = term.recv() => {
                info!("SIGTERM received, stopping");
                break;
            }
            _ = int.recv() => {
                info!("SIGINT received, stopping");
                break;
            }
            _ = hup.recv() => {
                warn!("SIGHUP ignored: configuration reload is not supported; restart the daemon to apply changes");
            }
        }
    }
    let _ = systemd::notify("STOPPING=1");
    running.stop();
    tokio::select! {
        () = running.wait() => info!("stopped"),
        _ = term.recv() => warn!("second signal, exiting at once"),
        _ = int.recv() => warn!("second signal, exiting at once"),
    }
    Ok(())
}

fn init_logging(cli: &Cli) -> std::io::Result<()> {
    use std::io::IsTerminal;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let level = LevelFilter::from_level(cli.verbosity.level());
    // `-v debug` is about our decisions; the DNS library's packet dumps stay at info.
    let quiet = level.min(LevelFilter::INFO);
    let filter = Targets::new()
        .with_default(level)
        .with_target("hickory_proto", quiet)
        .with_target("hickory_resolver", quiet)
        .with_target("rustls", quiet)
        .with_target("hyper_util", quiet);
    let style = LogStyle::new(
        cli.log_format,
        cli.logfile.is_some(),
        std::env::var_os("JOURNAL_STREAM").is_some(),
        std::io::stderr().is_terminal(),
    );
    let writer = match &cli.logfile {
        Some(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            BoxMakeWriter::new(Mutex::new(file))
        }
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(style.ansi)
        .with_writer(writer);
    let layer = match (style.format, style.timestamps) {
        (LogFormat::Json, _) => fmt.json().flatten_event(true).boxed(),
        (LogFormat::Text, true) => fmt.boxed(),
        (LogFormat::Text, false) => fmt.without_time().boxed(),
    };
    // Ignore "already set" (tests may run several daemons in one process).
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
    Ok(())
}

/// How log lines look, from the flags and where they go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LogStyle {
    format: LogFormat,
    /// Off when stderr goes to the systemd journal, which stamps every line itself.
    timestamps: bool,
    /// Colours only for a person at a terminal.
    ansi: bool,
}

impl LogStyle {
    fn new(format: LogFormat, to_file: bool, journal: bool, stderr_is_terminal: bool) -> Self {
        let to_journal = journal && !to_file;
        Self {
            format,
            timestamps: format == LogFormat::Json || !to_journal,
            ansi: format == LogFormat::Text && !to_file && stderr_is_terminal,
        }
    }
}

/// A pidfile, removed when dropped.
#[derive(Debug)]
struct Pidfile(PathBuf);

impl Pidfile {
    fn create(path: &Path) -> Result<Self, StartError> {
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|source| {
            StartError::Pidfile {
                path: path.to_owned(),
                source,
            }
        })?;
        Ok(Self(path.to_owned()))
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_lines_carry_no_timestamp_of_ours() {
        let style = LogStyle::new(LogFormat::Text, false, true, false);
        assert!(!style.timestamps && !style.ansi);
    }

    #[test]
    fn a_log_file_keeps_timestamps_even_under_systemd() {
        let style = LogStyle::new(LogFormat::Text, true, true, true);
        assert!(style.timestamps && !style.ansi);
    }

    #[test]
    fn a_terminal_gets_colours_and_timestamps() {
        let style = LogStyle::new(LogFormat::Text, false, false, true);
        assert!(style.timestamps && style.ansi);
    }

    #[test]
    fn json_lines_always_carry_a_timestamp_and_no_colours() {
        for journal in [false, true] {
            let style = LogStyle::new(LogFormat::Json, false, journal, true);
            assert!(style.timestamps && !style.ansi, "journal={journal}");
        }
    }
}
