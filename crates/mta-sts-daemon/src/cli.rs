//! The command line: the Python daemon's flags, and the `cache` subcommands.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
pub(crate) use mtasts_cli::{Generate, Verbosity};

use crate::config::{Config, ConfigError, DEFAULT_CONFIG_PATH, Diagnostics};
use crate::exit;

/// `mta-sts-daemon` flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "mta-sts-daemon",
    version,
    about = "MTA-STS socketmap daemon for Postfix",
    after_long_help = exit::HELP
)]
pub(crate) struct Cli {
    /// Logging verbosity.
    #[arg(short = 'v', long, value_enum, default_value = "info")]
    pub(crate) verbosity: Verbosity,
    /// Configuration file (YAML) [default: /etc/mta-sts-daemon.yml, all defaults when it does not exist].
    /// A file given here must exist.
    #[arg(short = 'c', long, value_name = "FILE", global = true)]
    pub(crate) config: Option<PathBuf>,
    /// Log to this file instead of standard error.
    #[arg(short = 'l', long)]
    pub(crate) logfile: Option<PathBuf>,
    /// Log line format: `text` for people, `json` for log shippers (one JSON object per line).
    /// Under systemd (JOURNAL_STREAM set) text lines carry no timestamp: the journal adds its own.
    #[arg(long, value_enum, default_value = "text", value_name = "FORMAT")]
    pub(crate) log_format: LogFormat,
    /// Write the process id to this file (removed at exit).
    #[arg(short = 'p', long)]
    pub(crate) pidfile: Option<PathBuf>,
    /// Switch to this user (name or uid) after binding the socket.
    #[arg(short = 'u', long)]
    pub(crate) user: Option<String>,
    /// Switch to this group (name or gid) after binding the socket.
    #[arg(short = 'g', long)]
    pub(crate) group: Option<String>,
    /// Accepted for compatibility with the Python daemon; has no effect.
    #[arg(long)]
    pub(crate) disable_uvloop: bool,
    /// Check the configuration and exit: every key and zone, the listen addresses, the CA file, the proxy URL,
    /// the store options (nothing is connected), -u/-g. Binds and opens nothing; prints the warnings; exits 0
    /// when it is valid, 78 when not.
    #[arg(short = 't', long)]
    pub(crate) check_config: bool,
    /// Print the man page or a shell completion script on standard output and exit (release packaging).
    #[arg(long, value_enum, value_name = "KIND")]
    pub(crate) generate: Option<Generate>,
    /// Without a subcommand, run the daemon; `cache …` administers the configured policy store instead.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// Subcommands of `mta-sts-daemon`; without one, it runs the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub(crate) enum Command {
    /// Administer the configured policy cache (store) without a running daemon.
    ///
    /// Running daemons that share the store answer from their memory copy of a purged policy for at most
    /// cache_grace seconds; then they find it gone from the store and discover the domain afresh (DNS and
    /// HTTPS). With cache.type internal there is no store outside a running daemon: restart it to empty its
    /// cache.
    #[command(subcommand)]
    #[command(after_long_help = exit::HELP)]
    Cache(CacheCommand),
}

/// `mta-sts-daemon cache …`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub(crate) enum CacheCommand {
    /// List cached policies, one tab-separated line per domain.
    ///
    /// A header line, then per domain: domain, policy id, mode, max_age, checked at, expires at (times in UTC,
    /// RFC 3339; "(expired)" after an expired policy's time). A count goes to standard error.
    #[command(after_long_help = exit::HELP)]
    List,
    /// Show one domain's cached entry and policy text.
    #[command(after_long_help = exit::HELP)]
    Show {
        /// The policy domain (normalised like the daemon does: case, trailing dot, U-labels).
        domain: String,
    },
    /// Remove one domain's cached policy, or all of them.
    ///
    /// Running daemons sharing the store drop their memory copy within cache_grace and discover the domain
    /// afresh.
    #[command(after_long_help = exit::HELP)]
    Purge(PurgeArgs),
    /// Print every cached entry as JSON lines.
    ///
    /// One object per line: {"domain", "policy_id", "checked_at", "fetched_at" (Unix seconds), "policy":
    /// {"version", "mode", "max_age", "mx": [...], extension keys}}. A count goes to standard error.
    #[command(after_long_help = exit::HELP)]
    Export,
}

/// What `cache purge` removes: one DOMAIN or `--all`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct PurgeArgs {
    /// The policy domain to forget (normalised like the daemon does).
    pub(crate) domain: Option<String>,
    /// Remove every cached policy.
    #[arg(long)]
    pub(crate) all: bool,
}

