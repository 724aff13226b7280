//! Exit codes: one table for every command of `mta-sts-daemon` (the daemon, `cache …`, `--generate`), with the
//! sysexits.h values where one fits.
//!
//! | code | [`Exit`] | when |
//! |---|---|---|
//! | 0 | [`Success`](Exit::Success) | done; the daemon stopped after a signal; a closed output pipe (`… \| head`) |
//! | 1 | [`Failure`](Exit::Failure) | any other runtime failure: a socket cannot be bound, privileges cannot be dropped, output cannot be written; `cache show`/`purge` of a domain that is not cached; corrupt cache entries were reported; a `query` answered `NOTFOUND` |
//! | 2 | [`Usage`](Exit::Usage) | bad command line, also a DOMAIN that is not a policy domain |
//! | 69 | [`Unavailable`](Exit::Unavailable) | a service the command needs is unreachable: the running daemon (`query`; its control socket), the store (`cache …`; the daemon starts without it and retries), or there is none (`cache.type: internal` and no daemon runs, a SQLite file that does not exist) |
//! | 73 | [`CantCreate`](Exit::CantCreate) | the pidfile or the log file cannot be created; the pidfile is a symbolic link or names a running process |
//! | 78 | [`Config`](Exit::Config) | configuration error: the file is invalid, the file given with `-c` does not exist, the CA file, proxy URL or DNS configuration cannot be used, store options no retry can fix (a malformed URL or DSN) |
//!
//! A store that fails while the daemon runs never makes it exit: lookups then answer from memory and discovery.

use std::process::ExitCode;

use crate::StartError;

/// A process exit status of `mta-sts-daemon` (see the [module docs](self) for when each is used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Exit {
    /// 0: done.
    Success,
    /// 1: any other runtime failure.
    Failure,
    /// 2: bad command line (clap's own code for usage errors).
    Usage,
    /// 69 (`EX_UNAVAILABLE`): a service the command needs is unreachable, or there is none.
    Unavailable,
    /// 73 (`EX_CANTCREAT`): the pidfile or the log file cannot be created.
    CantCreate,
    /// 78 (`EX_CONFIG`): configuration error.
    Config,
}

impl Exit {
    /// Every status, in code order.
    #[cfg(test)]
    pub(crate) const ALL: [Self; 6] = [
        Self::Success,
        Self::Failure,
        Self::Usage,
        Self::Unavailable,
        Self::CantCreate,
        Self::Config,
    ];

    /// The numeric status.
    #[must_use]
    pub(crate) const fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::Usage => 2,
            Self::Unavailable => 69,
            Self::CantCreate => 73,
            Self::Config => 78,
        }
    }

    /// The status a start-up failure exits with.
    #[must_use]
    pub(crate) fn of(error: &StartError) -> Self {
        match error {
            StartError::Config(_) | StartError::StoreNotBuilt { .. } | StartError::Fetcher(_) => {
                Self::Config
            }
            // At start the daemon refuses only store options that no retry can fix.
            StartError::Store { source, .. } if source.kind() == "config" => Self::Config,
            StartError::Store { .. } => Self::Unavailable,
            StartError::Pidfile { .. } => Self::CantCreate,
            StartError::Bind { .. }
            | StartError::Systemd { .. }
            | StartError::Privileges { .. }
            | StartError::Signals(_) => Self::Failure,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(exit.code())
    }
}

/// The table for `--help` and the man page.
pub(crate) const HELP: &str = "\
Exit status (the same for every command):
  0   done; the daemon stopped after a signal
  1   other failure: cannot bind, cannot drop privileges, cannot write the output; cache show|purge of a \
domain that is not cached; corrupt cache entries were reported; query answered NOTFOUND
  2   bad command line (also a DOMAIN that is not a policy domain)
  69  a service is unreachable: the running daemon (query), the store (cache commands; the daemon starts \
without it and retries), or there is none (cache.type internal and no daemon runs, a sqlite file that does \
not exist)
  73  the pidfile or the log file cannot be created
  78  configuration error (invalid file, a -c file that does not exist, unusable CA file or proxy URL, store \
options no retry can fix such as a malformed URL or DSN)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_lists_every_code_once_in_order() {
        let listed: Vec<u8> = HELP
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        let codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(listed, codes);
    }

    #[test]
    fn start_errors_map_to_the_table() {
        let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let config = crate::config::Config::parse("port: x\n").expect_err("invalid");
        let cases = [
            (StartError::Config(config), Exit::Config),
            (
                StartError::Bind {
                    addr: "127.0.0.1:25".into(),
                    source: io(),
                },
                Exit::Failure,
            ),
            (
                StartError::Pidfile {
                    path: "/run/x.pid".into(),
                    source: io().into(),
                },
                Exit::CantCreate,
            ),
            (
                StartError::Store {
                    kind: "sqlite",
                    source: mtasts_cache::CacheError::unavailable("sqlite", io()),
                },
                Exit::Unavailable,
            ),
            (
                StartError::Store {
                    kind: "redis",
                    source: mtasts_cache::CacheError::Config {
                        store: "redis",
                        reason: "invalid URL".into(),
                        source: None,
                    },
                },
                Exit::Config,
            ),
            (
                StartError::Fetcher(mtasts_fetch::BuildError::NoNameserver),
                Exit::Config,
            ),
        ];
        for (error, exit) in cases {
            assert_eq!(Exit::of(&error), exit, "{error}");
        }
    }
}
