//! The freshness rules, table-driven, without a runtime: no tokio, no clock, no store, no discoverer.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use mtasts_cache::CacheEntry;
use mtasts_core::Policy;
use tokio::time::Instant;

use super::*;

/// The wall clock at the start of each test (Unix seconds).
const T0: u64 = 1_700_000_000;
const DAY: u64 = 86_400;
const RULES: Freshness = Freshness {
    grace: Duration::from_secs(60),
    max_negative_ttl: Duration::from_secs(3_600),
    failure_backoff: Duration::from_secs(120),
};

/// Monotonic time at the start of each test (when the wall clock shows T0).
static M0: LazyLock<Instant> = LazyLock::new(Instant::now);

/// `ms` milliseconds after the start (T0 on the wall clock, M0 on the monotonic one).
fn at_ms(ms: u64) -> Now {
    let since = Duration::from_millis(ms);
    Now {
        wall: Duration::from_secs(T0) + since,
        mono: *M0 + since,
    }
}

/// `secs` seconds after the start.
fn at(secs: u64) -> Now {
    at_ms(secs * 1_000)
}

/// Monotonic time `secs` after the start.
fn mono(secs: u64) -> Instant {
    at(secs).mono
}

/// Policy `id` with `max_age`, fetched at `fetched_at` (Unix seconds).
fn policy(id: &str, max_age: u64, fetched_at: u64) -> Arc<ResolvedPolicy> {
    let text = format!("version: STSv1\nmode: enforce\nmax_age: {max_age}\nmx: mx.example.com\n");
    let policy = Policy::parse(text.as_bytes()).unwrap_or_else(|e| panic!("test policy: {e}"));
    let id = id.parse().unwrap_or_else(|e| panic!("test id {id}: {e}"));
    Arc::new(ResolvedPolicy::new(id, policy, fetched_at))
}

/// Policy `id` with `max_age`, fetched at the start, as memory holds it.
fn held(id: &str, max_age: u64) -> Held {
    Held::fetched(policy(id, max_age, T0), &at(0))
}

fn id_of(policy: Option<&Arc<ResolvedPolicy>>) -> &str {
    policy.map_or("-", |p| p.id().as_str())
}

/// Seconds from the start to `time` (wall-clock seconds, 0 staying 0: "never").
fn rel(time: u64) -> u64 {
    time.saturating_sub(T0)
}

/// Seconds from the start to the monotonic `time`, with a fraction when there is one.
fn rel_mono(time: Instant) -> String {
    let since = time.saturating_duration_since(*M0);
    if since.subsec_nanos() == 0 {
        since.as_secs().to_string()
    } else {
        format!("{:.1}", since.as_secs_f64())
    }
}

fn outcome(outcome: Outcome) -> String {
    match outcome {
        Outcome::Fresh => "fresh".into(),
        Outcome::Fetched => "fetched".into(),
        Outcome::Unchanged => "unchanged".into(),
        Outcome::NoPolicy => "no_policy".into(),
        Outcome::Failed { kind } => format!("failed:{kind}"),
        Outcome::LocalResource { kind } => format!("local:{kind}"),
        Outcome::Backoff => "backoff".into(),
        Outcome::Overloaded => "overloaded".into(),
    }
}

/// A [`Decision`] in words: `fresh memory id1`, `fresh store id1 remembered@50`, `backoff stale id1`,
/// `recheck id1` (a discovery asking about id1), `fetch` (a discovery that fetches over HTTPS); `purged, …`
/// when the memory copy was dropped, `skewed, …` when the store's entry is from the future. Times are seconds
/// after the start.
fn decided(decision: &Decision) -> String {
    let purged = if decision.purged { "purged, " } else { "" };
    let skewed = if decision.skewed { "skewed, " } else { "" };
    let step = match &decision.step {
        Step::Answer { done, remember } => {
            let answer = format!(
                "{} {} {}",
                outcome(done.outcome),
                done.resolution.source,
                id_of(done.resolution.policy.as_ref())
            );
            match remember.as_ref().and_then(|entry| entry.checked) {
                Some(checked) => format!("{answer} remembered@{}", rel_mono(checked)),
                None => answer,
            }
        }
        Step::Discover(plan) => match &plan.known_id {
            Some(id) => format!("recheck {id}"),
            None => "fetch".into(),
        },
    };
    format!("{skewed}{purged}{step}")
}

