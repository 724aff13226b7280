//! Prometheus metrics: counters kept by the daemon, the engine's registry, and a small HTTP endpoint
//! serving them in the text exposition format 0.0.4 on an optional separate listener (`metrics.listen`).
//!
//! [`Metrics`] holds the daemon's own counters (answers by zone and kind, connections, the discovery duration
//! histogram, proactive refresh runs); the engine registers its own in a prometheus-client registry
//! ([`EngineBuilder::build_with_registry`](mtasts_engine::EngineBuilder::build_with_registry)).
//! [`Metrics::render`] writes both; [`serve`] answers `GET /metrics` with it.
//!
//! Label sets are bounded: `zone` takes only configured zone names (plus `default` for every name answered by
//! `default_zone`), `kind`, `layer`, `outcome`, `reason`, `op` and `result` take fixed values, and a domain name
//! is never a label.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `mtasts_answers_total` | counter | `zone`, `kind` ([`AnswerKind`]) |
//! | `mtasts_connections_open` / `mtasts_connections_total` | gauge / counter | |
//! | `mtasts_cache_hits_total` | counter | `layer` = `memory`, `store` |
//! | `mtasts_cache_misses_total` | counter | |
//! | `mtasts_cache_entries` | gauge | `layer` = `memory` |
//! | `mtasts_discoveries_total` | counter | `outcome` = `fetched`, `unchanged`, `no_policy`, `failed` |
//! | `mtasts_discovery_failures_total` | counter | `kind` (`mtasts_fetch::FetchError::kind`) |
//! | `mtasts_discovery_duration_seconds` | histogram | |
//! | `mtasts_discoveries_coalesced_total` | counter | |
//! | `mtasts_discoveries_in_flight` | gauge | |
//! | `mtasts_discoveries_skipped_total` | counter | `reason` = `backoff`, `overloaded` |
//! | `mtasts_stale_answers_total` | counter | |
//! | `mtasts_store_errors_total` | counter | `op` = `read`, `write` |
//! | `mtasts_memory_purged_total` | counter | |
//! | `mtasts_proactive_refresh_runs_total` | counter | `result` = `completed`, `incomplete` |
//! | `mtasts_proactive_refresh_results_total` | counter | `result` ([`RefreshReport`] fields) |
//! | `mtasts_proactive_refresh_last_run_timestamp_seconds` | gauge | |
//! | `mtasts_build_info` | gauge | `version` |
//! | `mtasts_start_time_seconds` | gauge | |
//!
//! ```
//! use mta_sts_daemon::metrics::{AnswerKind, Metrics};
//! use mtasts_engine::prometheus_client::registry::Registry;
//!
//! let metrics = Metrics::new(["tlsrpt"]);
//! let zone = metrics.zone(b"tlsrpt");
//! metrics.answered(zone, AnswerKind::Secure);
//! metrics.answered(metrics.zone(b"anything-else"), AnswerKind::NoPolicy);
//! let text = metrics.render(&Registry::default());
//! assert!(text.contains("mtasts_answers_total{zone=\"tlsrpt\",kind=\"secure\"} 1\n"));
//! assert!(text.contains("mtasts_answers_total{zone=\"default\",kind=\"no_policy\"} 1\n"));
//! ```

mod exposition;
mod http;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mtasts_engine::prometheus_client::encoding::prometheus_text;
use mtasts_engine::prometheus_client::registry::Registry;
use mtasts_engine::{Discover, Discovery, DiscoveryRequest, RefreshReport, async_trait};
use tokio_util::sync::CancellationToken;

pub use crate::answer::AnswerKind;
use crate::listen::Listener;
use exposition::{Histogram, Kind, Writer};

/// The `Content-Type` of the Prometheus text exposition format served.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The HTTP path the endpoint serves.
pub const METRICS_PATH: &str = "/metrics";

/// The `zone` label of names answered by `default_zone` (every socketmap name not configured under `zones`).
pub const DEFAULT_ZONE_LABEL: &str = "default";

/// Upper bounds (seconds) of the discovery duration histogram's buckets. Discovery is bounded by the zone's
/// `timeout` (4 s by default), refreshes by the refresh timeout.
pub const DISCOVERY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0,
];

/// A zone's index in [`Metrics`], from [`Metrics::zone`]: resolve it once per request, count with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneId(usize);

#[derive(Debug, Default)]
struct Counter(AtomicU64);

