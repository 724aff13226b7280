//! The engine's metrics: live counters the engine increments and anyone can read, registered once in a
//! Prometheus [`Registry`] (prometheus-client).
//!
//! Adding a metric is one field in [`EngineStats`] and its line in `EngineStats::new`: the registry encodes it,
//! embedders read it from the field.

use std::fmt;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

/// The label set of a family with one label.
type Label = [(&'static str, &'static str); 1];

/// The engine's metrics ([`Engine::stats`](crate::Engine::stats)): live, so a read is always current.
///
/// Each field names the sample it is exposed as when the engine is built with
/// [`EngineBuilder::build_with_registry`](crate::EngineBuilder::build_with_registry); the registry also holds
/// `mtasts_cache_entries{layer="memory"}` (entries in the memory front, read at each scrape) and
/// `mtasts_discovery_failures_total{kind}` ([`EngineStats::failures`]). Counters only grow for the life of the
/// engine.
///
/// ```
/// use std::time::Duration;
/// use mtasts_core::PolicyDomain;
/// use mtasts_engine::prometheus_client::{encoding::text::encode, registry::Registry};
/// use mtasts_engine::{Discover, Discovery, DiscoveryRequest, Engine, NoPolicyReason, async_trait};
///
/// struct Nothing;
///
/// #[async_trait]
/// impl Discover for Nothing {
///     async fn discover(&self, _: &DiscoveryRequest<'_>) -> Discovery {
///         Discovery::NoPolicy { reason: NoPolicyReason::NxDomain, negative_ttl: None }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut registry = Registry::default();
/// let engine = Engine::builder(Nothing).build_with_registry(&mut registry);
/// let domain = PolicyDomain::parse("example.com")?;
/// engine.resolve(&domain, Duration::from_secs(4)).await;
/// engine.resolve(&domain, Duration::from_secs(4)).await;
///
/// assert_eq!(engine.stats().no_policy.get(), 1);
/// assert_eq!(engine.stats().memory_hits.get(), 1);
/// let mut text = String::new();
/// encode(&mut text, &registry)?;
/// assert!(text.contains("\nmtasts_discoveries_total{outcome=\"no_policy\"} 1\n"));
/// assert!(text.contains("\nmtasts_cache_entries{layer=\"memory\"} 1\n"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct EngineStats {
    /// Lookups answered by the memory front, including cached "no policy" and back-off answers
    /// (`mtasts_cache_hits_total{layer="memory"}`).
    pub memory_hits: Count,
    /// Lookups answered by the persistent store without discovery (`mtasts_cache_hits_total{layer="store"}`).
    pub store_hits: Count,
    /// Lookups the memory front could not answer (`mtasts_cache_misses_total`).
    pub misses: Count,
    /// Discoveries that fetched a policy over HTTPS (`mtasts_discoveries_total{outcome="fetched"}`).
    pub fetched: Count,
    /// Discoveries that found the TXT id unchanged, without HTTPS
    /// (`mtasts_discoveries_total{outcome="unchanged"}`).
    pub unchanged: Count,
    /// Discoveries that found no policy (`mtasts_discoveries_total{outcome="no_policy"}`).
    pub no_policy: Count,
    /// Discoveries that failed (`mtasts_discoveries_total{outcome="failed"}`); by kind: [`EngineStats::failures`].
    pub failed: Count,
    /// Discoveries that could not run because this host lacked a descriptor or memory for a socket
    /// (`mtasts_discoveries_total{outcome="local_resource"}`): not counted as failures of the domain, see
    /// [`DiscoveryError::local_resource`](crate::DiscoveryError::local_resource).
    pub local_resource: Count,
    /// Lookups that joined a discovery already running for their domain (`mtasts_discoveries_coalesced_total`).
    pub coalesced: Count,
    /// Discoveries running now (`mtasts_discoveries_in_flight`).
    pub in_flight: Level,
    /// Discoveries skipped because the domain is backing off after a failure, RFC 8461 §3.3 rate limit
    /// (`mtasts_discoveries_skipped_total{reason="backoff"}`).
    pub backoff_skips: Count,
    /// Discoveries that could not start within the lookup's timeout because `max_in_flight` were running
    /// (`mtasts_discoveries_skipped_total{reason="overloaded"}`).
    pub overloaded: Count,
    /// Lookups answered from a cached policy because discovery failed or could not run
    /// (`mtasts_stale_answers_total`).
    pub stale_answers: Count,
    /// Store reads that failed, each counted as a miss (`mtasts_store_errors_total{op="read"}`).
    pub store_read_errors: Count,
    /// Store writes that failed, logged and otherwise ignored (`mtasts_store_errors_total{op="write"}`).
    pub store_write_errors: Count,
    /// Store writes dropped because 1000 were already waiting for a slow store
    /// (`mtasts_store_writes_dropped_total`); each domain is written again at its next check.
    pub store_writes_dropped: Count,
    /// Memory copies dropped because the store no longer held the domain (purged, e.g. by
    /// `mta-sts-daemon cache purge`); each is followed by a full discovery (`mtasts_memory_purged_total`).
    pub store_purged: Count,
    /// Store entries read with a time more than `MAX_CLOCK_SKEW` (60 s) after this host's clock, written by a
    /// host whose clock runs ahead; each counted as now (`mtasts_store_future_times_total`).
    pub store_skewed: Count,
    /// Discoveries that found an invalid `STSv1` TXT record, or several, so no policy (RFC 8461 §3.1), where the
    /// Python daemon may have enforced one (`mtasts_invalid_records_total`); see
    /// [`NoPolicyReason::is_invalid_record`](crate::NoPolicyReason::is_invalid_record).
    pub invalid_records: Count,
    /// Failed discoveries by failure kind ([`DiscoveryError::kind`](crate::DiscoveryError::kind)).
    failures: Family<Label, Counter>,
}