const LOOKUP: Purpose = Purpose::Lookup;
/// A daily pass refreshing entries checked more than half a day ago.
const DAILY: Purpose = Purpose::Proactive {
    min_age: Duration::from_secs(DAY / 2),
    horizon: Duration::from_secs(DAY),
};

/// A day-long policy `id` fetched at the start and confirmed `checked` seconds later, as a lookup leaves it in
/// memory.
fn mem(id: &str, checked: u64) -> Option<FrontEntry> {
    Some(FrontEntry::confirmed(
        held(id, DAY),
        mono(checked),
        RULES.grace,
    ))
}

/// A policy `id` with `max_age`, fetched and confirmed at the start.
fn mem_aged(id: &str, max_age: u64) -> Option<FrontEntry> {
    Some(FrontEntry::confirmed(
        held(id, max_age),
        mono(0),
        RULES.grace,
    ))
}

/// The store's entry for a day-long policy `id` fetched at the start, checked `checked` seconds later.
fn in_store(id: &str, checked: u64) -> Stored {
    Stored::Entry(policy(id, DAY, T0).to_entry(T0 + checked))
}

/// The store's entry for a day-long policy `id` checked at `checked_at` and fetched at `fetched_at` (Unix
/// seconds).
fn stored_at(id: &str, checked_at: u64, fetched_at: u64) -> Stored {
    Stored::Entry(policy(id, DAY, fetched_at).to_entry(checked_at))
}

/// Memory backing off until `until` seconds after the start, keeping a 600 s policy `id` fetched at the start
/// (or nothing).
fn off(id: Option<&str>, until: u64) -> Option<FrontEntry> {
    Some(FrontEntry {
        policy: id.map(|id| held(id, 600)),
        checked: id.map(|_| mono(0)),
        fresh_until: mono(until),
        retry_after: Some(mono(until)),
    })
}

const UNKNOWN: Stored = Stored::Unknown;
const ABSENT: Stored = Stored::Absent;

#[test]
fn decide_for_a_lookup() {
    #[rustfmt::skip]
    let cases = [
        ("nothing known", None, UNKNOWN, 0, "fetch"),
        ("checked within grace", mem("id1", 0), UNKNOWN, 59, "fresh memory id1"),
        ("past grace, store unreadable", mem("id1", 0), UNKNOWN, 61, "recheck id1"),
        ("another host checked", mem("id1", 0), in_store("id1", 50), 61, "fresh store id1 remembered@50"),
        ("store has a new policy", mem("id1", 0), in_store("id2", 61), 62, "fresh store id2 remembered@61"),
        ("a check from the future counts as now", None, in_store("id1", 500), 0, "skewed, fresh store id1 remembered@0"),
        ("a check 30 s ahead is kept", None, in_store("id1", 30), 0, "fresh store id1 remembered@0"),
        ("a check from the future is not newer than memory", mem("id1", 0), in_store("id1", 3_600), 61, "skewed, recheck id1"),
        ("nor while memory is fresh", mem("id1", 0), in_store("id2", 3_600), 59, "skewed, fresh memory id1"),
        ("a fetch from the future counts as now", None, stored_at("id1", T0, T0 + 365 * DAY), 0, "skewed, fresh store id1 remembered@0"),
        ("checked before the monotonic clock began", None, stored_at("id1", 1, T0), 0, "recheck id1"),
        ("older store entry", mem("id1", 10), in_store("id0", 0), 71, "recheck id1"),
        ("gone from the store", mem("id1", 0), ABSENT, 61, "purged, fetch"),
        ("absent, nothing known", None, ABSENT, 0, "fetch"),
        ("in the refetch margin", mem_aged("id1", 600), UNKNOWN, 450, "fetch"),
        ("before the margin", mem_aged("id1", 600), UNKNOWN, 449, "recheck id1"),
        ("expired within grace", mem_aged("id1", 1), UNKNOWN, 1, "fetch"),
        ("backing off", off(Some("id1"), 220), UNKNOWN, 200, "backoff stale id1"),
        ("backing off, expired", off(Some("id1"), 620), UNKNOWN, 610, "backoff unavailable -"),
        ("back-off over", off(None, 120), UNKNOWN, 120, "fetch"),
        ("purged while backing off", off(Some("id1"), 220), ABSENT, 200, "purged, backoff unavailable -"),
    ];
    for (name, front, stored, now, want) in cases {
        let decision = RULES.decide(front.as_ref(), stored, &at(now), LOOKUP);
        assert_eq!(decided(&decision), want, "{name}");
    }
}