impl Counter {
    fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// `RefreshReport` results as label values, in order.
const REFRESH_RESULTS: [&str; 7] = [
    "fetched",
    "unchanged",
    "no_policy",
    "failed",
    "backoff",
    "fresh",
    "invalid",
];

fn refresh_results(report: &RefreshReport) -> [u64; REFRESH_RESULTS.len()] {
    [
        report.fetched,
        report.unchanged,
        report.no_policy,
        report.failed,
        report.backoff,
        report.fresh,
        report.invalid,
    ]
}

/// The daemon's counters. Built once at start, shared (`Arc`) by the server, the discoverer and the endpoint.
/// Counting is a relaxed atomic add; nothing locks.
#[derive(Debug)]
pub struct Metrics {
    /// `zone` label values; index 0 is [`DEFAULT_ZONE_LABEL`].
    zone_labels: Vec<String>,
    zone_ids: BTreeMap<String, usize>,
    /// `zone_labels.len() * AnswerKind::ALL.len()` counters, zone-major.
    answers: Box<[Counter]>,
    connections_open: AtomicU64,
    connections_total: Counter,
    discovery_duration: Histogram,
    refresh_completed: Counter,
    refresh_incomplete: Counter,
    refresh_results: [Counter; REFRESH_RESULTS.len()],
    refresh_last_run: AtomicU64,
    started_at: u64,
}

impl Metrics {
    /// Counters for a daemon whose configured zones (`zones.<name>`) are `zone_names`.
    pub fn new<I, S>(zone_names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut zone_labels = vec![DEFAULT_ZONE_LABEL.to_owned()];
        let mut zone_ids = BTreeMap::new();
        for name in zone_names {
            let name = name.as_ref();
            if zone_ids.contains_key(name) {
                continue;
            }
            // A zone configured as `default` shares the label (and the counters) of `default_zone`.
            let id = if name == DEFAULT_ZONE_LABEL {
                0
            } else {
                zone_labels.push(name.to_owned());
                zone_labels.len() - 1
            };
            zone_ids.insert(name.to_owned(), id);
        }
        let answers = (0..zone_labels.len() * AnswerKind::ALL.len())
            .map(|_| Counter::default())
            .collect();
        Self {
            zone_labels,
            zone_ids,
            answers,
            connections_open: AtomicU64::new(0),
            connections_total: Counter::default(),
            discovery_duration: Histogram::new(DISCOVERY_BUCKETS),
            refresh_completed: Counter::default(),
            refresh_incomplete: Counter::default(),
            refresh_results: Default::default(),
            refresh_last_run: AtomicU64::new(0),
            started_at: unix_now(),
        }
    }

    /// The zone a socketmap name (the request's map name) counts under: itself if configured, else `default`.
    pub fn zone(&self, name: &[u8]) -> ZoneId {
        let id = std::str::from_utf8(name)
            .ok()
            .and_then(|name| self.zone_ids.get(name))
            .copied()
            .unwrap_or(0);
        ZoneId(id)
    }

    /// Counts one answer.
    pub fn answered(&self, zone: ZoneId, kind: AnswerKind) {
        if let Some(counter) = self
            .answers
            .get(zone.0 * AnswerKind::ALL.len() + kind.index())
        {
            counter.inc();
        }
    }

    /// Answers counted so far for `zone` and `kind`.
    pub fn answers(&self, zone: ZoneId, kind: AnswerKind) -> u64 {
        self.answers
            .get(zone.0 * AnswerKind::ALL.len() + kind.index())
            .map_or(0, Counter::get)
    }

    /// Counts an open socketmap connection until the guard is dropped.
    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections_total.inc();
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(Arc::clone(self))
    }

    /// Socketmap connections open now.
    pub fn open_connections(&self) -> u64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    /// Records how long one discovery took.
    pub fn observe_discovery(&self, elapsed: Duration) {
        self.discovery_duration.observe(elapsed);
    }

    /// Discoveries timed so far.
    pub fn discoveries_timed(&self) -> u64 {
        self.discovery_duration.count()
    }

    /// Records one proactive refresh pass that ended at `ended_at` (Unix seconds).
    pub fn record_refresh(&self, report: &RefreshReport, ended_at: u64) {
        if report.completed {
            self.refresh_completed.inc();
        } else {
            self.refresh_incomplete.inc();
        }
        for (counter, n) in self.refresh_results.iter().zip(refresh_results(report)) {
            counter.add(n);
        }
        self.refresh_last_run.store(ended_at, Ordering::Relaxed);
    }

    /// Proactive refresh passes recorded so far.
    pub fn refresh_runs(&self) -> u64 {
        self.refresh_completed.get() + self.refresh_incomplete.get()
    }

