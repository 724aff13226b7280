//! `mta-sts-query`: what MTA-STS policy does a domain publish, and why (or why not).
//!
//! Compatible with the Python tool's command line:
//! `mta-sts-query [-v {debug,info,warn,error,fatal}] domain [known_version]`, plus `--json`,
//! `--dane`, `--nameserver`, `--ca-file` and `--timeout`. The exit code tells the outcome (see
//! [`Outcome`]); `-v debug` traces every discovery step on stderr.

use std::io::{self, IsTerminal as _, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use mtasts_cli::{Generate, Verbosity};
use mtasts_core::{PolicyDomain, PolicyId};
use mtasts_fetch::{Discovery, Fetcher};

mod dane_report;

const EXIT_CODES: &str = "\
Exit status:
  0  the domain has a policy (fetched and valid)
  1  usage or configuration error (bad option value, unreadable CA file, ...)
  2  invalid command line
  3  the domain has no policy (no TXT record, NXDOMAIN, no valid STSv1 record, ...)
  4  the policy id equals KNOWN_VERSION: unchanged, not fetched
  5  discovery failed (DNS failure or timeout, TLS, HTTP, invalid policy file, ...)
The status is the MTA-STS discovery's, also with --dane.";

/// The outcome of a query, as an exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// 0: a valid policy was fetched.
    Policy = 0,
    /// 1: bad configuration (reported through `anyhow`).
    Error = 1,
    /// 3: the domain has no policy.
    NoPolicy = 3,
    /// 4: the id equals the known version.
    Unchanged = 4,
    /// 5: discovery failed.
    Failed = 5,
}

/// Query the MTA-STS policy of a domain (RFC 8461): TXT record, then the HTTPS policy file.
#[derive(Debug, Parser)]
#[command(name = "mta-sts-query", version, after_help = EXIT_CODES)]
struct Args {
    /// Print a man page or shell completions on stdout and exit.
    #[arg(long, value_enum, value_name = "KIND", exclusive = true)]
    generate: Option<Generate>,

    /// Log verbosity on stderr; `debug` shows every discovery step.
    #[arg(short = 'v', long = "verbosity", value_enum, default_value = "warn")]
    verbosity: Verbosity,

    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,

    /// Also run the DANE discovery (RFC 7672): MX, each host's addresses and TLSA records, and the
    /// answer the daemon gives in a zone with `dane: true`.
    #[arg(long)]
    dane: bool,

    /// Nameserver to ask, `IP` or `IP:PORT` (repeatable; default: /etc/resolv.conf).
    #[arg(long = "nameserver", value_name = "ADDR", value_parser = parse_nameserver)]
    nameservers: Vec<SocketAddr>,

    /// Also trust the CA certificates in this PEM file (repeatable).
    #[arg(long = "ca-file", value_name = "FILE")]
    ca_files: Vec<PathBuf>,

    /// Bound on the whole discovery, in seconds.
    #[arg(long, value_name = "SECS", default_value = "4", value_parser = parse_timeout)]
    timeout: Duration,

    /// Port of the policy host (testing only).
    #[arg(long, hide = true)]
    port: Option<u16>,

    /// The policy domain (the recipient domain, e.g. `example.com`).
    #[arg(required_unless_present = "generate")]
    domain: Option<String>,

    /// The last known policy id: when the TXT record still has it, the policy is not fetched.
    known_version: Option<String>,
}

