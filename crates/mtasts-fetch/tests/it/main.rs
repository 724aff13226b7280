//! Integration tests for mtasts-fetch against the in-process DNS and HTTPS servers of
//! mtasts-test-support (loopback only).

mod dane;
mod dns;
mod dnssec;
mod https;
mod leaks;
mod proxy;
mod timeouts;

use std::net::SocketAddr;

use mtasts_core::{Mode, PolicyDomain, PolicyId};
use mtasts_fetch::{Discovery, FetchError, Fetcher, FetcherBuilder, NoPolicyReason};
use mtasts_test_support::{Fixture, init_tracing};

pub(crate) const DOMAIN: &str = "example.com";

pub(crate) const ENFORCE: &str =
    "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 86400\n";

pub(crate) async fn fixture() -> Fixture {
    init_tracing();
    Fixture::start().await
}

pub(crate) fn domain(name: &str) -> PolicyDomain {
    PolicyDomain::parse(name).expect("valid test domain")
}

pub(crate) fn id(text: &str) -> PolicyId {
    text.parse().expect("valid test id")
}

/// Discovers `DOMAIN` with the fixture's fetcher and no known id.
pub(crate) async fn discover(fixture: &Fixture) -> Discovery {
    discover_with(&fixture.fetcher()).await
}

/// Discovers `DOMAIN` with `fetcher` and no known id.
pub(crate) async fn discover_with(fetcher: &Fetcher) -> Discovery {
    fetcher.discover(&domain(DOMAIN), None).await
}

/// `builder`, built.
pub(crate) fn build(builder: FetcherBuilder) -> Fetcher {
    builder.build().expect("fetcher")
}

/// A loopback address nothing listens on.
pub(crate) fn closed_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

#[track_caller]
pub(crate) fn expect_fetched(discovery: Discovery, want_id: &str, want_mode: Mode) {
    match discovery {
        Discovery::Fetched { id, policy } => {
            assert_eq!(id.as_str(), want_id);
            assert_eq!(policy.mode(), want_mode);
        }
        other => panic!("expected a fetched policy, got {other:?}"),
    }
}

#[track_caller]
pub(crate) fn expect_failed(discovery: Discovery, want_kind: &str) -> FetchError {
    match discovery {
        Discovery::Failed(error) => {
            assert_eq!(error.kind(), want_kind, "unexpected error: {error:?}");
            error
        }
        other => panic!("expected failure {want_kind}, got {other:?}"),
    }
}

#[track_caller]
pub(crate) fn expect_no_policy(
    discovery: Discovery,
    want_kind: &str,
) -> Option<std::time::Duration> {
    match discovery {
        Discovery::NoPolicy {
            reason,
            negative_ttl,
        } => {
            assert_eq!(reason.kind(), want_kind, "unexpected reason: {reason:?}");
            negative_ttl
        }
        other => panic!("expected no policy ({want_kind}), got {other:?}"),
    }
}

#[track_caller]
pub(crate) fn expect_invalid_policy(discovery: Discovery, want_core_kind: &str) {
    match expect_failed(discovery, "invalid_policy") {
        FetchError::InvalidPolicy(error) => assert_eq!(error.kind(), want_core_kind, "{error:?}"),
        other => panic!("expected invalid_policy, got {other:?}"),
    }
}

#[allow(
    dead_code,
    reason = "keeps the reason type in the public surface under test"
)]
fn _reason_is_public(reason: &NoPolicyReason) -> &'static str {
    reason.kind()
}
