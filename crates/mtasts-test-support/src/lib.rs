//! Test fixtures for mtasts: in-process DNS and HTTPS servers, a test CA, a CONNECT proxy, a real
//! DNSSEC resolver.
//!
//! - [`TestCa`]: a certificate authority generated at test time (rcgen).
//! - [`DnsServer`]: an authoritative DNS server on loopback (UDP + TCP) whose records tests
//!   change at run time (TXT, CNAME, A, AAAA, MX, TLSA, NXDOMAIN, NODATA, SERVFAIL, silence),
//!   with counters; it sets the AD bit for names marked secure, like a validating resolver.
//! - [`PolicyServer`]: an HTTPS server on loopback serving per-host [`PolicyResponse`]s, with
//!   certificates chosen by SNI (valid, untrusted CA or wrong name), with counters.
//! - [`Fixture`]: all of the above together, with [`Fixture::publish`] and
//!   [`Fixture::fetcher_builder`].
//! - [`ConnectProxy`]: a tiny HTTP CONNECT proxy (optional basic auth, counters).
//! - [`DnssecResolver`]: real DNSSEC: [`SignedZone`]s signed at start (ldns), served by NSD and
//!   validated by Unbound, which answers on loopback (SERVFAIL for broken signatures).
//! - [`init_tracing`]: a test subscriber for `tracing`.
//! - [`is_ci`] and [`skip_or_fail`]: the repository's one rule for a missing service or tool (fail under
//!   CI, which is any non-empty `CI` other than `false`/`0`; skip with a printed reason elsewhere), and
//!   [`tool_or_skip`] for the external programs tests drive (`postmap`, `systemd-socket-activate`).
//!
//! Everything listens on 127.0.0.1 only, and every server stops when dropped.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use mtasts_test_support::Fixture;
//! let fixture = Fixture::start().await;
//! fixture.publish("example.com", "20240101", "version: STSv1\nmode: none\nmax_age: 86400\n");
//! let _fetcher = fixture.fetcher_builder().build().expect("fetcher");
//! # }
//! ```
//!
//! This crate is for tests only: its functions panic when the environment is broken (no
//! loopback port, unwritable temp dir).

mod ca;
mod ci;
mod dns;
mod dnssec;
mod fixture;
mod https;
mod proxy;
mod tools;

pub use ca::{IssuedCert, TestCa};
pub use ci::{is_ci, skip_or_fail};
pub use dns::DnsServer;
pub use dnssec::{DnssecResolver, SignedZone};
pub use fixture::Fixture;
pub use https::{CertKind, PolicyResponse, PolicyServer, RecordedRequest};
pub use proxy::ConnectProxy;
pub use tools::tool_or_skip;

/// Accepts connections on `listener` for as long as the returned future runs (the server's task), serving each
/// with the future `serve` makes in a task of its own; those tasks end with it.
async fn accept_each<F>(
    listener: tokio::net::TcpListener,
    serve: impl Fn(tokio::net::TcpStream) -> F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let mut conns = tokio::task::JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        if let Ok((stream, _)) = listener.accept().await {
            conns.spawn(serve(stream));
        }
    }
}

/// Installs a `tracing` subscriber that writes through the test harness's capture.
///
/// The filter comes from `RUST_LOG`, else it is `debug` for our crates and `warn` for the rest.
/// Calling it more than once is harmless.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,mtasts_fetch=debug,mtasts_engine=debug,mtasts_test_support=debug,\
             mta_sts_daemon=debug,mta_sts_query=debug,mtasts_core=debug",
        )
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