fn parse_nameserver(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{text:?} is not IP or IP:PORT"))
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|secs| secs.is_finite() && *secs > 0.0 && *secs <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{text:?} is not a number of seconds in (0, 3600]"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match (args.generate, args.domain.as_deref()) {
        (Some(kind), _) => {
            use clap::CommandFactory as _;
            kind.print(Args::command(), "1")
                .map(|()| Outcome::Policy)
                .map_err(anyhow::Error::from)
        }
        (None, Some(domain)) => {
            init_logging(args.verbosity);
            run(&args, domain)
        }
        // clap requires DOMAIN unless --generate is given.
        (None, None) => Ok(Outcome::Error),
    };
    match result {
        Ok(outcome) => ExitCode::from(outcome as u8),
        Err(error) => {
            if is_broken_pipe(&error) {
                return ExitCode::SUCCESS;
            }
            eprintln!("mta-sts-query: {error:#}");
            ExitCode::from(Outcome::Error as u8)
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

fn init_logging(verbosity: Verbosity) {
    let level = verbosity.level();
    let filter = tracing_subscriber::EnvFilter::try_from_env("MTASTS_LOG").unwrap_or_else(|_| {
        let others = tracing::Level::WARN.min(level);
        tracing_subscriber::EnvFilter::new(format!(
            "{others},mtasts_fetch={level},mtasts_core={level},mta_sts_query={level}"
        ))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn run(args: &Args, domain: &str) -> anyhow::Result<Outcome> {
    let known_id = args
        .known_version
        .as_deref()
        .map(str::parse::<PolicyId>)
        .transpose()
        .context("invalid known_version")?;
    let mut builder = Fetcher::builder().timeout(args.timeout);
    if !args.nameservers.is_empty() {
        builder = builder.nameservers(args.nameservers.clone());
    }
    for path in &args.ca_files {
        builder = builder.extra_ca_pem_file(path);
    }
    if let Some(port) = args.port {
        builder = builder.policy_port(port);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (discovery, dane) = runtime.block_on(async {
        let fetcher = builder.build().context("cannot set up discovery")?;
        let dane = async {
            match PolicyDomain::parse(domain) {
                Ok(policy_domain) if args.dane => Some(fetcher.discover_dane(&policy_domain).await),
                _ => None,
            }
        };
        anyhow::Ok(tokio::join!(
            fetcher.discover_name(domain, known_id.as_ref()),
            dane
        ))
    })?;
    let outcome = outcome(&discovery);
    report::leniency_warnings(&mut io::stderr().lock(), domain, &discovery)?;
    let mut stdout = io::stdout().lock();
    if args.json {
        let mut value = report::json(domain, &discovery);
        if let Some(view) = &dane {
            value["dane"] = dane_report::json(view);
        }
        serde_json::to_writer_pretty(&mut stdout, &value)?;
        writeln!(stdout)?;
    } else {
        report::text(&mut stdout, domain, &discovery)?;
        if let Some(view) = &dane {
            dane_report::text(&mut stdout, view)?;
        }
    }
    stdout.flush()?;
    Ok(outcome)
}

fn outcome(discovery: &Discovery) -> Outcome {
    match discovery {
        Discovery::Fetched { .. } => Outcome::Policy,
        Discovery::Unchanged { .. } => Outcome::Unchanged,
        Discovery::NoPolicy { .. } => Outcome::NoPolicy,
        Discovery::Failed(_) => Outcome::Failed,
    }
}

mod report {
    //! Human-readable and JSON renderings of a [`Discovery`].

    use std::io::{self, Write};

    use mtasts_fetch::Discovery;
    use serde_json::{Value, json};

    /// The error and its sources, joined by ": ".
    fn chain(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        text
    }

    /// One warning line per deviation from RFC 8461 that the record or policy was accepted through
    /// (mtasts-core's "Strictness"): the domain's administrator should fix it.
    pub(crate) fn leniency_warnings(
        out: &mut impl Write,
        domain: &str,
        discovery: &Discovery,
    ) -> io::Result<()> {
        if let Discovery::Fetched { policy, .. } = discovery {
            for leniency in policy.leniencies() {
                writeln!(
                    out,
                    "mta-sts-query: warning: {domain}: accepted only through a leniency: {leniency}"
                )?;
            }
        }
        Ok(())
    }

    pub(crate) fn text(
        out: &mut impl Write,
        domain: &str,
        discovery: &Discovery,
    ) -> io::Result<()> {
        writeln!(out, "domain:       {domain}")?;
        match discovery {
            Discovery::Fetched { id, policy } => {
                writeln!(out, "status:       policy")?;
                writeln!(out, "id:           {id}")?;
                writeln!(out, "mode:         {}", policy.mode())?;
                writeln!(out, "max_age:      {}", policy.max_age())?;
                let mut mx = policy.mx().iter();
                match mx.next() {
                    None => writeln!(out, "mx:           (none)")?,
                    Some(first) => {
                        writeln!(out, "mx:           {first}")?;
                        for pattern in mx {
                            writeln!(out, "              {pattern}")?;
                        }
                    }
                }
                for (key, value) in policy.extensions() {
                    writeln!(out, "extension:    {key}: {value}")?;
                }
            }
            Discovery::Unchanged { id } => {
                writeln!(out, "status:       unchanged")?;
                writeln!(
                    out,
                    "id:           {id} (same as the known version; not fetched)"
                )?;
            }
            Discovery::NoPolicy {
                reason,
                negative_ttl,
            } => {
                writeln!(out, "status:       no policy")?;
                writeln!(out, "reason:       {reason}")?;
                if let Some(ttl) = negative_ttl {
                    writeln!(out, "negative_ttl: {}s", ttl.as_secs())?;
                }
            }
            Discovery::Failed(error) => {
                writeln!(out, "status:       failed ({})", error.kind())?;
                writeln!(out, "reason:       {}", chain(error))?;
            }
        }
        Ok(())
    }

    pub(crate) fn json(domain: &str, discovery: &Discovery) -> Value {
        match discovery {
            Discovery::Fetched { id, policy } => json!({
                "domain": domain, "status": "policy", "id": id, "policy": policy,
                "leniencies": policy.leniencies(),
            }),
            Discovery::Unchanged { id } => json!({
                "domain": domain, "status": "unchanged", "id": id,
            }),
            Discovery::NoPolicy {
                reason,
                negative_ttl,
            } => json!({
                "domain": domain, "status": "no_policy",
                "reason": { "kind": reason.kind(), "message": reason.to_string() },
                "negative_ttl": negative_ttl.map(|t| t.as_secs()),
            }),
            Discovery::Failed(error) => json!({
                "domain": domain, "status": "failed",
                "reason": { "kind": error.kind(), "message": chain(error) },
            }),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use mtasts_core::Policy;

        #[test]
        fn text_report_lists_every_mx() {
            let policy = Policy::parse(
                b"version: STSv1\nmode: enforce\nmx: a.example\nmx: *.b.example\nmax_age: 60\n",
            )
            .expect("valid");
            let discovery = Discovery::Fetched {
                id: "x1".parse().expect("id"),
                policy,
            };
            let mut out = Vec::new();
            text(&mut out, "example.com", &discovery).expect("write");
            let out = String::from_utf8(out).expect("utf8");
            assert!(out.contains("mode:         enforce"), "{out}");
            assert!(
                out.contains("mx:           a.example\n              *.b.example\n"),
                "{out}"
            );
            let value = json("example.com", &discovery);
            assert_eq!(value["status"], "policy");
            assert_eq!(value["policy"]["mx"][1], "*.b.example");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameserver_accepts_ip_and_ip_port() {
        assert_eq!(
            parse_nameserver("192.0.2.1"),
            Ok("192.0.2.1:53".parse().unwrap())
        );
        assert_eq!(
            parse_nameserver("192.0.2.1:5353"),
            Ok("192.0.2.1:5353".parse().unwrap())
        );
        assert_eq!(parse_nameserver("::1"), Ok("[::1]:53".parse().unwrap()));
        assert_eq!(
            parse_nameserver("[::1]:5353"),
            Ok("[::1]:5353".parse().unwrap())
        );
        assert!(parse_nameserver("ns.example").is_err());
    }

    #[test]
    fn timeout_must_be_positive_seconds() {
        assert_eq!(parse_timeout("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("NaN").is_err());
    }

    #[test]
    fn python_compatible_command_line() {
        let args = Args::try_parse_from(["mta-sts-query", "-v", "debug", "example.com", "v1"])
            .expect("parses");
        assert_eq!(args.verbosity, Verbosity::Debug);
        assert_eq!(args.domain.as_deref(), Some("example.com"));
        assert_eq!(args.known_version.as_deref(), Some("v1"));
        let args =
            Args::try_parse_from(["mta-sts-query", "-v", "fatal", "example.com"]).expect("parses");
        assert_eq!(args.verbosity.level(), tracing::Level::ERROR);
        assert!(Args::try_parse_from(["mta-sts-query", "-v", "loud", "example.com"]).is_err());
        assert!(
            Args::try_parse_from(["mta-sts-query"]).is_err(),
            "DOMAIN is required"
        );
        let args = Args::try_parse_from(["mta-sts-query", "--generate", "man"]).expect("parses");
        assert_eq!(args.generate, Some(Generate::Man));
        assert!(Args::try_parse_from(["mta-sts-query", "--generate", "man", "x.test"]).is_err());
    }

    #[test]
    fn exit_codes_are_distinct() {
        let codes = [
            Outcome::Policy,
            Outcome::Error,
            Outcome::NoPolicy,
            Outcome::Unchanged,
            Outcome::Failed,
        ]
        .map(|o| o as u8);
        let mut sorted = codes.to_vec();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len());
        assert!(!codes.contains(&2), "2 is clap's usage error");
    }
}
