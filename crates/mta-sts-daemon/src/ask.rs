//! `mta-sts-daemon query DOMAIN [--zone Z] [--json]`: asks the running daemon, through its control socket, what
//! a socketmap lookup answers and why.
//!
//! Exit status ([`crate::exit`]): 0 for an `OK` answer, 1 for `NOTFOUND`, 69 when the daemon cannot be reached
//! (no control socket, nothing listening, no answer), 78 for an invalid configuration.

use std::io::{self, Write};
use std::process::ExitCode;

use serde_json::Value;

use crate::admin::{command_runtime, rfc3339};
use crate::cli::{Cli, QueryArgs};
use crate::control_client::{CallError, ControlClient, Request};
use crate::exit::Exit;

/// Runs `query`; returns the exit status.
pub(crate) fn run(cli: &Cli, args: &QueryArgs) -> ExitCode {
    let (config, _) = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mta-sts-daemon: {}: {e}", cli.config_path().display());
            return Exit::Config.into();
        }
    };
    let Some(runtime) = command_runtime() else {
        return Exit::Failure.into();
    };
    let path = &config.control.socket;
    let answer = runtime.block_on(async {
        let client = ControlClient::connect(path).await.map_err(|e| {
            format!(
                "cannot reach the running daemon at {} (control.socket): {e}",
                path.display()
            )
        })?;
        client
            .call(&Request::Query {
                domain: args.domain.clone(),
                zone: args.zone.clone(),
            })
            .await
            .map_err(|e| match e {
                CallError::Transport { .. } => format!("cannot reach the running daemon: {e}"),
                CallError::Daemon(_) => e.to_string(),
            })
    });
    let answer = match answer {
        Ok(answer) => answer,
        Err(message) => {
            eprintln!("mta-sts-daemon: {message}");
            return Exit::Unavailable.into();
        }
    };
    let mut out = io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &answer)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        text(&mut out, &answer)
    };
    if let Err(e) = written.and_then(|()| out.flush())
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        eprintln!("mta-sts-daemon: cannot write the output: {e}");
        return Exit::Failure.into();
    }
    let ok = answer["reply"]
        .as_str()
        .is_some_and(|r| r.starts_with("OK"));
    if ok { Exit::Success } else { Exit::Failure }.into()
}

/// The answer for people.
fn text(out: &mut dyn Write, answer: &Value) -> io::Result<()> {
    let str_of = |v: &Value| v.as_str().map_or_else(|| "-".to_owned(), str::to_owned);
    let time = |v: &Value| v.as_u64().map_or_else(|| "-".to_owned(), rfc3339);
    writeln!(out, "key:          {}", str_of(&answer["key"]))?;
    writeln!(out, "zone:         {}", str_of(&answer["zone"]))?;
    if let Some(skipped) = answer["skipped"].as_str() {
        writeln!(out, "reply:        {}", str_of(&answer["reply"]))?;
        writeln!(out, "why:          no lookup ({skipped})")?;
        return Ok(());
    }
    writeln!(out, "domain:       {}", str_of(&answer["domain"]))?;
    writeln!(out, "reply:        {}", str_of(&answer["reply"]))?;
    writeln!(out, "kind:         {}", str_of(&answer["kind"]))?;
    writeln!(out, "source:       {}", str_of(&answer["source"]))?;
    if answer["policy"].is_object() {
        let policy = &answer["policy"];
        writeln!(out, "policy id:    {}", str_of(&answer["id"]))?;
        writeln!(out, "mode:         {}", str_of(&policy["mode"]))?;
        writeln!(out, "max_age:      {}", policy["max_age"])?;
        let mx: Vec<String> = policy["mx"]
            .as_array()
            .map(|mx| mx.iter().map(str_of).collect())
            .unwrap_or_default();
        writeln!(out, "mx:           {}", mx.join(" "))?;
    } else {
        writeln!(out, "policy:       none")?;
    }
    let cached = &answer["cached"];
    if cached.is_object() {
        writeln!(out, "fetched at:   {}", time(&cached["fetched_at"]))?;
        writeln!(out, "checked at:   {}", time(&cached["checked_at"]))?;
        writeln!(out, "expires at:   {}", time(&cached["expires_at"]))?;
        writeln!(out, "fresh until:  {}", time(&cached["fresh_until"]))?;
        if cached["retry_after"].is_u64() {
            writeln!(out, "retry after:  {}", time(&cached["retry_after"]))?;
        }
    }
    let dane = &answer["dane"];
    if dane.is_object() {
        writeln!(
            out,
            "dane:         {} (reply {}, from {})",
            str_of(&dane["answer"]),
            str_of(&dane["reply"]),
            str_of(&dane["source"])
        )?;
    }
    Ok(())
}
