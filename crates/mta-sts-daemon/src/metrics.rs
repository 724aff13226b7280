//! Prometheus metrics: the daemon's own families, registered next to the engine's in one prometheus-client
//! [`Registry`], and the HTTP endpoint serving it (OpenMetrics, or the 0.0.4 text format) on an optional
//! listener of its own (`metrics.listen`).
//!
//! [`Metrics`] holds the daemon's families (answers by zone and kind, connections, the discovery duration
//! histogram, proactive refresh runs, build information); the engine registers its own
//! ([`EngineBuilder::build_with_registry`](mtasts_engine::EngineBuilder::build_with_registry),
//! [`EngineStats`](mtasts_engine::EngineStats)). [`Format::encode`] writes the registry; [`serve`] answers
//! `GET /metrics` with it.
//!
//! Label sets are bounded: `zone` takes only configured zone names (plus `default` for every name answered by
//! `default_zone`), `kind`, `layer`, `outcome`, `reason`, `op` and `result` take fixed values, and a domain name
//! is never a label.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `mtasts_answers_total` | counter | `zone`, `kind` ([`AnswerKind`]) |
//! | `mtasts_connections_open` / `mtasts_connections_total` | gauge / counter | |
//! | `mtasts_protocol_errors_total` | counter | |
//! | `mtasts_cache_hits_total` | counter | `layer` = `memory`, `store` |
//! | `mtasts_cache_misses_total` | counter | |
//! | `mtasts_cache_entries` | gauge | `layer` = `memory` |
//! | `mtasts_discoveries_total` | counter | `outcome` = `fetched`, `unchanged`, `no_policy`, `failed`, `local_resource` |
//! | `mtasts_discovery_failures_total` | counter | `kind` (`mtasts_fetch::FetchError::kind`) |
//! | `mtasts_discovery_duration_seconds` | histogram | |
//! | `mtasts_discoveries_coalesced_total` | counter | |
//! | `mtasts_discoveries_in_flight` | gauge | |
//! | `mtasts_discoveries_skipped_total` | counter | `reason` = `backoff`, `overloaded` |
//! | `mtasts_stale_answers_total` | counter | |
//! | `mtasts_store_errors_total` | counter | `op` = `read`, `write` |
//! | `mtasts_memory_purged_total` | counter | |
//! | `mtasts_store_future_times_total` | counter | |
//! | `mtasts_invalid_records_total` | counter | |
//! | `mtasts_store_writes_dropped_total` | counter | |
//! | `mtasts_store_up` | gauge | |
//! | `mtasts_proactive_refresh_runs_total` | counter | `result` = `completed`, `incomplete` |
//! | `mtasts_proactive_refresh_results_total` | counter | `result` ([`RefreshReport`] fields) |
//! | `mtasts_proactive_refresh_last_run_timestamp_seconds` | gauge | |
//! | `mtasts_build_info` | gauge (OpenMetrics: info) | `version` |
//! | `mtasts_start_time_seconds` | gauge | |

mod http;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mtasts_engine::{
    Clock as _, DaneDiscovery, Discover, Discovery, DiscoveryRequest, RefreshReport, SystemClock,
    async_trait,
};
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use tokio_util::sync::CancellationToken;

pub(crate) use crate::answer::AnswerKind;
use crate::listen::Listener;

/// The HTTP path the endpoint serves.
pub(crate) const METRICS_PATH: &str = "/metrics";

/// The `zone` label of names answered by `default_zone` (every socketmap name not configured under `zones`).
pub(crate) const DEFAULT_ZONE_LABEL: &str = "default";

/// Upper bounds (seconds) of the discovery duration histogram's buckets. Discovery is bounded by the zone's
/// `timeout` (4 s by default), refreshes by the refresh timeout.
pub(crate) const DISCOVERY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0,
];

/// A text exposition format of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Format {
    /// OpenMetrics 1.0 text: what Prometheus asks for (`Accept: application/openmetrics-text`). Counter families
    /// are declared without their `_total` suffix, `mtasts_build_info` is an `info` family, and the document
    /// ends with `# EOF`.
    OpenMetrics,
    /// The Prometheus text format 0.0.4, which every scraper reads.
    Text,
}