impl EngineStats {
    /// The metrics, registered in `registry`; `memory_entries` tells the memory front's size at each scrape.
    pub(crate) fn new(
        registry: &mut Registry,
        memory_entries: impl Fn() -> usize + Send + Sync + 'static,
    ) -> Self {
        let mut r = Registrar(registry);
        let hits = r.family(
            "mtasts_cache_hits",
            "layer",
            "Lookups answered from a cache layer without discovery (memory front, persistent store)",
        );
        let misses = r.count(
            "mtasts_cache_misses",
            "Lookups the memory front could not answer (then answered by the store, a discovery or a stale entry)",
        );
        r.0.register(
            "mtasts_cache_entries",
            "Entries in a cache layer now",
            Sampled {
                label: [("layer", "memory")],
                read: Box::new(memory_entries),
            },
        );
        let outcomes = r.family(
            "mtasts_discoveries",
            "outcome",
            "Policy discoveries, by outcome",
        );
        let failures = Family::default();
        r.0.register(
            "mtasts_discovery_failures",
            "Failed policy discoveries, by failure kind",
            Declared(failures.clone()),
        );
        let coalesced = r.count(
            "mtasts_discoveries_coalesced",
            "Lookups that joined a discovery already running for their domain",
        );
        let in_flight = Level::default();
        r.0.register(
            "mtasts_discoveries_in_flight",
            "Policy discoveries running now",
            in_flight.0.clone(),
        );
        let skipped = r.family(
            "mtasts_discoveries_skipped",
            "reason",
            "Discoveries not run: the domain is backing off after a failure (RFC 8461 section 3.3), or too many were running",
        );
        let stale_answers = r.count(
            "mtasts_stale_answers",
            "Lookups answered from a cached, still valid policy because discovery failed or could not run",
        );
        let store_errors = r.family(
            "mtasts_store_errors",
            "op",
            "Persistent store operations that failed",
        );
        Self {
            memory_hits: hits.child("memory"),
            store_hits: hits.child("store"),
            misses,
            fetched: outcomes.child("fetched"),
            unchanged: outcomes.child("unchanged"),
            no_policy: outcomes.child("no_policy"),
            failed: outcomes.child("failed"),
            local_resource: outcomes.child("local_resource"),
            coalesced,
            in_flight,
            backoff_skips: skipped.child("backoff"),
            overloaded: skipped.child("overloaded"),
            stale_answers,
            store_read_errors: store_errors.child("read"),
            store_write_errors: store_errors.child("write"),
            store_writes_dropped: r.count(
                "mtasts_store_writes_dropped",
                "Store writes dropped because 1000 were already waiting for a slow store",
            ),
            store_purged: r.count(
                "mtasts_memory_purged",
                "Memory copies dropped because the store no longer held the domain (purged); each is rediscovered",
            ),
            store_skewed: r.count(
                "mtasts_store_future_times",
                "Store entries read with a time more than 60 s after this host's clock (a host whose clock runs ahead wrote them); each counted as now",
            ),
            invalid_records: r.count(
                "mtasts_invalid_records",
                "Discoveries that found an invalid STSv1 TXT record, or several (no policy, RFC 8461 section 3.1)",
            ),
            failures,
        }
    }

    /// Failed discoveries of failure kind `kind` (`mtasts_discovery_failures_total{kind="…"}`; the kinds are
    /// [`DiscoveryError::kind`](crate::DiscoveryError::kind) labels).
    #[must_use]
    pub fn failures(&self, kind: &'static str) -> u64 {
        self.failures
            .get(&[("kind", kind)])
            .map_or(0, |counter| counter.get())
    }

    /// Counts a failed discovery of failure kind `kind`.
    pub(crate) fn failure(&self, kind: &'static str) {
        self.failed.inc();
        self.failures.get_or_create(&[("kind", kind)]).inc();
    }
}

/// A counter of the engine: only the engine counts, anyone reads.
#[derive(Debug, Clone, Default)]
pub struct Count(Counter);

impl Count {
    /// The count so far.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.0.get()
    }

    pub(crate) fn inc(&self) {
        self.0.inc();
    }
}

/// A gauge of the engine (a level that goes up and down): only the engine sets it, anyone reads.
#[derive(Debug, Clone, Default)]
pub struct Level(Gauge);

