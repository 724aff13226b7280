//! The binary's life cycle: flags, logging, configuration, bind, privileges, pidfile, systemd, signals.

use std::process::ExitCode;

use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::StartError;
use crate::cli::Cli;
use crate::config::Config;
use crate::control::ControlSocket;
use crate::daemon::Bound;
use crate::descriptors;
use crate::exit::Exit;
use crate::logging::Log;
use crate::pidfile::Pidfile;
use crate::privileges::Privileges;
use crate::systemd;

/// Runs the daemon with parsed flags until a signal stops it; returns the process exit code
/// ([`crate::exit`]).
pub(crate) fn run(cli: &Cli) -> ExitCode {
    let log = match Log::init(cli) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("mta-sts-daemon: cannot open log file: {e}");
            return Exit::CantCreate.into();
        }
    };
    let (config, diagnostics) = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            log.fatal(&format_args!("{}: {e}", cli.config_path().display()));
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
            log.fatal(&format_args!("cannot start the async runtime: {e}"));
            return Exit::Failure.into();
        }
    };
    match runtime.block_on(serve_until_signalled(cli, config)) {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            log.fatal(&e);
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
    let control = ControlSocket::prepare(&config);
    let bound = Bound::bind_owned(config, owner)?;
    // The pidfile is written while still privileged (it usually lives in /run).
    let _pidfile = match &cli.pidfile {
        Some(path) => Some(Pidfile::create(path).map_err(|source| StartError::Pidfile {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    // Bound while still privileged, and only once nothing else can refuse the start: a daemon that fails
    // (its port or pidfile taken) leaves the control socket of the one running alone. Without it the daemon
    // runs (with a warning).
    let control = control.bind(owner);
    if let Some(privileges) = &privileges {
        privileges.apply()?;
    }
    let running = bound.start().await?;
    let control = control.map(|socket| socket.serve(&running));
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
    if let Some(control) = control {
        control.stop().await;
    }
    tokio::select! {
        () = running.wait() => info!("stopped"),
        _ = term.recv() => warn!("second signal, exiting at once"),
        _ = int.recv() => warn!("second signal, exiting at once"),
    }
    Ok(())
}
