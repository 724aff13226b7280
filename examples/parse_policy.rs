//! Embedding `mtasts-core`: parse an MTA-STS policy and check MX hosts against it.
//!
//! ```text
//! cargo run -p mtasts-core --example parse_policy                      # built-in sample
//! cargo run -p mtasts-core --example parse_policy -- policy.txt mx1.example.com
//! ```
//!
//! With a file argument the policy is read from that file; further arguments are MX host names
//! to match (RFC 8461 §4.1).

use std::process::ExitCode;

use mtasts_core::{Mode, Policy, select_record};

const SAMPLE_POLICY: &str = "version: STSv1\r\n\
                             mode: enforce\r\n\
                             mx: mail.example.com\r\n\
                             mx: *.example.net\r\n\
                             max_age: 604800\r\n";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (body, hosts) = match args.next() {
        Some(path) => (std::fs::read(path)?, args.collect::<Vec<_>>()),
        None => {
            // The TXT records a resolver returned for `_mta-sts.example.com`.
            let record = select_record(["v=spf1 -all", "v=STSv1; id=20240101T000000;"])?;
            println!("TXT record id: {}", record.id());
            let hosts = [
                "mail.example.com",
                "mx1.example.net",
                "a.b.example.net",
                "example.net",
            ];
            (
                SAMPLE_POLICY.as_bytes().to_vec(),
                hosts.map(String::from).to_vec(),
            )
        }
    };

    let policy = Policy::parse(&body)?;
    println!("mode: {}, max_age: {} s", policy.mode(), policy.max_age());
    for pattern in policy.mx() {
        println!("mx pattern: {pattern}");
    }
    for host in &hosts {
        let verdict = match (policy.matches_mx(host), policy.mode()) {
            (true, _) => "matches: deliver with a validated TLS certificate",
            (false, Mode::Enforce) => "no match: do not deliver (enforce)",
            (false, Mode::Testing) => "no match: deliver, but report (testing)",
            (false, Mode::None) => "policy mode is none: deliver as usual",
        };
        println!("{host}: {verdict}");
    }
    println!("canonical policy:\n{policy}");
    Ok(())
}