impl Level {
    /// The level now.
    #[must_use]
    pub fn get(&self) -> i64 {
        self.0.get()
    }

    pub(crate) fn inc(&self) {
        self.0.inc();
    }

    pub(crate) fn dec(&self) {
        self.0.dec();
    }
}

/// Registers the engine's families.
struct Registrar<'a>(&'a mut Registry);

impl Registrar<'_> {
    /// A counter without labels.
    fn count(&mut self, name: &str, help: &str) -> Count {
        let count = Count::default();
        self.0.register(name, help, count.0.clone());
        count
    }

    /// A counter family with one label.
    fn family(&mut self, name: &str, label: &'static str, help: &str) -> Labelled {
        let family = Family::default();
        self.0.register(name, help, family.clone());
        Labelled { family, label }
    }
}

/// A counter family with one label; [`Labelled::child`] is one label value's counter.
struct Labelled {
    family: Family<Label, Counter>,
    label: &'static str,
}

impl Labelled {
    fn child(&self, value: &'static str) -> Count {
        Count(self.family.get_or_create_owned(&[(self.label, value)]))
    }
}

/// A family declared (`# HELP`, `# TYPE`) even before its first sample, so that a dashboard or an alert can
/// rely on its name from the start.
#[derive(Debug)]
struct Declared<M>(M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder<'_>) -> fmt::Result {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

/// A labelled gauge whose value is read at each scrape.
struct Sampled {
    label: Label,
    read: Box<dyn Fn() -> usize + Send + Sync>,
}

impl fmt::Debug for Sampled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sampled")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl EncodeMetric for Sampled {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> fmt::Result {
        let value = i64::try_from((self.read)()).unwrap_or(i64::MAX);
        ConstGauge::new(value).encode(encoder.encode_family(&self.label)?)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use prometheus_client::encoding::text::encode;

    use super::*;

    fn encoded(registry: &Registry) -> String {
        let mut text = String::new();
        encode(&mut text, registry).expect("encode");
        text
    }

    #[test]
    fn counts_are_read_from_the_fields_and_the_registry_alike() {
        let mut registry = Registry::default();
        let stats = EngineStats::new(&mut registry, || 0);
        stats.memory_hits.inc();
        stats.memory_hits.inc();
        stats.overloaded.inc();
        stats.in_flight.inc();
        assert_eq!(stats.memory_hits.get(), 2);
        assert_eq!(stats.store_hits.get(), 0);
        assert_eq!(stats.in_flight.get(), 1);
        let text = encoded(&registry);
        for line in [
            "mtasts_cache_hits_total{layer=\"memory\"} 2",
            "mtasts_cache_hits_total{layer=\"store\"} 0",
            "mtasts_discoveries_skipped_total{reason=\"overloaded\"} 1",
            "mtasts_discoveries_skipped_total{reason=\"backoff\"} 0",
            "mtasts_discoveries_in_flight 1",
            "mtasts_cache_misses_total 0",
        ] {
            assert!(text.contains(&format!("\n{line}\n")), "{line} in\n{text}");
        }
    }

    #[test]
    fn failures_are_counted_by_kind_and_declared_before_the_first() {
        let mut registry = Registry::default();
        let stats = EngineStats::new(&mut registry, || 0);
        let text = encoded(&registry);
        assert!(
            text.contains("# TYPE mtasts_discovery_failures counter\n"),
            "{text}"
        );
        assert!(!text.contains("mtasts_discovery_failures_total{"), "{text}");
        stats.failure("dns_timeout");
        stats.failure("dns_timeout");
        stats.failure("http_status");
        assert_eq!(stats.failed.get(), 3);
        assert_eq!(stats.failures("dns_timeout"), 2);
        assert_eq!(stats.failures("tls"), 0);
        let text = encoded(&registry);
        assert!(
            text.contains("\nmtasts_discovery_failures_total{kind=\"dns_timeout\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("\nmtasts_discoveries_total{outcome=\"failed\"} 3\n"),
            "{text}"
        );
    }

    #[test]
    fn memory_entries_are_read_at_each_scrape() {
        let entries = Arc::new(AtomicUsize::new(7));
        let mut registry = Registry::default();
        let _stats = EngineStats::new(&mut registry, {
            let entries = Arc::clone(&entries);
            move || entries.load(Ordering::Relaxed)
        });
        assert!(encoded(&registry).contains("\nmtasts_cache_entries{layer=\"memory\"} 7\n"));
        entries.store(9, Ordering::Relaxed);
        assert!(encoded(&registry).contains("\nmtasts_cache_entries{layer=\"memory\"} 9\n"));
    }

    #[test]
    fn every_family_is_declared_once_with_help() {
        let mut registry = Registry::default();
        let _stats = EngineStats::new(&mut registry, || 0);
        let text = encoded(&registry);
        let types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types.len(), helps);
        let mut names: Vec<&str> = types.iter().filter_map(|t| t.split(' ').next()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), types.len(), "{text}");
        assert!(names.iter().all(|n| n.starts_with("mtasts_")), "{names:?}");
        assert!(text.ends_with("# EOF\n"));
    }
}