    /// The exposition document: these counters, then those registered in `engine`.
    pub fn render(&self, engine: &Registry) -> String {
        let mut w = Writer::new();
        self.render_daemon(&mut w);
        self.discovery_duration.write(
            &mut w,
            "mtasts_discovery_duration_seconds",
            "Duration of policy discoveries (DNS TXT lookup, then HTTPS fetch when needed), including refreshes.",
        );
        self.render_refresh(&mut w);
        w.family(
            "mtasts_build_info",
            Kind::Gauge,
            "Build information; the value is always 1.",
        );
        w.sample(
            "mtasts_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        w.single(
            "mtasts_start_time_seconds",
            Kind::Gauge,
            "Start time of the daemon, Unix seconds.",
            self.started_at,
        );
        let mut out = w.finish();
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut out, engine);
        out
    }

    fn render_daemon(&self, w: &mut Writer) {
        let name = "mtasts_answers_total";
        w.family(
            name,
            Kind::Counter,
            "Socketmap answers sent, by zone (configured zone name, or default) and kind.",
        );
        for (z, zone) in self.zone_labels.iter().enumerate() {
            for kind in AnswerKind::ALL {
                let value = self.answers(ZoneId(z), kind);
                w.sample(name, &[("zone", zone), ("kind", kind.as_str())], value);
            }
        }
        w.single(
            "mtasts_connections_open",
            Kind::Gauge,
            "Socketmap client connections open now.",
            self.open_connections(),
        );
        w.single(
            "mtasts_connections_total",
            Kind::Counter,
            "Socketmap client connections accepted.",
            self.connections_total.get(),
        );
    }

    fn render_refresh(&self, w: &mut Writer) {
        let name = "mtasts_proactive_refresh_runs_total";
        w.family(
            name,
            Kind::Counter,
            "Proactive refresh passes, by whether the store scan reached its end.",
        );
        w.sample(
            name,
            &[("result", "completed")],
            self.refresh_completed.get(),
        );
        w.sample(
            name,
            &[("result", "incomplete")],
            self.refresh_incomplete.get(),
        );
        let name = "mtasts_proactive_refresh_results_total";
        w.family(
            name,
            Kind::Counter,
            "Entries handled by proactive refresh passes, by result.",
        );
        for (result, counter) in REFRESH_RESULTS.iter().zip(&self.refresh_results) {
            w.sample(name, &[("result", result)], counter.get());
        }
        w.single(
            "mtasts_proactive_refresh_last_run_timestamp_seconds",
            Kind::Gauge,
            "End of the last proactive refresh pass, Unix seconds (0: none yet).",
            self.refresh_last_run.load(Ordering::Relaxed),
        );
    }
}