impl Cli {
    /// The configuration file: `-c FILE`, else [`DEFAULT_CONFIG_PATH`].
    pub(crate) fn config_path(&self) -> &Path {
        self.config
            .as_deref()
            .unwrap_or_else(|| Path::new(DEFAULT_CONFIG_PATH))
    }

    /// Loads the configuration. A file given with `-c` must exist (as for the Python daemon); without `-c`, a
    /// missing default file means all defaults (with a warning).
    ///
    /// # Errors
    ///
    /// The file cannot be read (or, given with `-c`, does not exist) or is invalid.
    pub(crate) fn load_config(&self) -> Result<(Config, Diagnostics), ConfigError> {
        match &self.config {
            Some(path) => Config::load(path),
            None => Config::load_or_default(Path::new(DEFAULT_CONFIG_PATH)),
        }
    }
}

/// Log line format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (JSON Lines), for log shippers.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_section_8_man_page_with_the_exit_codes() {
        use clap::CommandFactory as _;

        let cli = Cli::try_parse_from(["mta-sts-daemon", "--generate", "man"]).unwrap();
        assert_eq!(cli.generate, Some(Generate::Man));
        let mut page = Vec::new();
        Generate::Man.write(Cli::command(), "8", &mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains(".TH mta-sts-daemon 8"), "{page}");
        assert!(page.contains("disable\\-uvloop"), "{page}");
        assert!(page.contains("Exit status"), "{page}");
    }

    #[test]
    fn defaults_match_the_python_daemon() {
        let cli = Cli::try_parse_from(["mta-sts-daemon"]).unwrap();
        assert_eq!(cli.verbosity, Verbosity::Info);
        assert_eq!(cli.config, None);
        assert_eq!(cli.config_path(), Path::new("/etc/mta-sts-daemon.yml"));
        assert!(
            cli.logfile.is_none()
                && cli.pidfile.is_none()
                && cli.user.is_none()
                && cli.group.is_none()
        );
    }

    #[test]
    fn cache_subcommands_parse_after_the_daemon_flags_or_with_their_own_config() {
        let cli =
            Cli::try_parse_from(["mta-sts-daemon", "-c", "/x.yml", "cache", "purge", "--all"])
                .expect("parse");
        assert_eq!(cli.config_path(), Path::new("/x.yml"));
        assert_eq!(
            cli.command,
            Some(Command::Cache(CacheCommand::Purge(PurgeArgs {
                domain: None,
                all: true
            })))
        );
        let cli = Cli::try_parse_from([
            "mta-sts-daemon",
            "cache",
            "show",
            "example.com",
            "-c",
            "/y.yml",
        ])
        .expect("parse");
        assert_eq!(cli.config_path(), Path::new("/y.yml"));
        assert!(Cli::try_parse_from(["mta-sts-daemon"]).is_ok_and(|c| c.command.is_none()));
        for bad in [
            &["mta-sts-daemon", "cache"][..],
            &["mta-sts-daemon", "cache", "purge"],
            &["mta-sts-daemon", "cache", "purge", "a.example", "--all"],
            &["mta-sts-daemon", "cache", "show"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn short_and_long_flags() {
        let cli = Cli::try_parse_from([
            "mta-sts-daemon",
            "-v",
            "debug",
            "-c",
            "/x.yml",
            "-l",
            "/log",
            "-p",
            "/pid",
            "-u",
            "nobody",
            "-g",
            "nogroup",
            "--disable-uvloop",
        ])
        .unwrap();
        assert_eq!(cli.verbosity, Verbosity::Debug);
        assert_eq!(cli.config_path(), Path::new("/x.yml"));
        assert_eq!(cli.logfile, Some(PathBuf::from("/log")));
        assert_eq!(cli.pidfile, Some(PathBuf::from("/pid")));
        assert_eq!(cli.user.as_deref(), Some("nobody"));
        assert_eq!(cli.group.as_deref(), Some("nogroup"));
        assert!(cli.disable_uvloop);
        let cli = Cli::try_parse_from(["mta-sts-daemon", "--verbosity", "fatal", "--config", "a"])
            .unwrap();
        assert_eq!(cli.verbosity.level(), tracing::Level::ERROR);
        let cli = Cli::try_parse_from(["mta-sts-daemon", "-v", "crit"]).unwrap();
        assert_eq!(
            cli.verbosity,
            Verbosity::Fatal,
            "the Python daemon's `crit`"
        );
        assert!(Cli::try_parse_from(["mta-sts-daemon", "-v", "loud"]).is_err());
    }
}