impl Format {
    /// The `Content-Type` of a document in this format.
    #[must_use]
    pub(crate) const fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => prometheus_text::CONTENT_TYPE,
        }
    }

    /// The format to answer a request with the `Accept` header `accept` (its values joined with `,`):
    /// OpenMetrics when the client accepts it (with a `q` above 0 and no lower than `text/plain`'s), else the
    /// 0.0.4 text format, which every client reads.
    #[must_use]
    pub(crate) fn negotiate(accept: &str) -> Self {
        // The highest `q` given to a media type (RFC 9110 §12.5.1); 0 when it is not listed.
        let quality = |wanted: &str| {
            accept
                .split(',')
                .filter_map(|range| {
                    let mut parts = range.split(';').map(str::trim);
                    if !parts.next()?.eq_ignore_ascii_case(wanted) {
                        return None;
                    }
                    parts
                        .filter_map(|param| param.split_once('='))
                        .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                        .map_or(Some(1.0), |(_, q)| q.trim().parse::<f32>().ok())
                })
                .fold(0.0_f32, f32::max)
        };
        let openmetrics = quality("application/openmetrics-text");
        if openmetrics > 0.0 && openmetrics >= quality("text/plain") {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }

    /// `registry`'s families and samples in this format.
    #[must_use]
    pub(crate) fn encode(self, registry: &Registry) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail, and prometheus-client's encoders fail only when the writer does.
        let _ = match self {
            Self::OpenMetrics => text::encode(&mut out, registry),
            Self::Text => prometheus_text::encode(&mut out, registry),
        };
        out
    }
}

/// A zone's index in [`Metrics`], from [`Metrics::zone`]: resolve it once per request, count with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneId(usize);

/// Reads one count of a [`RefreshReport`].
type ReportCount = fn(&RefreshReport) -> u64;

/// The `result` label of each [`RefreshReport`] count in `mtasts_proactive_refresh_results_total`.
const REFRESH_RESULTS: [(&str, ReportCount); 7] = [
    ("fetched", |r| r.fetched),
    ("unchanged", |r| r.unchanged),
    ("no_policy", |r| r.no_policy),
    ("failed", |r| r.failed),
    ("backoff", |r| r.backoff),
    ("fresh", |r| r.fresh),
    ("invalid", |r| r.invalid),
];

/// The label set of a family with one label.
type Label = [(&'static str, &'static str); 1];

/// The daemon's metrics. Built once at start, shared (`Arc`) by the server, the discoverer and the proactive
/// refresh; the endpoint encodes the registry they are in. Counting is a relaxed atomic add (the discovery
/// histogram takes a short lock).
#[derive(Debug)]
pub struct Metrics {
    zone_ids: BTreeMap<String, usize>,
    /// One counter per zone and [`AnswerKind`], zone-major; index 0 is [`DEFAULT_ZONE_LABEL`].
    answers: Box<[Counter]>,
    connections_open: Gauge,
    connections_total: Counter,
    protocol_errors: Counter,
    discovery_duration: Histogram,
    /// `[completed, incomplete]`.
    refresh_runs: [Counter; 2],
    /// One counter per row of [`REFRESH_RESULTS`].
    refresh_results: Box<[Counter]>,
    refresh_last_run: Gauge,
    store_up: Gauge,
}