/// Keeps `mtasts_connections_open` counted while alive ([`Metrics::connection`]).
#[derive(Debug)]
pub struct ConnectionGuard(Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A [`Discover`] that times each discovery of the one it wraps into `mtasts_discovery_duration_seconds`
/// (a discovery the engine cuts off at its timeout is recorded when it is dropped).
#[derive(Debug)]
pub struct TimedDiscover<D> {
    inner: D,
    metrics: Arc<Metrics>,
}

impl<D: Discover> TimedDiscover<D> {
    /// Wraps `inner`.
    pub fn new(inner: D, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

struct Timer<'a> {
    metrics: &'a Metrics,
    started: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.metrics.observe_discovery(self.started.elapsed());
    }
}

#[async_trait]
impl<D: Discover> Discover for TimedDiscover<D> {
    async fn discover(&self, request: &DiscoveryRequest<'_>) -> Discovery {
        let _timer = Timer {
            metrics: &self.metrics,
            started: Instant::now(),
        };
        self.inner.discover(request).await
    }
}

/// Serves `GET /metrics` on `listener` until `stop` is cancelled: `metrics` and the engine's `registry`,
/// rendered at each scrape. One request per connection; see the module documentation of the responder for its
/// bounds.
pub async fn serve(
    listener: Listener,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    stop: CancellationToken,
) {
    http::serve(
        listener,
        move || metrics.render(&registry),
        http::IO_TIMEOUT,
        stop,
    )
    .await;
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use mtasts_core::PolicyDomain;

    use super::*;

    fn sample_lines(text: &str, prefix: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn zones_are_configured_names_or_default() {
        let m = Metrics::new(["a", "b", "a", "default"]);
        assert_eq!(m.zone(b"a"), ZoneId(1));
        assert_eq!(m.zone(b"b"), ZoneId(2));
        assert_eq!(m.zone(b"default"), ZoneId(0));
        assert_eq!(m.zone(b"postfix"), ZoneId(0));
        assert_eq!(m.zone(b"\xff"), ZoneId(0));
        m.answered(m.zone(b"unknown.example.com"), AnswerKind::Secure);
        m.answered(m.zone(b"b"), AnswerKind::ParentDomain);
        let text = m.render(&Registry::default());
        let answers = sample_lines(&text, "mtasts_answers_total{");
        assert_eq!(answers.len(), 3 * AnswerKind::ALL.len(), "{answers:#?}");
        assert!(
            answers.contains(&"mtasts_answers_total{zone=\"default\",kind=\"secure\"} 1".into())
        );
        assert!(
            answers.contains(&"mtasts_answers_total{zone=\"b\",kind=\"parent_domain\"} 1".into())
        );
        assert!(!text.contains("unknown.example.com"));
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let m = Metrics::new(["z"]);
        let mut registry = Registry::default();
        let _engine = mtasts_engine::Engine::builder(
            mtasts_fetch::Fetcher::builder().build().expect("fetcher"),
        )
        .build_with_registry(&mut registry);
        let text = m.render(&registry);
        let mut declared: Vec<&str> = Vec::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                let ty = lines.next().unwrap_or_default();
                assert!(ty.starts_with(&format!("# TYPE {name} ")), "{ty}");
                assert!(!declared.contains(&name), "{name} declared twice");
                declared.push(name);
                continue;
            }
            let sample = line.split(['{', ' ']).next().unwrap_or_default();
            let family = declared.last().copied().unwrap_or_default();
            assert!(
                sample == family
                    || [
                        format!("{family}_bucket"),
                        format!("{family}_sum"),
                        format!("{family}_count")
                    ]
                    .contains(&sample.to_owned()),
                "{line} outside its family {family}"
            );
            let value = line.rsplit(' ').next().unwrap_or_default();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert!(declared.iter().filter(|n| n.ends_with("_total")).count() >= 10);
        assert!(text.contains(&format!(
            "mtasts_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn connections_are_counted_while_open() {
        let m = Arc::new(Metrics::new::<_, &str>([]));
        let a = m.connection();
        let b = m.connection();
        assert_eq!(m.open_connections(), 2);
        drop(a);
        let text = m.render(&Registry::default());
        assert!(text.contains("\nmtasts_connections_open 1\n"), "{text}");
        assert!(text.contains("\nmtasts_connections_total 2\n"), "{text}");
        drop(b);
        assert_eq!(m.open_connections(), 0);
    }

    #[test]
    fn refresh_passes_are_summed() {
        let m = Metrics::new::<_, &str>([]);
        let mut report = RefreshReport::default();
        report.fetched = 2;
        report.failed = 1;
        report.completed = true;
        m.record_refresh(&report, 1_700_000_000);
        report.completed = false;
        m.record_refresh(&report, 1_700_000_100);
        let text = m.render(&Registry::default());
        for line in [
            "mtasts_proactive_refresh_runs_total{result=\"completed\"} 1",
            "mtasts_proactive_refresh_runs_total{result=\"incomplete\"} 1",
            "mtasts_proactive_refresh_results_total{result=\"fetched\"} 4",
            "mtasts_proactive_refresh_results_total{result=\"failed\"} 2",
            "mtasts_proactive_refresh_results_total{result=\"unchanged\"} 0",
            "mtasts_proactive_refresh_last_run_timestamp_seconds 1700000100",
        ] {
            assert!(
                text.contains(&format!("\n{line}\n")),
                "{line} missing in\n{text}"
            );
        }
    }

    #[tokio::test]
    async fn timed_discover_records_each_discovery() {
        #[derive(Debug)]
        struct NoPolicy;
        #[async_trait]
        impl Discover for NoPolicy {
            async fn discover(&self, _: &DiscoveryRequest<'_>) -> Discovery {
                Discovery::NoPolicy {
                    reason: mtasts_engine::NoPolicyReason::NxDomain,
                    negative_ttl: None,
                }
            }
        }
        let metrics = Arc::new(Metrics::new::<_, &str>([]));
        let timed = TimedDiscover::new(NoPolicy, Arc::clone(&metrics));
        let domain = PolicyDomain::parse("example.com").expect("domain");
        for _ in 0..3 {
            let request = DiscoveryRequest::new(&domain, None, Duration::from_secs(1));
            let d = timed.discover(&request).await;
            assert!(matches!(d, Discovery::NoPolicy { .. }));
        }
        assert_eq!(metrics.discoveries_timed(), 3);
        let text = metrics.render(&Registry::default());
        assert!(
            text.contains("\nmtasts_discovery_duration_seconds_count 3\n"),
            "{text}"
        );
    }
}
