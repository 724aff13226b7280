//! The metrics endpoint (`metrics.listen`): scraped over HTTP after known traffic, counts asserted exactly.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use mta_sts_daemon::Running;
use mta_sts_daemon::{AnswerKind, LocalAddr};
use mtasts_test_support::{Fixture, PolicyResponse};
use socketmap_proto::SocketmapClient;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::support::*;

/// Sends one `GET /metrics` with `accept`, checks the response head and returns its content type and the body.
async fn scrape_as<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    accept: &str,
) -> (String, String) {
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the endpoint did not close the connection")
        .expect("read response");
    let raw = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("response head");
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"), "{head}");
    let headers: Vec<(String, &str)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    assert_eq!(
        header("content-length"),
        Some(body.len().to_string().as_str())
    );
    let content_type = header("content-type").expect("content-type").to_owned();
    (content_type, body.to_owned())
}

/// Sends one `GET /metrics` as a plain client does and returns the body, in the 0.0.4 text format.
async fn scrape_over<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> String {
    let (content_type, body) = scrape_as(stream, "text/plain").await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    body
}

fn metrics_tcp_addr(daemon: &Running) -> SocketAddr {
    match daemon.metrics_addr() {
        Some(LocalAddr::Tcp(addr)) => *addr,
        other => panic!("metrics on TCP expected, not {other:?}"),
    }
}

async fn scrape_tcp(addr: SocketAddr) -> String {
    scrape_over(TcpStream::connect(addr).await.expect("connect to metrics")).await
}

async fn scrape(daemon: &Running) -> String {
    match daemon.metrics_addr() {
        Some(LocalAddr::Tcp(addr)) => scrape_tcp(*addr).await,
        Some(LocalAddr::Unix(path)) => {
            scrape_over(UnixStream::connect(path).await.expect("connect to metrics")).await
        }
        None => panic!("metrics endpoint not enabled"),
    }
}

/// The value of one series (`name{labels}` exactly as exposed), if present.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap_or_else(|e| panic!("{series}: {v:?}: {e}")))
}

#[track_caller]
fn assert_series(body: &str, expected: &[(&str, f64)]) {
    for (series, want) in expected {
        assert_eq!(value(body, series), Some(*want), "{series} in\n{body}");
    }
}

fn answers(zone: &str, kind: &str) -> String {
    format!("mtasts_answers_total{{zone=\"{zone}\",kind=\"{kind}\"}}")
}

const METRICS_TCP: &str = "metrics:\n  listen: \"127.0.0.1:0\"\n";

