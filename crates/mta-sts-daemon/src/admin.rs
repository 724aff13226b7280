//! `mta-sts-daemon cache …`: administers the policy cache, through the running daemon when it runs, else the
//! configured store directly.
//!
//! When the daemon's control socket (`control.socket`) answers, the commands go through it
//! ([`ControlClient`]): the daemon reads its store, or its memory with `cache.type: internal`, and a purge
//! empties its memory at once. Only when the socket is absent or refuses (`ENOENT`, `ECONNREFUSED`; not
//! `EACCES`, which is reported) is the store opened from the configuration file exactly as the daemon opens it,
//! and the command works on it directly. Daemons sharing the store keep their memory copy of a purged policy for at most `cache_grace`: when
//! it has passed, the engine re-reads the store, finds the entry gone and discovers the domain afresh (DNS and an
//! HTTPS fetch), so a purge reaches every daemon using the store within `cache_grace`.
//!
//! With `cache.type: internal` and no daemon running there is no cache to work on: the commands say so and
//! exit with [`Exit::Unavailable`].
//!
//! Exit codes ([`crate::exit`]): 0 done; 1 `show`/`purge` of a domain that is not cached, corrupt entries
//! reported (the others are still listed), output that cannot be written; 2 bad command line or DOMAIN; 69 the
//! store cannot be reached, there is none, or the SQLite file does not exist (it is not created); 78 invalid
//! configuration (also a `-c` file that does not exist).

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;

use mtasts_cache::{CacheEntry, CacheError, PolicyCache, ScanToken};
use mtasts_core::{Policy, PolicyDomain, PolicyId};
use mtasts_engine::{Clock as _, SystemClock};

use crate::StartError;
use crate::cli::{CacheCommand, Cli, PurgeArgs};
use crate::config::CacheConfig;
use crate::control_client::{ControlClient, no_daemon};
use crate::exit::Exit;
use crate::stores;

/// How many entries each store scan returns.
const PAGE_SIZE: usize = 256;

/// Runs a `cache` command against the store configured by `cli` (`-c`); returns the process exit code.
///
/// Messages and errors go to standard error, results to standard output.
pub(crate) fn run(cli: &Cli, command: &CacheCommand) -> ExitCode {
    let (config, diagnostics) = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mta-sts-daemon: {}: {e}", cli.config_path().display());
            return Exit::Config.into();
        }
    };
    for key in diagnostics.unknown_keys() {
        eprintln!("mta-sts-daemon: warning: unknown configuration key {key} ignored");
    }
    for warning in diagnostics.warnings() {
        eprintln!("mta-sts-daemon: warning: {warning}");
    }
    let mut err = io::stderr();
    let action = match Action::from_command(command, &mut err) {
        Ok(action) => action,
        Err(code) => return code.into(),
    };
    let Some(runtime) = command_runtime() else {
        return Exit::Failure.into();
    };
    let code = runtime.block_on(async {
        // Through the running daemon when there is one: it sees its memory too, and a purge reaches it at once.
        let socket = &config.control.socket;
        match ControlClient::connect(socket).await {
            Ok(client) => {
                let daemon: Arc<dyn PolicyCache> = Arc::new(client);
                let mut out = io::stdout().lock();
                let location = format!("the running daemon ({})", socket.display());
                return perform(Some(&daemon), &location, &action, &mut out, &mut err).await;
            }
            Err(e) if no_daemon(&e) => {}
            Err(e) => {
                eprintln!(
                    "mta-sts-daemon: cannot reach the running daemon at {} (control.socket): {e}; the store is used \
                     directly only when no daemon runs (the socket is absent or refuses)",
                    socket.display()
                );
                return Exit::Unavailable;
            }
        }
        // Opening a SQLite file that does not exist would create it, owned by whoever runs this command.
        if let CacheConfig::Sqlite { filename, .. } = &config.cache
            && !filename.exists()
        {
            eprintln!(
                "mta-sts-daemon: the sqlite cache {} does not exist (no daemon has used it yet?)",
                filename.display()
            );
            return Exit::Unavailable;
        }
        // Errors name the store (file, URL, hosts; no password) and the driver's causes.
        let location = stores::target(&config.cache).unwrap_or_default();
        let store = match stores::open(&config.cache, config.limits.memory_cache_size).await {
            Ok((store, _)) => store,
            Err(StartError::Store { kind, source }) => {
                eprintln!(
                    "mta-sts-daemon: cannot open the {kind} cache at {location}: {}",
                    source.with_causes()
                );
                return Exit::Unavailable;
            }
            Err(e) => {
                eprintln!("mta-sts-daemon: {e}");
                return Exit::Config;
            }
        };
        let mut out = io::stdout().lock();
        let code = perform(store.as_ref(), &location, &action, &mut out, &mut err).await;
        if let Some(store) = &store {
            store.close().await;
        }
        code
    });
    code.into()
}

