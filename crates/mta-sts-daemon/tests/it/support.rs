//! Shared helpers: a daemon configured against a `Fixture`, a socketmap query helper.

use std::net::SocketAddr;

use std::sync::Arc;

use mta_sts_daemon::Config;
use mta_sts_daemon::LocalAddr;
use mta_sts_daemon::{Bound, Running};
use mtasts_engine::{Clock, ManualClock};
use mtasts_test_support::Fixture;
use socketmap_proto::SocketmapClient;

pub(crate) const ENFORCE: &str =
    "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mail.example.com\nmx: *.mx.example.net\n";
pub(crate) const TESTING: &str =
    "version: STSv1\nmode: testing\nmax_age: 86400\nmx: mail.example.com\n";
pub(crate) const NONE: &str = "version: STSv1\nmode: none\nmax_age: 86400\n";

/// The `resolver` section pointing the daemon at the fixture.
pub(crate) fn resolver_yaml(fixture: &Fixture) -> String {
    format!(
        "resolver:\n  nameservers: [\"{}\"]\n  extra_ca_file: \"{}\"\n  policy_port: {}\n  proxy: none\n",
        fixture.dns().addr(),
        fixture.ca_pem_path().display(),
        fixture.https().port()
    )
}

/// Full configuration text: TCP on a free port, the fixture's resolver, then `extra`.
pub(crate) fn config_yaml(fixture: &Fixture, extra: &str) -> String {
    format!(
        "host: 127.0.0.1\nport: 0\n{}{extra}",
        resolver_yaml(fixture)
    )
}

/// Starts a daemon in-process.
pub(crate) async fn start(fixture: &Fixture, extra: &str) -> Running {
    let text = config_yaml(fixture, extra);
    let (config, _) = Config::parse(&text).unwrap_or_else(|e| panic!("config {text:?}: {e}"));
    Running::start(config)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"))
}

/// Starts a daemon in-process whose engine reads time from a manual clock.
pub(crate) async fn start_with_clock(
    fixture: &Fixture,
    extra: &str,
) -> (Running, Arc<ManualClock>) {
    let text = config_yaml(fixture, extra);
    let (config, _) = Config::parse(&text).unwrap_or_else(|e| panic!("config {text:?}: {e}"));
    let clock = Arc::new(ManualClock::new(1_700_000_000));
    let running = Bound::bind(config)
        .unwrap_or_else(|e| panic!("bind: {e}"))
        .start_with_clock(Some(Arc::clone(&clock) as Arc<dyn Clock>))
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    (running, clock)
}

pub(crate) fn tcp_addr(running: &Running) -> SocketAddr {
    match running.local_addr() {
        LocalAddr::Tcp(a) => *a,
        LocalAddr::Unix(p) => panic!("expected TCP, got {}", p.display()),
    }
}

/// One query on a fresh connection; the reply as text (`OK ...`, `NOTFOUND `).
pub(crate) async fn query(addr: SocketAddr, zone: &str, key: &str) -> String {
    let mut client = SocketmapClient::connect_tcp(addr).await.expect("connect");
    client.query(zone, key).await.expect("query").to_string()
}

/// Publishes the three standard policies: enforce.test, testing.test, none.test.
pub(crate) fn publish_standard(fixture: &Fixture) {
    fixture.publish("enforce.test", "id1", ENFORCE);
    fixture.publish("testing.test", "id1", TESTING);
    fixture.publish("none.test", "id1", NONE);
}

/// A fixture publishing the three standard policies ([`publish_standard`]).
pub(crate) async fn standard_fixture() -> Fixture {
    let fixture = Fixture::start().await;
    publish_standard(&fixture);
    fixture
}

pub(crate) const ENFORCE_REPLY: &str =
    "OK secure match=mail.example.com:.mx.example.net servername=hostname";