#[tokio::test]
async fn scrape_counts_known_traffic_exactly() {
    const N: u32 = 5; // lookups of an enforced domain
    const M: u32 = 3; // parent-domain keys
    let fixture = standard_fixture().await;
    fixture.dns().set_nxdomain("_mta-sts.nopolicy.test");
    fixture.publish_txt("broken.test", "id1");
    fixture.serve("broken.test", PolicyResponse::status(404));
    let daemon = start(
        &fixture,
        &format!("zones:\n  tlsrpt:\n    tlsrpt: true\n{METRICS_TCP}"),
    )
    .await;

    let before = scrape(&daemon).await;
    assert_series(
        &before,
        &[
            (&answers("default", "secure"), 0.0),
            (&answers("tlsrpt", "secure"), 0.0),
            ("mtasts_connections_open", 0.0),
            ("mtasts_discovery_duration_seconds_count", 0.0),
        ],
    );

    let mut client = SocketmapClient::connect_tcp(tcp_addr(&daemon))
        .await
        .expect("connect");
    let mut ask =
        async |zone: &str, key: &str| client.query(zone, key).await.expect("query").to_string();
    for _ in 0..N {
        assert_eq!(ask("postfix", "enforce.test").await, ENFORCE_REPLY);
    }
    for _ in 0..M {
        assert_eq!(ask("postfix", ".enforce.test").await, "NOTFOUND ");
    }
    for _ in 0..2 {
        assert_eq!(ask("tlsrpt", "testing.test").await, "NOTFOUND ");
    }
    assert!(
        ask("tlsrpt", "enforce.test")
            .await
            .starts_with("OK secure match=")
    );
    assert_eq!(ask("postfix", "none.test").await, "NOTFOUND ");
    assert_eq!(ask("postfix", "[192.0.2.1]:25").await, "NOTFOUND ");
    assert_eq!(ask("postfix", "nopolicy.test").await, "NOTFOUND ");
    assert_eq!(ask("postfix", "broken.test").await, "NOTFOUND ");
    assert_eq!(ask("other-map", "bad..name").await, "NOTFOUND ");

    // The client connection stays open: it is counted.
    let body = scrape(&daemon).await;
    let n = f64::from(N);
    let m = f64::from(M);
    assert_series(
        &body,
        &[
            (&answers("default", "secure"), n),
            (&answers("default", "parent_domain"), m),
            (&answers("tlsrpt", "testing"), 2.0),
            (&answers("tlsrpt", "secure"), 1.0),
            (&answers("default", "none"), 1.0),
            (&answers("default", "ip_literal"), 1.0),
            (&answers("default", "no_policy"), 2.0),
            (&answers("default", "invalid"), 1.0),
            (&answers("default", "testing"), 0.0),
            (&answers("tlsrpt", "no_policy"), 0.0),
            ("mtasts_connections_open", 1.0),
            ("mtasts_connections_total", 1.0),
            // Five domains discovered once each; the other lookups come from the memory front.
            ("mtasts_cache_misses_total", 5.0),
            (
                "mtasts_cache_hits_total{layer=\"memory\"}",
                n - 1.0 + 1.0 + 1.0,
            ),
            ("mtasts_cache_hits_total{layer=\"store\"}", 0.0),
            ("mtasts_discoveries_total{outcome=\"fetched\"}", 3.0),
            ("mtasts_discoveries_total{outcome=\"unchanged\"}", 0.0),
            ("mtasts_discoveries_total{outcome=\"no_policy\"}", 1.0),
            ("mtasts_discoveries_total{outcome=\"failed\"}", 1.0),
            ("mtasts_discovery_failures_total{kind=\"http_status\"}", 1.0),
            ("mtasts_discovery_duration_seconds_count", 5.0),
            ("mtasts_discovery_duration_seconds_bucket{le=\"+Inf\"}", 5.0),
            ("mtasts_discoveries_in_flight", 0.0),
            ("mtasts_discoveries_coalesced_total", 0.0),
            ("mtasts_stale_answers_total", 0.0),
            ("mtasts_store_errors_total{op=\"read\"}", 0.0),
            ("mtasts_cache_entries{layer=\"memory\"}", 5.0),
            (
                &format!(
                    "mtasts_build_info{{version=\"{}\"}}",
                    env!("CARGO_PKG_VERSION")
                ),
                1.0,
            ),
        ],
    );
    // Bounded labels: no domain name, no unconfigured map name.
    for leak in [
        "enforce.test",
        "nopolicy",
        "192.0.2.1",
        "postfix",
        "other-map",
    ] {
        assert!(!body.contains(leak), "{leak} exposed in\n{body}");
    }
    // The socketmap side and the engine agree.
    assert_eq!(daemon.engine().stats().fetched.get(), 3);
    close_and_stop(client, daemon).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn store_hits_are_counted_per_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = enforcing("enforce.test").await;
    let cache = format!("{}{METRICS_TCP}", sqlite_yaml(dir.path()));
    crate::stores::primed_store(&fixture, &cache, &["enforce.test"]).await;
    // A new daemon on the same store answers from it without discovery.
    let second = start(&fixture, &cache).await;
    for _ in 0..2 {
        assert_eq!(
            query(tcp_addr(&second), "postfix", "enforce.test").await,
            ENFORCE_REPLY
        );
    }
    let body = scrape(&second).await;
    assert_series(
        &body,
        &[
            ("mtasts_cache_hits_total{layer=\"store\"}", 1.0),
            ("mtasts_cache_hits_total{layer=\"memory\"}", 1.0),
            ("mtasts_cache_misses_total", 1.0),
            ("mtasts_discoveries_total{outcome=\"fetched\"}", 0.0),
            ("mtasts_discovery_duration_seconds_count", 0.0),
            ("mtasts_connections_total", 2.0),
            (&answers("default", "secure"), 2.0),
        ],
    );
    second.shutdown().await;
}