#[test]
fn decide_for_a_daily_proactive_pass() {
    #[rustfmt::skip]
    let cases = [
        ("checked an hour ago", mem_aged("id1", 31_557_600), 3_600, "fresh memory id1"),
        ("checked half a day ago", mem_aged("id1", 31_557_600), DAY / 2, "recheck id1"),
        ("near expiry before the next pass", mem_aged("id1", DAY), 3_600, "fetch"),
    ];
    for (name, front, now, want) in cases {
        let decision = RULES.decide(front.as_ref(), UNKNOWN, &at(now), DAILY);
        assert_eq!(decided(&decision), want, "{name}");
    }
}

/// What a discovery changed, in words: the outcome, the answer, the memory entry (policy, checked, fresh until,
/// retry after; 0 for none; `unchanged` when memory stays as it was), the store write and the log line's
/// reason. Times are seconds after the start.
fn applied(applied: &Applied) -> String {
    let store = match &applied.store {
        StoreWrite::Nothing => "-".to_owned(),
        StoreWrite::Set(CacheEntry {
            checked_at,
            fetched_at,
            ..
        }) => format!("set {}/{}", rel(*checked_at), rel(*fetched_at)),
        StoreWrite::Remove => "remove".to_owned(),
    };
    let reason = match &applied.event {
        Event::Fetched { reason, .. } => reason,
        Event::Unchanged { .. } => "id_unchanged",
        Event::NoPolicy { reason, .. } => reason.kind(),
        Event::Failed { error, .. } | Event::LocalResource { error, .. } => error.kind(),
    };
    let memory = applied.front.as_ref().map_or("unchanged".into(), |front| {
        format!(
            "{} {}/{}/{}",
            id_of(front.policy.as_ref().map(|held| &held.policy)),
            front.checked.map_or("0".into(), rel_mono),
            rel_mono(front.fresh_until),
            front.retry_after.map_or("0".into(), rel_mono),
        )
    });
    format!(
        "{} {} {}; memory {memory}; store {store}; log {reason}",
        outcome(applied.done.outcome),
        applied.done.resolution.source,
        id_of(applied.done.resolution.policy.as_ref()),
    )
}

/// A plan knowing policy `id` (`max_age`, fetched at the start, checked `checked` seconds later), asking about
/// `asked`.
fn knowing(id: &str, max_age: u64, checked: u64, asked: Option<&str>) -> Plan {
    Plan {
        known: Some(Known {
            held: held(id, max_age),
            checked: Some(mono(checked)),
            from_store: false,
        }),
        known_id: asked.map(|id| id.parse().unwrap_or_else(|e| panic!("test id {id}: {e}"))),
        purged: false,
    }
}

/// A plan knowing nothing (the memory copy `purged` or never there).
const fn nothing(purged: bool) -> Plan {
    Plan {
        known: None,
        known_id: None,
        purged,
    }
}

fn fetched(id: &str) -> Discovery {
    let text = "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mx.example.com\n";
    Discovery::Fetched {
        id: id.parse().unwrap_or_else(|e| panic!("test id {id}: {e}")),
        policy: Policy::parse(text.as_bytes()).unwrap_or_else(|e| panic!("test policy: {e}")),
    }
}

fn unchanged(id: &str) -> Discovery {
    Discovery::Unchanged {
        id: id.parse().unwrap_or_else(|e| panic!("test id {id}: {e}")),
    }
}

fn no_policy(negative_ttl: Option<u64>) -> Discovery {
    Discovery::NoPolicy {
        reason: NoPolicyReason::NxDomain,
        negative_ttl: negative_ttl.map(Duration::from_secs),
    }
}

fn failed() -> Discovery {
    Discovery::Failed(DiscoveryError::new("http_status", "HTTP 503"))
}

/// A discovery this host could not run: no descriptor for its socket (EMFILE).
fn local_failure() -> Discovery {
    let emfile = std::io::Error::from_raw_os_error(24);
    Discovery::Failed(DiscoveryError::local_resource("local_resource", emfile))
}

/// The discoveries of the apply tests finish 100 s after the start.
fn finished() -> Now {
    at(100)
}

