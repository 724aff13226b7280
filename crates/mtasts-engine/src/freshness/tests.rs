//! The freshness rules, table-driven, without a runtime: no tokio, no clock, no store, no discoverer.

use std::sync::Arc;
use std::time::Duration;

use mtasts_cache::CacheEntry;
use mtasts_core::Policy;

use super::*;

const T0: u64 = 1_700_000_000;
const DAY: u64 = 86_400;
const RULES: Freshness = Freshness {
    grace: 60,
    max_negative_ttl: 3_600,
    failure_backoff: 120,
};

/// Policy `id` with `max_age`, fetched at `fetched_at`.
fn policy(id: &str, max_age: u64, fetched_at: u64) -> Arc<ResolvedPolicy> {
    let text = format!("version: STSv1\nmode: enforce\nmax_age: {max_age}\nmx: mx.example.com\n");
    let policy = Policy::parse(text.as_bytes()).unwrap_or_else(|e| panic!("test policy: {e}"));
    let id = id.parse().unwrap_or_else(|e| panic!("test id {id}: {e}"));
    Arc::new(ResolvedPolicy::new(id, policy, fetched_at))
}

fn id_of(policy: Option<&Arc<ResolvedPolicy>>) -> &str {
    policy.map_or("-", |p| p.id().as_str())
}

/// `time` as seconds after T0 (0 stays 0: "never").
fn rel(time: u64) -> u64 {
    time.saturating_sub(T0)
}

fn outcome(outcome: Outcome) -> String {
    match outcome {
        Outcome::Fresh => "fresh".into(),
        Outcome::Fetched => "fetched".into(),
        Outcome::Unchanged => "unchanged".into(),
        Outcome::NoPolicy => "no_policy".into(),
        Outcome::Failed { kind } => format!("failed:{kind}"),
        Outcome::Backoff => "backoff".into(),
        Outcome::Overloaded => "overloaded".into(),
    }
}

/// A [`Decision`] in words: `fresh memory id1`, `fresh store id1 remembered@50`, `backoff stale id1`,
/// `recheck id1` (a discovery asking about id1), `fetch` (a discovery that fetches over HTTPS); `purged, …`
/// when the memory copy was dropped. Times are seconds after T0.
fn decided(decision: &Decision) -> String {
    let purged = if decision.purged { "purged, " } else { "" };
    let step = match &decision.step {
        Step::Answer { done, remember } => {
            let answer = format!(
                "{} {} {}",
                outcome(done.outcome),
                done.resolution.source,
                id_of(done.resolution.policy.as_ref())
            );
            match remember {
                Some(entry) => format!("{answer} remembered@{}", rel(entry.checked_at)),
                None => answer,
            }
        }
        Step::Discover(plan) => match &plan.known_id {
            Some(id) => format!("recheck {id}"),
            None => "fetch".into(),
        },
    };
    format!("{purged}{step}")
}

const LOOKUP: Purpose = Purpose::Lookup;
/// A daily pass refreshing entries checked more than half a day ago.
const DAILY: Purpose = Purpose::Proactive {
    min_age: DAY / 2,
    horizon: DAY,
};

/// A day-long policy `id` fetched at T0 and confirmed at T0 + `checked`, as a lookup leaves it in memory.
fn mem(id: &str, checked: u64) -> Option<FrontEntry> {
    Some(FrontEntry::confirmed(
        policy(id, DAY, T0),
        T0 + checked,
        RULES.grace,
    ))
}

/// A policy `id` with `max_age`, fetched and confirmed at T0.
fn mem_aged(id: &str, max_age: u64) -> Option<FrontEntry> {
    Some(FrontEntry::confirmed(
        policy(id, max_age, T0),
        T0,
        RULES.grace,
    ))
}

/// The store's entry for a day-long policy `id` fetched at T0, checked at T0 + `checked`.
fn in_store(id: &str, checked: u64) -> Stored {
    Stored::Entry(policy(id, DAY, T0).to_entry(T0 + checked))
}

/// Memory backing off until T0 + `until`, keeping a 600 s policy `id` fetched at T0 (or nothing).
fn off(id: Option<&str>, until: u64) -> Option<FrontEntry> {
    Some(FrontEntry {
        policy: id.map(|id| policy(id, 600, T0)),
        checked_at: if id.is_some() { T0 } else { 0 },
        fresh_until: T0 + until,
        retry_after: T0 + until,
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
        ("check from the future", None, in_store("id1", 500), 0, "fresh store id1 remembered@0"),
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
        let decision = RULES.decide(front.as_ref(), stored, T0 + now, LOOKUP);
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
        let decision = RULES.decide(front.as_ref(), UNKNOWN, T0 + now, DAILY);
        assert_eq!(decided(&decision), want, "{name}");
    }
}

/// What a discovery changed, in words: the outcome, the answer, the memory entry (policy, checked, fresh until,
/// retry after), the store write and the log line's reason. Times are seconds after T0.
fn applied(applied: &Applied) -> String {
    let front = &applied.front;
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
        Event::Failed { error, .. } => error.kind(),
    };
    format!(
        "{} {} {}; memory {} {}/{}/{}; store {store}; log {reason}",
        outcome(applied.done.outcome),
        applied.done.resolution.source,
        id_of(applied.done.resolution.policy.as_ref()),
        id_of(front.policy.as_ref()),
        rel(front.checked_at),
        rel(front.fresh_until),
        rel(front.retry_after),
    )
}

/// A plan knowing policy `id` (`max_age`, fetched at T0, checked at T0 + `checked`), asking about `asked`.
fn knowing(id: &str, max_age: u64, checked: u64, asked: Option<&str>) -> Plan {
    Plan {
        known: Some(Known {
            policy: policy(id, max_age, T0),
            checked_at: T0 + checked,
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

/// The discoveries of the apply tests finish at T0 + 100.
const NOW: u64 = T0 + 100;

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
    ];
    for (name, plan, discovery, want) in cases {
        assert_eq!(applied(&RULES.apply(discovery, plan, NOW)), want, "{name}");
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
        let applied = RULES.apply(no_policy(negative_ttl), nothing(false), NOW);
        assert_eq!(
            applied.front.fresh_until - NOW,
            cached_for,
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
                min_age,
                horizon: DAY
            },
            "ratio {ratio}"
        );
    }
}

#[test]
fn a_proactive_pass_is_due_for_old_checks_and_policies_nearing_expiry() {
    let long = policy("id1", 31_557_600, T0);
    let day = policy("id1", DAY, T0);
    for (what, policy, now, due) in [
        ("checked an hour ago", &long, T0 + 3_600, false),
        ("checked half a day ago", &long, T0 + DAY / 2, true),
        (
            "would near expiry before the next pass",
            &day,
            T0 + 3_600,
            true,
        ),
    ] {
        assert_eq!(DAILY.is_due(policy, T0, now), due, "{what}");
    }
    assert!(
        LOOKUP.is_due(&long, T0, T0),
        "a lookup refreshes what it asks about"
    );
}