/// A proactive pass at start refreshes the stored policy (max_age 600 would expire before the next pass).
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn proactive_refresh_runs_are_counted() {
    let (_fixture, second, _dir) = crate::stores::restarted_for_a_proactive_pass(METRICS_TCP).await;
    let metrics = second.metrics();
    eventually("a proactive pass recorded", Duration::ZERO, || async move {
        metrics.refresh_runs() > 0
    })
    .await;
    let body = scrape(&second).await;
    assert_series(
        &body,
        &[
            (
                "mtasts_proactive_refresh_runs_total{result=\"completed\"}",
                1.0,
            ),
            (
                "mtasts_proactive_refresh_runs_total{result=\"incomplete\"}",
                0.0,
            ),
            (
                "mtasts_proactive_refresh_results_total{result=\"fetched\"}",
                1.0,
            ),
            (
                "mtasts_proactive_refresh_results_total{result=\"failed\"}",
                0.0,
            ),
            ("mtasts_discoveries_total{outcome=\"fetched\"}", 1.0),
            ("mtasts_discovery_duration_seconds_count", 1.0),
            (&answers("default", "secure"), 0.0),
        ],
    );
    let last = value(&body, "mtasts_proactive_refresh_last_run_timestamp_seconds");
    assert!(last.is_some_and(|t| t > 1.7e9), "{body}");
    second.shutdown().await;
}

#[tokio::test]
async fn endpoint_on_a_unix_socket_with_mode() {
    let fixture = standard_fixture().await;
    let (_dir, path) = socket_path("metrics.sock");
    let daemon = start(
        &fixture,
        &format!(
            "metrics:\n  listen: \"unix:{}\"\n  mode: 0640\n",
            path.display()
        ),
    )
    .await;
    assert_eq!(daemon.metrics_addr(), Some(&LocalAddr::Unix(path.clone())));
    let mode = std::fs::metadata(&path)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    assert_eq!(
        query(tcp_addr(&daemon), "postfix", "none.test").await,
        "NOTFOUND "
    );
    let body = scrape(&daemon).await;
    assert_series(&body, &[(&answers("default", "none"), 1.0)]);
    daemon.shutdown().await;
    assert!(!Path::new(&path).exists(), "socket file removed at stop");
}

#[tokio::test]
async fn no_endpoint_unless_configured() {
    let fixture = Fixture::start().await;
    let daemon = start(&fixture, "").await;
    assert_eq!(daemon.metrics_addr(), None);
    // The counters exist anyway (cheap), for embedding and tests.
    assert_eq!(
        query(tcp_addr(&daemon), "postfix", ".example.com").await,
        "NOTFOUND "
    );
    let zone = daemon.metrics().zone(b"postfix");
    assert_eq!(daemon.metrics().answers(zone, AnswerKind::ParentDomain), 1);
    daemon.shutdown().await;
}

/// Idle clients (connected, sending nothing) do not delay a scrape: the endpoint serves up to 64 connections
/// at once, and closes a connection that sends no request within 2 s.
#[tokio::test]
async fn scrape_answers_promptly_while_32_clients_idle() {
    let fixture = Fixture::start().await;
    let daemon = start(&fixture, METRICS_TCP).await;
    let addr = metrics_tcp_addr(&daemon);
    let mut idle = Vec::new();
    for _ in 0..32 {
        idle.push(TcpStream::connect(addr).await.expect("connect idle client"));
    }
    let started = std::time::Instant::now();
    let body = scrape_tcp(addr).await;
    let took = started.elapsed();
    eprintln!("scrape with 32 idle clients connected: {took:?}");
    assert!(took < Duration::from_secs(1), "scrape took {took:?}");
    assert_series(&body, &[("mtasts_connections_open", 0.0)]);
    // The idle clients are let go after the header read timeout.
    for client in &mut idle {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut rest));
        read.await.expect("an idle client is closed").expect("read");
    }
    daemon.shutdown().await;
}