/// A `cache` command with its DOMAIN checked.
enum Action {
    List,
    Export,
    Show(PolicyDomain),
    Purge(PolicyDomain),
    PurgeAll,
}

impl Action {
    /// Normalises DOMAIN as the daemon does; an invalid one is a usage error (reported on `err`).
    fn from_command(command: &CacheCommand, err: &mut dyn Write) -> Result<Self, Exit> {
        let parse = |domain: &str, err: &mut dyn Write| {
            PolicyDomain::parse(domain).map_err(|e| {
                let _ = writeln!(
                    err,
                    "mta-sts-daemon: {domain:?} is not a valid policy domain: {e}"
                );
                Exit::Usage
            })
        };
        Ok(match command {
            CacheCommand::List => Self::List,
            CacheCommand::Export => Self::Export,
            CacheCommand::Show { domain } => Self::Show(parse(domain, err)?),
            CacheCommand::Purge(PurgeArgs {
                domain: None,
                all: true,
            }) => Self::PurgeAll,
            CacheCommand::Purge(PurgeArgs {
                domain: Some(domain),
                all: false,
            }) => Self::Purge(parse(domain, err)?),
            // clap's argument group rules these out; a library caller may still build them.
            CacheCommand::Purge(_) => {
                let _ = writeln!(
                    err,
                    "mta-sts-daemon: cache purge needs either a DOMAIN or --all"
                );
                return Err(Exit::Usage);
            }
        })
    }
}

