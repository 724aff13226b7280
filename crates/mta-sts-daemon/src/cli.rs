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
    /// Write the process id to this file (mode 0644, never through a symbolic link; a stale one is replaced;
    /// removed at exit when the dropped privileges allow).
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
    /// Administer the policy cache: through the running daemon's control socket when it runs, else the
    /// configured store directly.
    ///
    /// Through the daemon, a purge empties its memory at once (and its store), and the internal cache can be
    /// listed. Directly, running daemons that share the store answer from their memory copy of a purged policy
    /// for at most cache_grace seconds; then they find it gone from the store and discover the domain afresh.
    #[command(subcommand)]
    #[command(after_long_help = exit::HELP)]
    Cache(CacheCommand),
    /// Ask the running daemon what a socketmap lookup of DOMAIN answers, and why (through its control socket).
    ///
    /// The lookup is the one Postfix's would be (discovery included, counted like one): the reply, where it
    /// came from (memory, store, discovered...), the policy and its cached times, and with a `dane` zone the
    /// DANE view. Exit status 0 for an OK reply, 1 for NOTFOUND, 69 when the daemon cannot be reached.
    #[command(after_long_help = exit::HELP)]
    Query(QueryArgs),
}

/// `mta-sts-daemon query`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub(crate) struct QueryArgs {
    /// The key, as Postfix sends it (a domain, `[host]:port`...).
    pub(crate) domain: String,
    /// The socketmap name (the last part of `socketmap:…:NAME` in main.cf).
    #[arg(long, default_value = "postfix")]
    pub(crate) zone: String,
    /// Print one JSON object (the field names of `mta-sts-query --json` where they overlap).
    #[arg(long)]
    pub(crate) json: bool,
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

/// mta-sts-daemon(8), written by hand (`--generate man` prints it; `cargo xtask dist` installs it).
pub(crate) const MAN_PAGE: &str = include_str!("../../../docs/man/mta-sts-daemon.8");

/// Prints [`MAN_PAGE`] on standard output; a closed pipe (`… | head`) is not an error.
pub(crate) fn print_man_page() -> std::io::Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(MAN_PAGE.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
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

    /// `name` as roff writes it (`-` escaped).
    fn roff(name: &str) -> String {
        name.replace('-', "\\-")
    }

    /// The lines of `section` (`.SH NAME` up to the next `.SH`).
    fn section<'a>(page: &'a str, name: &str) -> Vec<&'a str> {
        page.lines()
            .skip_while(|l| *l != format!(".SH {name}"))
            .skip(1)
            .take_while(|l| !l.starts_with(".SH "))
            .collect()
    }

    #[test]
    fn the_man_page_documents_every_flag_command_and_exit_status() {
        use clap::CommandFactory as _;

        let cli = Cli::try_parse_from(["mta-sts-daemon", "--generate", "man"]).unwrap();
        assert_eq!(cli.generate, Some(Generate::Man));
        let page = MAN_PAGE;
        assert!(page.starts_with(".\\\" mta-sts-daemon(8)"), "{page}");
        assert!(page.contains("\n.TH MTA\\-STS\\-DAEMON 8 "), "{page}");
        for heading in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "COMMANDS",
            "EXAMPLES",
            "SIGNALS",
            "EXIT STATUS",
            "FILES",
            "ENVIRONMENT",
            "SEE ALSO",
        ] {
            assert!(!section(page, heading).is_empty(), "section {heading}");
        }
        let options = section(page, "OPTIONS").join("\n");
        let command = Cli::command();
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long() {
                assert!(
                    options.contains(&roff(&format!("--{long}"))),
                    "--{long} in OPTIONS"
                );
            }
            if let Some(short) = arg.get_short() {
                assert!(
                    options.contains(&format!("\\-{short}")),
                    "-{short} in OPTIONS"
                );
            }
        }
        let commands = section(page, "COMMANDS").join("\n");
        for sub in command
            .get_subcommands()
            .filter(|c| c.get_name() != "cache")
        {
            assert!(
                commands.contains(&format!(".B {} ", sub.get_name())),
                "{} in COMMANDS",
                sub.get_name()
            );
        }
        let cache = command.find_subcommand("cache").expect("cache");
        for sub in cache.get_subcommands() {
            assert!(
                commands.contains(&format!(".B cache {}", sub.get_name())),
                "cache {} in COMMANDS",
                sub.get_name()
            );
        }
        let codes: Vec<u8> = section(page, "EXIT STATUS")
            .iter()
            .filter_map(|l| l.strip_prefix(".B ")?.parse().ok())
            .collect();
        let all: Vec<u8> = exit::Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, all, "EXIT STATUS lists exit.rs's table, in order");
    }

    /// Only pages that are shipped (ours by `cargo xtask dist`/`deb`, the others by Postfix and systemd) are
    /// referred to: no mta-sts-daemon-cache(8) as clap_mangen wrote.
    #[test]
    fn the_man_page_refers_only_to_shipped_pages() {
        let ours = ["mta\\-sts\\-daemon.yml (5)", "mta\\-sts\\-query (1)"];
        let others = [
            "postmap (1)",
            "postconf (5)",
            "socketmap_table (5)",
            "systemd.socket (5)",
        ];
        let mut seen = 0;
        for line in MAN_PAGE.lines() {
            let Some(reference) = line.strip_prefix(".BR ") else {
                continue;
            };
            let reference = reference.trim_end_matches(',').trim_end_matches(['.', ';']);
            if !reference.ends_with(')') || !reference.contains(" (") {
                continue;
            }
            let page = reference
                .split_once(')')
                .map_or(reference, |(p, _)| p)
                .to_owned()
                + ")";
            assert!(
                ours.contains(&page.as_str()) || others.contains(&page.as_str()),
                "a reference to {page}, which is not shipped"
            );
            seen += 1;
        }
        assert!(seen >= 6, "the SEE ALSO references were found: {seen}");
    }

    /// `man --warnings` renders the page without a warning (groff's checks), as `cargo xtask deb-check` does
    /// for the installed page.
    #[test]
    fn man_renders_the_page_without_warnings() {
        let Some(man) = mtasts_test_support::tool_or_skip(
            "man_renders_the_page_without_warnings",
            "man",
            "man-db",
        ) else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mta-sts-daemon.8");
        std::fs::write(&path, MAN_PAGE).expect("write");
        let out = std::process::Command::new(man)
            .args(["--warnings", "-l"])
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
            .expect("run man");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.trim().is_empty(), "man warned: {stderr}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("EXIT STATUS") && text.contains("--check-config"),
            "{text}"
        );
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