/// Prometheus asks for OpenMetrics and gets it: counter families declared without `_total`, `# EOF` at the end.
#[tokio::test]
async fn prometheus_gets_openmetrics() {
    let fixture = Fixture::start().await;
    let daemon = start(&fixture, METRICS_TCP).await;
    let stream = TcpStream::connect(metrics_tcp_addr(&daemon))
        .await
        .expect("connect");
    // What Prometheus sends.
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;\
                  q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (content_type, body) = scrape_as(stream, accept).await;
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    for line in [
        "# TYPE mtasts_answers counter\n",
        "# TYPE mtasts_build info\n",
        "\nmtasts_cache_misses_total 0\n",
    ] {
        assert!(body.contains(line), "{line:?} in\n{body}");
    }
    assert!(body.ends_with("\n# EOF\n"), "{body}");
    daemon.shutdown().await;
}

/// The families a scrape declares (`# TYPE` lines of the 0.0.4 format: the names samples are queried by, with
/// `_bucket`, `_sum` and `_count` for the histogram).
fn declared_families(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

/// The `mtasts_*` names in `text`, each cut at the first character a metric name cannot hold.
fn metric_names(text: &str) -> impl Iterator<Item = String> + '_ {
    text.match_indices("mtasts_").map(|(at, _)| {
        text[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect()
    })
}

/// The metrics named in the first column of a Markdown table (`| \`name{labels}\`, \`other\` | … |`), with
/// `prefix` added.
fn first_column_names<'a>(rows: impl Iterator<Item = &'a str>, prefix: &str) -> BTreeSet<String> {
    rows.filter_map(|row| row.split('|').nth(1))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
        .map(|name| format!("{prefix}{}", name.split('{').next().unwrap_or(name)))
        .collect()
}

fn read_repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The metric tables of docs/operations.md and of the `metrics` module documentation list exactly the families
/// exposed, and every metric the shipped Grafana dashboard (contrib/grafana/mta-sts-daemon.json) queries is
/// exposed: names cannot drift from the documentation or the dashboard.
#[tokio::test]
async fn docs_and_dashboard_name_the_exposed_metrics() {
    let fixture = Fixture::start().await;
    let daemon = start(&fixture, METRICS_TCP).await;
    let exposed = declared_families(&scrape(&daemon).await);
    daemon.shutdown().await;

    let operations = read_repo_file("docs/operations.md");
    let (_, section) = operations
        .split_once("\n## Metrics\n")
        .expect("a Metrics section");
    let rows = section.lines().take_while(|l| !l.starts_with("## "));
    // That table names metrics without their `mtasts_` prefix.
    let rows: Vec<&str> = rows.filter(|l| l.starts_with("| `")).collect();
    let documented = first_column_names(rows.iter().copied(), "mtasts_");
    assert_eq!(documented, exposed, "docs/operations.md metrics table");
    // The answer kinds listed for `answers_total` are exactly the `kind` label's values.
    let answers_row = rows
        .iter()
        .find(|row| row.starts_with("| `answers_total"))
        .expect("an answers_total row");
    let (_, kinds) = answers_row
        .split_once("kind: ")
        .expect("the row lists the kinds");
    let documented_kinds: Vec<&str> = kinds.split('`').skip(1).step_by(2).collect();
    let kinds: Vec<&str> = AnswerKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(documented_kinds, kinds, "docs/operations.md answer kinds");

    let module = read_repo_file("crates/mta-sts-daemon/src/metrics.rs");
    let rows = module.lines().filter_map(|l| l.strip_prefix("//! "));
    let documented = first_column_names(rows.filter(|l| l.starts_with("| `mtasts_")), "");
    assert_eq!(documented, exposed, "the metrics module's table");

    let dashboard = read_repo_file("contrib/grafana/mta-sts-daemon.json");
    let queried: BTreeSet<String> = metric_names(&dashboard)
        .map(|name| name.strip_suffix("_bucket").unwrap_or(&name).to_owned())
        .collect();
    assert!(queried.len() >= 10, "only {queried:?} in the dashboard");
    let missing: Vec<_> = queried.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which the daemon does not expose"
    );
}