#[test]
fn apply_a_discovery() {
    let id1 = Some("id1");
    #[rustfmt::skip]
    let cases = [
        ("new policy", nothing(false), fetched("id1"),
            "fetched discovered id1; memory id1 100/160/0; store set 100/100; log new"),
        ("purged, fetched afresh", nothing(true), fetched("id1"),
            "fetched discovered id1; memory id1 100/160/0; store set 100/100; log purged"),
        ("id changed", knowing("id1", DAY, 0, id1), fetched("id2"),
            "fetched discovered id2; memory id2 100/160/0; store set 100/100; log id_changed"),
        ("refetched near expiry", knowing("id1", 120, 0, None), fetched("id1"),
            "fetched discovered id1; memory id1 100/160/0; store set 100/100; log near_expiry"),
        ("unchanged: checked_at moves, fetched_at stays", knowing("id1", DAY, 10, id1), unchanged("id1"),
            "unchanged discovered id1; memory id1 100/160/0; store set 100/0; log id_unchanged"),
        ("unchanged, not asked: a failure", nothing(false), unchanged("id1"),
            "failed:unexpected_unchanged unavailable -; memory - 0/220/220; store -; log unexpected_unchanged"),
        ("unchanged, another id: a failure", knowing("id1", DAY, 0, id1), unchanged("id9"),
            "failed:unexpected_unchanged stale id1; memory id1 0/220/220; store -; log unexpected_unchanged"),
        ("record removed: the valid policy stays (§10.2)", knowing("id1", DAY, 0, id1), no_policy(Some(300)),
            "no_policy discovered id1; memory id1 0/400/0; store -; log nxdomain"),
        ("record removed after expiry", knowing("id1", 60, 0, None), no_policy(None),
            "no_policy discovered -; memory - 0/160/0; store remove; log nxdomain"),
        ("no policy, nothing known", nothing(false), no_policy(None),
            "no_policy discovered -; memory - 0/160/0; store -; log nxdomain"),
        ("failure: stale and back-off", knowing("id1", DAY, 0, id1), failed(),
            "failed:http_status stale id1; memory id1 0/220/220; store -; log http_status"),
        ("failure after expiry", knowing("id1", 60, 0, None), failed(),
            "failed:http_status unavailable -; memory - 0/220/220; store -; log http_status"),
        // Issue 11 item 3: this host's failure is not the domain's: no back-off, memory and store untouched.
        ("local resource: the valid policy answers", knowing("id1", DAY, 0, id1), local_failure(),
            "local:local_resource stale id1; memory unchanged; store -; log local_resource"),
        ("local resource near expiry", knowing("id1", 120, 0, None), local_failure(),
            "local:local_resource stale id1; memory unchanged; store -; log local_resource"),
        ("local resource after expiry", knowing("id1", 60, 0, None), local_failure(),
            "local:local_resource unavailable -; memory unchanged; store -; log local_resource"),
        ("local resource, nothing known", nothing(false), local_failure(),
            "local:local_resource unavailable -; memory unchanged; store -; log local_resource"),
        ("local resource after a purge", nothing(true), local_failure(),
            "local:local_resource unavailable -; memory unchanged; store -; log local_resource"),
    ];
    for (name, plan, discovery, want) in cases {
        assert_eq!(
            applied(&RULES.apply(discovery, plan, &finished())),
            want,
            "{name}"
        );
    }
}

#[test]
fn no_policy_is_cached_between_grace_and_max_negative_ttl() {
    for (negative_ttl, cached_for) in [
        (None, 60),
        (Some(5), 60),
        (Some(300), 300),
        (Some(DAY), 3_600),
    ] {
        let applied = RULES.apply(no_policy(negative_ttl), nothing(false), &finished());
        assert_eq!(
            applied.front.expect("remembered").fresh_until - finished().mono,
            Duration::from_secs(cached_for),
            "negative TTL {negative_ttl:?}"
        );
    }
}

#[test]
fn refetch_margin_is_a_quarter_of_max_age_at_most_a_day() {
    for (max_age, margin) in [
        (1, 0),
        (4, 1),
        (600, 150),
        (4 * DAY, DAY),
        (31_557_600, DAY),
    ] {
        assert_eq!(refetch_margin(max_age), margin, "max_age {max_age}");
    }
}

#[test]
fn a_proactive_pass_every_interval_refreshes_entries_older_than_interval_over_ratio() {
    for (ratio, min_age) in [
        (2.0, DAY / 2),
        (1.0, DAY),
        (0.0, DAY),
        (-1.0, DAY),
        (f64::NAN, DAY),
    ] {
        assert_eq!(
            Purpose::proactive(Duration::from_secs(DAY), ratio),
            Purpose::Proactive {
                min_age: Duration::from_secs(min_age),
                horizon: Duration::from_secs(DAY)
            },
            "ratio {ratio}"
        );
    }
}