impl Metrics {
    /// The metrics of a daemon whose configured zones (`zones.<name>`) are `zone_names`, registered in
    /// `registry`.
    pub(crate) fn new<I, S>(registry: &mut Registry, zone_names: I) -> Self
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
        let answers = Family::<[(&'static str, String); 2], Counter>::default();
        registry.register(
            "mtasts_answers",
            "Socketmap answers sent, by zone (configured zone name, or default) and kind",
            answers.clone(),
        );
        let answers = zone_labels
            .iter()
            .flat_map(|zone| AnswerKind::ALL.map(|kind| (zone, kind)))
            .map(|(zone, kind)| {
                answers.get_or_create_owned(&[
                    ("zone", zone.clone()),
                    ("kind", kind.as_str().to_owned()),
                ])
            })
            .collect();
        let connections_open = Gauge::default();
        registry.register(
            "mtasts_connections_open",
            "Socketmap client connections open now",
            connections_open.clone(),
        );
        let connections_total = Counter::default();
        registry.register(
            "mtasts_connections",
            "Socketmap client connections accepted",
            connections_total.clone(),
        );
        let protocol_errors = Counter::default();
        registry.register(
            "mtasts_protocol_errors",
            "Socketmap protocol errors from clients (malformed or oversized netstrings, requests that are not `name key`); logged at most once a second",
            protocol_errors.clone(),
        );
        let discovery_duration = Histogram::new(DISCOVERY_BUCKETS.iter().copied());
        registry.register_with_unit(
            "mtasts_discovery_duration",
            "Duration of policy discoveries (DNS TXT lookup, then HTTPS fetch when needed), including refreshes",
            Unit::Seconds,
            discovery_duration.clone(),
        );
        let runs = Family::<Label, Counter>::default();
        registry.register(
            "mtasts_proactive_refresh_runs",
            "Proactive refresh passes, by whether the store scan reached its end",
            runs.clone(),
        );
        let results = Family::<Label, Counter>::default();
        registry.register(
            "mtasts_proactive_refresh_results",
            "Entries handled by proactive refresh passes, by result",
            results.clone(),
        );
        let refresh_last_run = Gauge::default();
        registry.register_with_unit(
            "mtasts_proactive_refresh_last_run_timestamp",
            "End of the last proactive refresh pass, Unix time (0: none yet)",
            Unit::Seconds,
            refresh_last_run.clone(),
        );
        // Up until a persistent store says otherwise (`cache.type: internal` is always up).
        let store_up = Gauge::default();
        store_up.set(1);
        registry.register(
            "mtasts_store_up",
            "Whether the cache store is open and answering (1) or not (0: answering from memory and the network, retrying)",
            store_up.clone(),
        );
        registry.register(
            "mtasts_build",
            "Build information; the value is always 1",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register_with_unit(
            "mtasts_start_time",
            "Start time of the daemon, Unix time",
            Unit::Seconds,
            ConstGauge::new(i64::try_from(SystemClock.now()).unwrap_or(i64::MAX)),
        );
        Self {
            zone_ids,
            answers,
            connections_open,
            connections_total,
            protocol_errors,
            discovery_duration,
            refresh_runs: ["completed", "incomplete"]
                .map(|result| runs.get_or_create_owned(&[("result", result)])),
            refresh_results: REFRESH_RESULTS
                .iter()
                .map(|(result, _)| results.get_or_create_owned(&[("result", result)]))
                .collect(),
            refresh_last_run,
            store_up,
        }
    }

    /// Counts one socketmap protocol error from a client.
    pub(crate) fn protocol_error(&self) {
        self.protocol_errors.inc();
    }

    /// Socketmap protocol errors counted so far (`mtasts_protocol_errors_total`).
    pub fn protocol_errors(&self) -> u64 {
        self.protocol_errors.get()
    }

    /// Records whether the cache store is up.
    pub(crate) fn store_up(&self, up: bool) {
        self.store_up.set(i64::from(up));
    }

    /// Whether the cache store is open and answering (`mtasts_store_up`; always with `cache.type: internal`).
    pub fn is_store_up(&self) -> bool {
        self.store_up.get() == 1
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

    fn answer_counter(&self, zone: ZoneId, kind: AnswerKind) -> Option<&Counter> {
        self.answers
            .get(zone.0 * AnswerKind::ALL.len() + kind.index())
    }

    /// Counts one answer.
    pub(crate) fn answered(&self, zone: ZoneId, kind: AnswerKind) {
        if let Some(counter) = self.answer_counter(zone, kind) {
            counter.inc();
        }
    }

    /// Answers counted so far for `zone` and `kind`.
    pub fn answers(&self, zone: ZoneId, kind: AnswerKind) -> u64 {
        self.answer_counter(zone, kind).map_or(0, Counter::get)
    }

    /// Counts an open socketmap connection until the guard is dropped.
    pub(crate) fn connection(&self) -> ConnectionGuard {
        self.connections_total.inc();
        self.connections_open.inc();
        ConnectionGuard(self.connections_open.clone())
    }

    /// Socketmap connections open now.
    #[cfg(test)]
    fn open_connections(&self) -> i64 {
        self.connections_open.get()
    }

    /// Records how long one discovery took.
    pub(crate) fn observe_discovery(&self, elapsed: Duration) {
        self.discovery_duration.observe(elapsed.as_secs_f64());
    }

    /// Records one proactive refresh pass that ended at `ended_at` (Unix seconds).
    pub(crate) fn record_refresh(&self, report: &RefreshReport, ended_at: u64) {
        let [completed, incomplete] = &self.refresh_runs;
        if report.completed {
            completed
        } else {
            incomplete
        }
        .inc();
        for (counter, (_, count)) in self.refresh_results.iter().zip(REFRESH_RESULTS) {
            counter.inc_by(count(report));
        }
        self.refresh_last_run
            .set(i64::try_from(ended_at).unwrap_or(i64::MAX));
    }

    /// Proactive refresh passes recorded so far.
    pub fn refresh_runs(&self) -> u64 {
        self.refresh_runs.iter().map(Counter::get).sum()
    }
}

/// Keeps `mtasts_connections_open` counted while alive ([`Metrics::connection`]).
#[derive(Debug)]
pub(crate) struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A [`Discover`] that times each discovery of the one it wraps into `mtasts_discovery_duration_seconds`
/// (a discovery the engine cuts off at its timeout is recorded when it is dropped).
#[derive(Debug)]
pub(crate) struct TimedDiscover<D> {
    inner: D,
    metrics: Arc<Metrics>,
}

impl<D: Discover> TimedDiscover<D> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: D, metrics: Arc<Metrics>) -> Self {
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

    async fn discover_dane(&self, request: &DiscoveryRequest<'_>) -> DaneDiscovery {
        self.inner.discover_dane(request).await
    }
}

/// Serves `GET /metrics` on `listener` until `stop` is cancelled: `registry` (the daemon's [`Metrics`] and the
/// engine's), encoded at each scrape in the format the client accepts ([`Format::negotiate`]), over HTTP/1.1
/// (hyper). At most 64 connections at once; a client has 2 s to send a request head (also between requests
/// on a kept-alive connection). At stop the listener closes at once and idle connections are closed.
pub(crate) async fn serve(listener: Listener, registry: Arc<Registry>, stop: CancellationToken) {
    http::serve(listener, registry, http::Limits::DEFAULT, stop).await;
}

#[cfg(test)]
mod tests {
    use mtasts_core::PolicyDomain;

    use super::*;

    /// Every domain has no policy.
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

    fn registered(zones: &[&str]) -> (Registry, Metrics) {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry, zones);
        (registry, metrics)
    }

    #[track_caller]
    fn assert_lines(text: &str, lines: &[&str]) {
        for line in lines {
            assert!(
                text.contains(&format!("\n{line}\n")),
                "{line} missing in\n{text}"
            );
        }
    }

    #[test]
    fn prometheus_gets_openmetrics_other_clients_the_text_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(prometheus), Format::OpenMetrics);
        assert_eq!(Format::negotiate("*/*"), Format::Text);
        assert_eq!(
            Format::negotiate("text/plain, application/openmetrics-text;q=0.5"),
            Format::Text
        );
    }

    #[test]
    fn zones_are_configured_names_or_default() {
        let (registry, m) = registered(&["a", "b", "a", "default"]);
        assert_eq!(m.zone(b"a"), ZoneId(1));
        assert_eq!(m.zone(b"b"), ZoneId(2));
        assert_eq!(m.zone(b"default"), ZoneId(0));
        assert_eq!(m.zone(b"postfix"), ZoneId(0));
        assert_eq!(m.zone(b"\xff"), ZoneId(0));
        m.answered(m.zone(b"unknown.example.com"), AnswerKind::Secure);
        m.answered(m.zone(b"b"), AnswerKind::ParentDomain);
        assert_eq!(m.answers(ZoneId(0), AnswerKind::Secure), 1);
        let text = Format::Text.encode(&registry);
        let answers = text
            .lines()
            .filter(|l| l.starts_with("mtasts_answers_total{"))
            .count();
        assert_eq!(answers, 3 * AnswerKind::ALL.len(), "{text}");
        assert_lines(
            &text,
            &[
                "mtasts_answers_total{zone=\"default\",kind=\"secure\"} 1",
                "mtasts_answers_total{zone=\"b\",kind=\"parent_domain\"} 1",
                "mtasts_answers_total{zone=\"a\",kind=\"invalid\"} 0",
            ],
        );
        assert!(!text.contains("unknown.example.com"));
    }

    /// The daemon's and the engine's families in one registry, in both formats: the same samples, declared as
    /// each format wants.
    #[test]
    fn both_formats_carry_the_same_samples() {
        let (mut registry, m) = registered(&["z"]);
        let _engine = mtasts_engine::Engine::builder(NoPolicy).build_with_registry(&mut registry);
        m.answered(m.zone(b"z"), AnswerKind::Testing);
        // Bucket bounds are floats: OpenMetrics writes `1.0` where the 0.0.4 format writes `1`.
        let samples = |text: &str| {
            let mut lines: Vec<String> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| match l.split_once("le=\"") {
                    Some((name, rest)) => {
                        let (bound, rest) = rest.split_once('"').expect("closing quote");
                        let bound: f64 = bound.parse().expect("bucket bound");
                        format!("{name}le=\"{bound}\"{rest}")
                    }
                    None => l.to_owned(),
                })
                .collect();
            lines.sort_unstable();
            lines
        };
        let open = Format::OpenMetrics.encode(&registry);
        let plain = Format::Text.encode(&registry);
        assert_eq!(samples(&open), samples(&plain));
        assert!(open.ends_with("\n# EOF\n"), "{open}");
        assert!(!plain.contains("# EOF"), "{plain}");
        for line in [
            "# TYPE mtasts_answers counter",
            "# TYPE mtasts_build info",
            "# TYPE mtasts_discovery_duration_seconds histogram",
            "# UNIT mtasts_discovery_duration_seconds seconds",
            "# TYPE mtasts_discovery_failures counter",
        ] {
            assert!(open.contains(&format!("{line}\n")), "{line} in\n{open}");
        }
        for line in [
            "# TYPE mtasts_answers_total counter",
            "# TYPE mtasts_build_info gauge",
            "# HELP mtasts_discovery_failures_total Failed policy discoveries, by failure kind.",
        ] {
            assert!(plain.contains(&format!("{line}\n")), "{line} in\n{plain}");
        }
        assert_lines(
            &plain,
            &[
                "mtasts_answers_total{zone=\"z\",kind=\"testing\"} 1",
                &format!(
                    "mtasts_build_info{{version=\"{}\"}} 1",
                    env!("CARGO_PKG_VERSION")
                ),
                "mtasts_discovery_duration_seconds_bucket{le=\"+Inf\"} 0",
                "mtasts_cache_misses_total 0",
            ],
        );
        assert_eq!(
            Format::Text.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }

    #[test]
    fn connections_are_counted_while_open() {
        let (registry, m) = registered(&[]);
        let a = m.connection();
        let b = m.connection();
        assert_eq!(m.open_connections(), 2);
        drop(a);
        let text = Format::Text.encode(&registry);
        assert_lines(
            &text,
            &["mtasts_connections_open 1", "mtasts_connections_total 2"],
        );
        drop(b);
        assert_eq!(m.open_connections(), 0);
    }

    #[test]
    fn refresh_passes_are_summed() {
        let (registry, m) = registered(&[]);
        let mut report = RefreshReport::default();
        report.fetched = 2;
        report.failed = 1;
        report.invalid = 3;
        report.completed = true;
        m.record_refresh(&report, 1_700_000_000);
        report.completed = false;
        m.record_refresh(&report, 1_700_000_100);
        assert_eq!(m.refresh_runs(), 2);
        assert_lines(
            &Format::Text.encode(&registry),
            &[
                "mtasts_proactive_refresh_runs_total{result=\"completed\"} 1",
                "mtasts_proactive_refresh_runs_total{result=\"incomplete\"} 1",
                "mtasts_proactive_refresh_results_total{result=\"fetched\"} 4",
                "mtasts_proactive_refresh_results_total{result=\"failed\"} 2",
                "mtasts_proactive_refresh_results_total{result=\"invalid\"} 6",
                "mtasts_proactive_refresh_results_total{result=\"unchanged\"} 0",
                "mtasts_proactive_refresh_last_run_timestamp_seconds 1700000100",
            ],
        );
    }

    #[tokio::test]
    async fn timed_discover_records_each_discovery() {
        let (registry, metrics) = registered(&[]);
        let timed = TimedDiscover::new(NoPolicy, Arc::new(metrics));
        let domain = PolicyDomain::parse("example.com").expect("domain");
        for _ in 0..3 {
            let request = DiscoveryRequest::new(&domain, None, Duration::from_secs(1));
            let d = timed.discover(&request).await;
            assert!(matches!(d, Discovery::NoPolicy { .. }));
        }
        assert_lines(
            &Format::Text.encode(&registry),
            &["mtasts_discovery_duration_seconds_count 3"],
        );
    }
}