async fn perform(
    store: Option<&Arc<dyn PolicyCache>>,
    location: &str,
    action: &Action,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let Some(store) = store else {
        let _ = writeln!(
            err,
            "mta-sts-daemon: cache.type is internal and no daemon runs (its control socket is absent or refuses): \
             cached policies live only in the memory of a running daemon; start it, or configure a persistent \
             store (sqlite, redis, postgres)"
        );
        return Exit::Unavailable;
    };
    let store = &**store;
    let result = match action {
        Action::List => scan_all(store, out, err, Format::Table).await,
        Action::Export => scan_all(store, out, err, Format::JsonLines).await,
        Action::Show(domain) => show(store, domain, out, err).await,
        Action::Purge(domain) => purge(store, domain, out, err).await,
        Action::PurgeAll => purge_all(store, out).await,
    };
    match result {
        Ok(code) => code,
        Err(Failure::Store(e)) => {
            let _ = writeln!(
                err,
                "mta-sts-daemon: policy cache at {location}: {} ({})",
                e.with_causes(),
                e.kind()
            );
            Exit::Unavailable
        }
        // A closed pipe (`… | head`) is a normal end.
        Err(Failure::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Exit::Success,
        Err(Failure::Output(e)) => {
            let _ = writeln!(err, "mta-sts-daemon: cannot write the output: {e}");
            Exit::Failure
        }
    }
}

/// Why a command stopped.
enum Failure {
    Store(CacheError),
    Output(io::Error),
}

impl From<CacheError> for Failure {
    fn from(e: CacheError) -> Self {
        Self::Store(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Self::Output(e)
    }
}

#[derive(Clone, Copy)]
enum Format {
    Table,
    JsonLines,
}

/// `list` and `export`: every entry, page by page; corrupt entries are reported and skipped.
async fn scan_all(
    store: &dyn PolicyCache,
    out: &mut dyn Write,
    err: &mut dyn Write,
    format: Format,
) -> Result<Exit, Failure> {
    let now = SystemClock.now();
    if let Format::Table = format {
        writeln!(
            out,
            "DOMAIN\tPOLICY_ID\tMODE\tMAX_AGE\tCHECKED_AT\tEXPIRES_AT"
        )?;
    }
    let (mut listed, mut corrupt) = (0u64, 0u64);
    let mut token: Option<ScanToken> = None;
    loop {
        let page = store.scan(token.as_ref(), PAGE_SIZE).await?;
        for (domain, entry) in &page.entries {
            match format {
                Format::Table => write_row(out, domain, entry, now)?,
                Format::JsonLines => write_json(out, domain, entry)?,
            }
            listed += 1;
        }
        for bad in &page.corrupt {
            corrupt += 1;
            let _ = writeln!(
                err,
                "mta-sts-daemon: corrupt cache entry {:?} skipped: {} (remove it with `cache purge`)",
                bad.domain, bad.error
            );
        }
        match page.next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    out.flush()?;
    let _ = writeln!(
        err,
        "{listed} cached {}{}",
        plural(listed, "policy", "policies"),
        if corrupt > 0 {
            format!(
                ", {corrupt} corrupt {} skipped",
                plural(corrupt, "entry", "entries")
            )
        } else {
            String::new()
        }
    );
    Ok(if corrupt > 0 {
        Exit::Failure
    } else {
        Exit::Success
    })
}

async fn show(
    store: &dyn PolicyCache,
    domain: &PolicyDomain,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, Failure> {
    let entry = match store.get(domain.as_str()).await {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            let _ = writeln!(err, "mta-sts-daemon: {domain} is not cached");
            return Ok(Exit::Failure);
        }
        Err(e @ CacheError::Corrupt { .. }) => {
            let _ = writeln!(
                err,
                "mta-sts-daemon: the cache entry of {domain} is corrupt: {e} (remove it with `cache purge {domain}`)"
            );
            return Ok(Exit::Failure);
        }
        Err(e) => return Err(e.into()),
    };
    let now = SystemClock.now();
    let expires = expires_at(&entry);
    let state = if expires > now { "valid" } else { "expired" };
    writeln!(out, "domain:     {domain}")?;
    writeln!(out, "policy id:  {}", entry.policy_id)?;
    writeln!(
        out,
        "checked at: {} ({})",
        rfc3339(entry.checked_at),
        entry.checked_at
    )?;
    writeln!(
        out,
        "fetched at: {} ({})",
        rfc3339(entry.fetched_at),
        entry.fetched_at
    )?;
    writeln!(out, "expires at: {} ({state})", rfc3339(expires))?;
    writeln!(out, "policy:")?;
    for line in entry.policy.to_string().lines() {
        writeln!(out, "  {line}")?;
    }
    out.flush()?;
    Ok(Exit::Success)
}

async fn purge(
    store: &dyn PolicyCache,
    domain: &PolicyDomain,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, Failure> {
    if store.remove(domain.as_str()).await? {
        writeln!(out, "purged {domain}")?;
        out.flush()?;
        Ok(Exit::Success)
    } else {
        let _ = writeln!(err, "mta-sts-daemon: {domain} is not cached");
        Ok(Exit::Failure)
    }
}

async fn purge_all(store: &dyn PolicyCache, out: &mut dyn Write) -> Result<Exit, Failure> {
    let removed = store.clear().await?;
    writeln!(
        out,
        "purged {removed} cached {}",
        plural(removed, "policy", "policies")
    )?;
    out.flush()?;
    Ok(Exit::Success)
}

/// One `list` line.
fn write_row(out: &mut dyn Write, domain: &str, entry: &CacheEntry, now: u64) -> io::Result<()> {
    let expires = expires_at(entry);
    writeln!(
        out,
        "{domain}\t{}\t{}\t{}\t{}\t{}{}",
        entry.policy_id,
        entry.policy.mode(),
        entry.policy.max_age(),
        rfc3339(entry.checked_at),
        rfc3339(expires),
        if expires > now { "" } else { " (expired)" }
    )
}

/// One `export` line.
fn write_json(out: &mut dyn Write, domain: &str, entry: &CacheEntry) -> io::Result<()> {
    #[derive(serde::Serialize)]
    struct Exported<'a> {
        domain: &'a str,
        policy_id: &'a PolicyId,
        checked_at: u64,
        fetched_at: u64,
        policy: &'a Policy,
    }
    let line = Exported {
        domain,
        policy_id: &entry.policy_id,
        checked_at: entry.checked_at,
        fetched_at: entry.fetched_at,
        policy: &entry.policy,
    };
    serde_json::to_writer(&mut *out, &line).map_err(io::Error::from)?;
    out.write_all(b"\n")
}

/// RFC 8461 §5.1: a policy is valid for `max_age` seconds after its fetch.
fn expires_at(entry: &CacheEntry) -> u64 {
    entry
        .fetched_at
        .saturating_add(u64::from(entry.policy.max_age().as_secs()))
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// `ts` (Unix seconds) as an RFC 3339 UTC time, e.g. `2023-11-14T22:13:20Z`; a time past jiff's range (the end
/// of year 9999; only a corrupt store row can hold one) as `@` and its number of seconds.
pub(crate) fn rfc3339(ts: u64) -> String {
    i64::try_from(ts)
        .ok()
        .and_then(|secs| jiff::Timestamp::from_second(secs).ok())
        .map_or_else(|| format!("@{ts}"), |t| t.to_string())
}

/// The runtime of a command that talks to a store or to the running daemon (`cache`, `query`,
/// `--check-config`): one thread. `None` (the cause printed) when it cannot be started.
pub(crate) fn command_runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .inspect_err(|e| eprintln!("mta-sts-daemon: cannot start the async runtime: {e}"))
        .ok()
}

#[cfg(test)]
mod tests {
    use mtasts_cache::MemoryCache;

    use super::*;

    const ENFORCE: &str = "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mail.example.com\n";

    async fn store_with(domains: &[&str]) -> Arc<dyn PolicyCache> {
        let store: Arc<dyn PolicyCache> = Arc::new(MemoryCache::new(100));
        for d in domains {
            let entry = CacheEntry::new(
                1_700_000_000,
                "id1".parse().expect("id"),
                ENFORCE.parse().expect("policy"),
            );
            store.set(d, &entry).await.expect("set");
        }
        store
    }

    /// Runs `cmd` against `store` (`None` = `cache.type: internal`): exit code, standard output and error.
    async fn exec(
        store: Option<&Arc<dyn PolicyCache>>,
        cmd: CacheCommand,
    ) -> (Exit, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = match Action::from_command(&cmd, &mut err) {
            Ok(action) => perform(store, "the test store", &action, &mut out, &mut err).await,
            Err(code) => code,
        };
        (
            code,
            String::from_utf8(out).expect("utf-8"),
            String::from_utf8(err).expect("utf-8"),
        )
    }

    fn show_of(domain: &str) -> CacheCommand {
        CacheCommand::Show {
            domain: domain.to_owned(),
        }
    }

    fn purge_of(domain: &str) -> CacheCommand {
        CacheCommand::Purge(PurgeArgs {
            domain: Some(domain.to_owned()),
            all: false,
        })
    }

    #[test]
    fn rfc3339_known_instants() {
        for (ts, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (253_402_207_200, "9999-12-30T22:00:00Z"),
            (253_402_300_800, "@253402300800"),
            (u64::MAX, "@18446744073709551615"),
        ] {
            assert_eq!(rfc3339(ts), want, "{ts}");
        }
    }

    #[tokio::test]
    async fn list_prints_a_header_and_one_row_per_domain() {
        let store = store_with(&["b.example", "a.example"]).await;
        let (code, out, err) = exec(Some(&store), CacheCommand::List).await;
        assert_eq!(code, Exit::Success, "{err}");
        let mut lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines.remove(0),
            "DOMAIN\tPOLICY_ID\tMODE\tMAX_AGE\tCHECKED_AT\tEXPIRES_AT"
        );
        lines.sort_unstable();
        assert_eq!(
            lines,
            [
                "a.example\tid1\tenforce\t86400\t2023-11-14T22:13:20Z\t2023-11-15T22:13:20Z (expired)",
                "b.example\tid1\tenforce\t86400\t2023-11-14T22:13:20Z\t2023-11-15T22:13:20Z (expired)",
            ]
        );
        assert_eq!(err, "2 cached policies\n");
    }

    #[tokio::test]
    async fn show_normalises_the_domain() {
        let store = store_with(&["example.com"]).await;
        let (code, out, _) = exec(Some(&store), show_of("Example.COM.")).await;
        assert_eq!(code, Exit::Success);
        assert!(
            out.starts_with("domain:     example.com\npolicy id:  id1\n"),
            "{out}"
        );
        assert!(out.ends_with("policy:\n  version: STSv1\n  mode: enforce\n  max_age: 86400\n  mx: mail.example.com\n"), "{out}");
    }

    #[tokio::test]
    async fn show_and_purge_of_an_absent_domain_exit_1() {
        let store = store_with(&["example.com"]).await;
        let (code, out, err) = exec(Some(&store), show_of("other.example")).await;
        assert_eq!((code, out.as_str()), (Exit::Failure, ""));
        assert!(err.contains("other.example is not cached"), "{err}");
        let (code, _, _) = exec(Some(&store), purge_of("other.example")).await;
        assert_eq!(code, Exit::Failure);
    }

    #[tokio::test]
    async fn purge_removes_one_u_label_domain() {
        let store = store_with(&["xn--bcher-kva.example", "example.com"]).await;
        let (code, out, _) = exec(Some(&store), purge_of("BÜCHER.example.")).await;
        assert_eq!(
            (code, out.as_str()),
            (Exit::Success, "purged xn--bcher-kva.example\n")
        );
        assert!(matches!(store.get("xn--bcher-kva.example").await, Ok(None)));
        assert!(matches!(store.get("example.com").await, Ok(Some(_))));
    }

    #[tokio::test]
    async fn purge_all_reports_the_count() {
        let store = store_with(&["a.example", "b.example", "c.example"]).await;
        let all = CacheCommand::Purge(PurgeArgs {
            domain: None,
            all: true,
        });
        let (code, out, _) = exec(Some(&store), all.clone()).await;
        assert_eq!(
            (code, out.as_str()),
            (Exit::Success, "purged 3 cached policies\n")
        );
        let (code, out, _) = exec(Some(&store), all).await;
        assert_eq!(
            (code, out.as_str()),
            (Exit::Success, "purged 0 cached policies\n")
        );
    }

    #[tokio::test]
    async fn invalid_domain_is_a_usage_error() {
        let store = store_with(&[]).await;
        for bad in [".example.com", "192.0.2.1", "a..b"] {
            let (code, _, err) = exec(Some(&store), purge_of(bad)).await;
            assert_eq!(code, Exit::Usage, "{bad}");
            assert!(err.contains("not a valid policy domain"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn export_writes_one_json_object_per_line() {
        let store = store_with(&["example.com"]).await;
        let (code, out, _) = exec(Some(&store), CacheCommand::Export).await;
        assert_eq!(code, Exit::Success);
        assert_eq!(
            out,
            "{\"domain\":\"example.com\",\"policy_id\":\"id1\",\"checked_at\":1700000000,\"fetched_at\":1700000000,\
             \"policy\":{\"version\":\"STSv1\",\"mode\":\"enforce\",\"max_age\":86400,\"mx\":[\"mail.example.com\"]}}\n"
        );
    }

    #[tokio::test]
    async fn internal_cache_is_refused_with_a_clear_message() {
        for cmd in [
            CacheCommand::List,
            CacheCommand::Export,
            purge_of("example.com"),
        ] {
            let (code, out, err) = exec(None, cmd).await;
            assert_eq!((code, out.as_str()), (Exit::Unavailable, ""));
            assert!(err.contains("cache.type is internal"), "{err}");
        }
    }

    /// A store that is down, or serves two scan pages with a corrupt entry on the first.
    #[derive(Debug)]
    struct Fake {
        down: bool,
    }

    #[mtasts_cache::async_trait]
    impl PolicyCache for Fake {
        async fn get(&self, _: &str) -> Result<Option<CacheEntry>, CacheError> {
            Err(self.error())
        }
        async fn set(&self, _: &str, _: &CacheEntry) -> Result<bool, CacheError> {
            Err(self.error())
        }
        async fn scan(
            &self,
            token: Option<&ScanToken>,
            _: usize,
        ) -> Result<mtasts_cache::ScanPage, CacheError> {
            if self.down {
                return Err(self.error());
            }
            let entry = CacheEntry::new(
                1_700_000_000,
                "id1".parse().expect("id"),
                ENFORCE.parse().expect("policy"),
            );
            Ok(match token {
                None => mtasts_cache::ScanPage {
                    entries: vec![("a.example".into(), entry)],
                    corrupt: vec![mtasts_cache::CorruptEntry {
                        domain: "bad.example".into(),
                        error: CacheError::corrupt("bad.example", "invalid JSON"),
                    }],
                    next: Some(ScanToken::new("page2".to_owned())),
                },
                Some(_) => mtasts_cache::ScanPage {
                    entries: vec![("b.example".into(), entry)],
                    corrupt: Vec::new(),
                    next: None,
                },
            })
        }
        async fn remove(&self, _: &str) -> Result<bool, CacheError> {
            Err(self.error())
        }
        async fn clear(&self) -> Result<u64, CacheError> {
            Err(self.error())
        }
        async fn proactive_fetch_ts(&self) -> Result<Option<u64>, CacheError> {
            Err(self.error())
        }
        async fn set_proactive_fetch_ts(&self, _: u64) -> Result<(), CacheError> {
            Err(self.error())
        }
        async fn close(&self) {}
    }

    impl Fake {
        fn error(&self) -> CacheError {
            if self.down {
                CacheError::unavailable("test", io::Error::from(io::ErrorKind::ConnectionRefused))
            } else {
                CacheError::corrupt("example.com", "invalid JSON")
            }
        }
    }

    #[tokio::test]
    async fn corrupt_entries_are_reported_and_the_scan_goes_on() {
        let store: Arc<dyn PolicyCache> = Arc::new(Fake { down: false });
        for cmd in [CacheCommand::List, CacheCommand::Export] {
            let (code, out, err) = exec(Some(&store), cmd.clone()).await;
            assert_eq!(code, Exit::Failure, "{cmd:?}");
            assert!(
                out.contains("a.example") && out.contains("b.example"),
                "{cmd:?}: {out}"
            );
            assert!(
                err.contains("corrupt cache entry \"bad.example\" skipped"),
                "{err}"
            );
            assert!(
                err.ends_with("2 cached policies, 1 corrupt entry skipped\n"),
                "{err}"
            );
        }
        let (code, out, err) = exec(Some(&store), show_of("example.com")).await;
        assert_eq!((code, out.as_str()), (Exit::Failure, ""));
        assert!(
            err.contains("corrupt") && err.contains("cache purge example.com"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_store_exits_69() {
        let store: Arc<dyn PolicyCache> = Arc::new(Fake { down: true });
        for cmd in [
            CacheCommand::List,
            CacheCommand::Export,
            show_of("example.com"),
            purge_of("example.com"),
        ] {
            let (code, _, err) = exec(Some(&store), cmd.clone()).await;
            assert_eq!(code, Exit::Unavailable, "{cmd:?}");
            assert!(
                err.contains("policy cache at the test store: test cache unavailable: "),
                "{cmd:?}: {err}"
            );
        }
    }
}