#[test]
fn a_proactive_pass_is_due_for_old_checks_and_policies_nearing_expiry() {
    const YEAR: u32 = 31_557_600;
    let secs = Duration::from_secs;
    #[rustfmt::skip]
    let cases = [
        ("checked an hour ago", YEAR, 3_600, u64::from(YEAR), false),
        ("checked half a day ago", YEAR, DAY / 2, u64::from(YEAR), true),
        ("would near expiry before the next pass", 86_400, 3_600, DAY - 3_600, true),
    ];
    for (what, max_age, age, remaining, due) in cases {
        assert_eq!(
            DAILY.is_due(max_age, secs(age), secs(remaining)),
            due,
            "{what}"
        );
    }
    assert!(
        LOOKUP.is_due(YEAR, Duration::ZERO, secs(u64::from(YEAR))),
        "a lookup refreshes what it asks about"
    );
}

/// A store's year-long policies, as a daily pass an hour after the start sees them: times from the future count
/// as now.
#[test]
fn a_proactive_pass_counts_stored_times_from_the_future_as_now() {
    const YEAR: u64 = 31_557_600;
    let now = at(3_600);
    #[rustfmt::skip]
    let cases = [
        ("checked at the start", T0, T0, false),
        ("checked a day before", T0 - DAY, T0 - DAY, true),
        ("checked 30 s ahead", T0 + 3_630, T0, false),
        ("checked a year ahead: counts as now", T0 + YEAR, T0, false),
        ("fetched a year ahead: counts as now", T0, T0 + YEAR, false),
        ("fetched a year before the next pass", T0, T0 - YEAR + DAY, true),
    ];
    for (what, checked_at, fetched_at, due) in cases {
        let entry = policy("id1", YEAR, fetched_at).to_entry(checked_at);
        assert_eq!(DAILY.is_due_stored(&entry, &now), due, "{what}");
    }
}

/// Row 11 of issue 11: memory deadlines are monotonic with sub-second precision. A "no policy" answer cached for
/// a 1 s grace is still answered 0.2 s later and not 1 s later; a policy with `max_age: 2` is still applied
/// 1.3 s and 1.99 s after its fetch, and not 2 s after.
#[test]
fn memory_deadlines_are_sub_second() {
    let rules = Freshness {
        grace: Duration::from_secs(1),
        ..RULES
    };
    let nothing_found = rules
        .apply(no_policy(None), nothing(false), &at(0))
        .front
        .expect("remembered");
    for (ms, answered) in [(200, true), (999, true), (1_000, false)] {
        let answer = nothing_found.answer(at_ms(ms).mono);
        assert_eq!(answer.is_some(), answered, "no policy, {ms} ms later");
    }

    let text = "version: STSv1\nmode: enforce\nmax_age: 2\nmx: mx.example.com\n";
    let discovery = Discovery::Fetched {
        id: "id1".parse().unwrap_or_else(|e| panic!("test id: {e}")),
        policy: Policy::parse(text.as_bytes()).unwrap_or_else(|e| panic!("test policy: {e}")),
    };
    // Fetched 0.7 s into a second: whole seconds would have dropped it at 1.3 s.
    let fetched = RULES
        .apply(discovery, nothing(false), &at_ms(700))
        .front
        .expect("remembered");
    for (ms, valid) in [(2_000, true), (2_690, true), (2_700, false)] {
        let answer = fetched.answer(at_ms(ms).mono);
        assert_eq!(
            answer.is_some(),
            valid,
            "max_age 2, {ms} ms after the start"
        );
    }
}

/// A policy read from the store is valid for what is left of its `max_age` after the stored fetch time, to the
/// sub-second; one fetched in the future counts as fetched now.
#[test]
fn a_stored_policy_expires_max_age_after_its_stored_fetch() {
    let expiry = |stored: Stored, now: Now| match RULES.decide(None, stored, &now, LOOKUP).step {
        Step::Answer {
            remember: Some(entry),
            ..
        } => entry.policy.map(|held| rel_mono(held.expires)),
        Step::Answer { .. } | Step::Discover(_) => None,
    };
    // A day-long policy fetched at the start, read 0.5 s after it was checked.
    let read = at_ms(100_500);
    assert_eq!(
        expiry(stored_at("id1", T0 + 100, T0), read),
        Some(DAY.to_string())
    );
    // Fetched a year ahead: counts as fetched in the second of the read.
    let ahead = stored_at("id1", T0 + 100, T0 + 365 * DAY);
    assert_eq!(expiry(ahead, read), Some((DAY + 100).to_string()));
}
