//! The bare netstring server: the upper limit every `mtasts-bench` figure is compared to.
//!
//! It speaks Postfix's socketmap protocol with `socketmap-proto`'s codec and answers every request with one
//! fixed `OK` reply, as long as the daemon's answer for an enforced policy, so the kernel moves the same bytes.
//! It does what a socketmap server cannot avoid and nothing else: it decodes every request already read and
//! writes all their replies in one call. It runs on the same multi-threaded tokio runtime as the daemon (one
//! worker per CPU it may use), signals `READY=1` on `$NOTIFY_SOCKET` like the daemon, and stops on SIGTERM or
//! SIGINT.
//!
//! ```text
//! bare-netstring-server --port 8461
//! ```

use std::os::unix::net::UnixDatagram;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use socketmap_proto::{BytesMut, Decoder, Encoder, Reply, ServerCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};

/// The fixed reply: the daemon's answer for a domain with an enforced policy and two `mx` lines.
const REPLY: &str = "secure match=mail.example.com:.mx.example.net servername=hostname";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bare-netstring-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = match (args.next().as_deref(), args.next()) {
        (Some("--port"), Some(port)) => port.parse().context("--port")?,
        _ => bail!("usage: bare-netstring-server --port PORT"),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(port))
}

async fn serve(port: u16) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("bind 127.0.0.1:{port}"))?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    notify_ready()?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                tokio::spawn(async move {
                    // A client that goes away or sends garbage only ends its own connection.
                    drop(connection(stream).await);
                });
            }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}

async fn connection(mut stream: TcpStream) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut codec = ServerCodec::new();
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    let reply = Reply::ok(REPLY);
    loop {
        if stream.read_buf(&mut input).await? == 0 {
            return Ok(());
        }
        while codec.decode(&mut input)?.is_some() {
            codec.encode(&reply, &mut output)?;
        }
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
    }
}

/// `READY=1` to `$NOTIFY_SOCKET` (a path; the bench never uses abstract sockets), as the daemon does.
fn notify_ready() -> Result<()> {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        UnixDatagram::unbound()?
            .send_to(b"READY=1", &path)
            .context("notify READY=1")?;
    }
    Ok(())
}
