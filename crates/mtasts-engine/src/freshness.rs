//! The freshness rules (RFC 8461 §3.1, §3.3, §5.1, §10.2) as pure functions.
//!
//! [`Freshness::decide`] says what a refresh of a domain does, given what memory and the store know: answer
//! without discovery, or discover (and whether the TXT id may be found unchanged). [`Freshness::apply`] says what
//! a discovery's result changes: the memory entry, the store write, the answer. Neither does I/O, awaits, reads a
//! clock or counts anything: time is an argument, the effects are returned. The async shell (`refresh.rs`) does
//! the I/O around them; the unit tests at the bottom drive them without a runtime.
//!
//! Time comes in two kinds ([`Now`]): what stores keep is wall-clock seconds; what memory keeps is monotonic
//! ([`Instant`]), with sub-second precision, so a wall clock that steps neither stretches nor cuts a deadline.
//! A stored time is converted when it is read. One more than [`MAX_CLOCK_SKEW`](mtasts_cache::MAX_CLOCK_SKEW)
//! in the future (a host whose clock runs ahead wrote it) counts as now, and never as a newer check than the
//! memory copy: the copy is re-checked after `cache_grace`, and that write replaces the entry.

use std::sync::Arc;
use std::time::Duration;

use mtasts_cache::{CacheEntry, clamp_skewed, is_skewed};
use mtasts_core::{Mode, PolicyId};
use tokio::time::Instant;

use crate::clock::{Now, later};
use crate::discover::{Discovery, DiscoveryError, NoPolicyReason};
use crate::resolution::{Resolution, ResolvedPolicy, Source};

/// Upper bound of the near-expiry margin, see [`refetch_margin`].
const MAX_REFETCH_MARGIN: u64 = 86_400;

/// The near-expiry margin for a policy with `max_age` seconds: a quarter of `max_age`, at most one day.
///
/// RFC 8461 §5.1: a policy is valid while less than `max_age` has passed since it was fetched; a TXT check that
/// finds the id unchanged (§3.1) says the policy did not change, but does not renew it. So once less than this
/// margin of validity is left, the engine fetches the policy over HTTPS again even when the id is unchanged, and
/// the policy never lapses for a domain that is looked up or proactively refreshed. A quarter keeps short-lived
/// policies (`max_age` of minutes) from being refetched on every check; the one-day cap bounds how early a
/// long-lived policy (weeks, the RFC's suggestion) is refetched. With `max_age: 1` the margin is 0: the policy is
/// refetched once it has expired.
///
/// ```
/// use mtasts_engine::refetch_margin;
/// assert_eq!(refetch_margin(600), 150);
/// assert_eq!(refetch_margin(31_557_600), 86_400);
/// assert_eq!(refetch_margin(1), 0);
/// ```
#[must_use]
pub const fn refetch_margin(max_age: u64) -> u64 {
    let quarter = max_age / 4;
    if quarter < MAX_REFETCH_MARGIN {
        quarter
    } else {
        MAX_REFETCH_MARGIN
    }
}

/// Whether a policy with `max_age` seconds and `remaining` validity must be fetched over HTTPS (not just
/// re-checked by TXT id), given that it should stay valid `horizon` longer (until the next proactive pass).
fn needs_refetch(max_age: u32, remaining: Duration, horizon: Duration) -> bool {
    let margin = Duration::from_secs(refetch_margin(u64::from(max_age)));
    remaining <= margin.saturating_add(horizon)
}

/// A policy in memory, and the monotonic time it stops being valid (RFC 8461 §5.1: `max_age` after its fetch).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Held {
    pub(crate) policy: Arc<ResolvedPolicy>,
    pub(crate) expires: Instant,
}

impl Held {
    /// `policy`, fetched over HTTPS `now`.
    fn fetched(policy: Arc<ResolvedPolicy>, now: &Now) -> Self {
        let max_age = Duration::from_secs(u64::from(policy.policy().max_age().as_secs()));
        Self {
            expires: now.after(max_age),
            policy,
        }
    }

    /// `policy`, read from a store at `now`: valid for what is left of `max_age` after its stored fetch time.
    fn stored(policy: Arc<ResolvedPolicy>, now: &Now) -> Self {
        Self {
            expires: now.after(now.until(policy.expires_at())),
            policy,
        }
    }

    /// Whether the policy may be applied at `now` (RFC 8461 §5.1).
    pub(crate) fn is_valid(&self, now: Instant) -> bool {
        now < self.expires
    }

    /// Whether it must be fetched over HTTPS at `now` to stay valid `horizon` longer; see [`refetch_margin`].
    fn needs_refetch(&self, now: Instant, horizon: Duration) -> bool {
        let remaining = self.expires.saturating_duration_since(now);
        needs_refetch(self.policy.policy().max_age().as_secs(), remaining, horizon)
    }
}

/// What the engine keeps in memory per domain. Times are monotonic.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FrontEntry {
    /// The cached policy (possibly expired; [`FrontEntry::answer`] checks), or none.
    pub(crate) policy: Option<Held>,
    /// When `policy` was last confirmed current (`None`: there is none, or longer ago than the monotonic clock
    /// reaches).
    pub(crate) checked: Option<Instant>,
    /// Answer from memory, without store or network, while `now < fresh_until`.
    pub(crate) fresh_until: Instant,
    /// No discovery for this domain while `now < retry_after` (failure back-off, RFC 8461 §3.3).
    pub(crate) retry_after: Option<Instant>,
}

impl FrontEntry {
    /// `held`, confirmed current at `checked`: answered from memory for `grace`.
    fn confirmed(held: Held, checked: Instant, grace: Duration) -> Self {
        Self {
            policy: Some(held),
            checked: Some(checked),
            fresh_until: later(checked, grace),
            retry_after: None,
        }
    }

    /// The answer this entry gives at `now`, or `None` when the store and maybe the network must be asked.
    pub(crate) fn answer(&self, now: Instant) -> Option<Resolution> {
        if now >= self.fresh_until {
            return None;
        }
        let backing_off = self.retry_after.is_some_and(|until| now < until);
        match &self.policy {
            // RFC 8461 §5.1: an expired policy is never applied; look again.
            Some(held) if !held.is_valid(now) => None,
            Some(held) => Some(Resolution {
                policy: Some(Arc::clone(&held.policy)),
                source: if backing_off {
                    Source::Stale
                } else {
                    Source::Memory
                },
            }),
            None => Some(Resolution::none(if backing_off {
                Source::Unavailable
            } else {
                Source::Memory
            })),
        }
    }

    /// The policy, if it may still be applied at `now` (RFC 8461 §5.1).
    pub(crate) fn valid_policy(&self, now: Instant) -> Option<Arc<ResolvedPolicy>> {
        valid(self.policy.as_ref(), now)
    }

    /// Whether a proactive pass at `now` refreshes this entry (see [`Purpose::is_due`]); `false` without a
    /// policy.
    pub(crate) fn is_due(&self, purpose: Purpose, now: Instant) -> bool {
        self.policy.as_ref().is_some_and(|held| {
            let age = self
                .checked
                .map_or(Duration::MAX, |c| now.saturating_duration_since(c));
            let remaining = held.expires.saturating_duration_since(now);
            purpose.is_due(held.policy.policy().max_age().as_secs(), age, remaining)
        })
    }
}

/// `held`'s policy, if it may still be applied at `now`.
fn valid(held: Option<&Held>, now: Instant) -> Option<Arc<ResolvedPolicy>> {
    held.filter(|h| h.is_valid(now))
        .map(|h| Arc::clone(&h.policy))
}

/// The answer when discovery failed or could not run: the cached policy while it is valid (RFC 8461 §3.3), else
/// none.
pub(crate) fn stale_or_none(policy: Option<Arc<ResolvedPolicy>>) -> Resolution {
    match policy {
        Some(policy) => Resolution {
            policy: Some(policy),
            source: Source::Stale,
        },
        None => Resolution::none(Source::Unavailable),
    }
}

/// What a refresh did (for the metrics and the proactive report).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Checked recently enough already: no discovery.
    Fresh,
    Fetched,
    Unchanged,
    NoPolicy,
    /// The discovery failed, with this [`DiscoveryError::kind`].
    Failed {
        kind: &'static str,
    },
    /// The discovery failed for want of a resource of this host (descriptors, memory), with this
    /// [`DiscoveryError::kind`]: no back-off, nothing cached.
    LocalResource {
        kind: &'static str,
    },
    /// Backing off after a failure: no discovery.
    Backoff,
    /// No discovery slot within the timeout.
    Overloaded,
}

/// The result of one refresh, shared by every lookup that joined it.
#[derive(Clone, Debug)]
pub(crate) struct Done {
    pub(crate) resolution: Resolution,
    pub(crate) outcome: Outcome,
}

/// Why a refresh runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A lookup: answers checked less than `cache_grace` ago are fresh; bounded by `max_in_flight`.
    Lookup,
    /// The proactive refresh: entries checked less than `min_age` ago are fresh; the policy should stay valid
    /// `horizon` more. Bounded by the pass's own concurrency, not by `max_in_flight`.
    Proactive {
        min_age: Duration,
        horizon: Duration,
    },
}

impl Purpose {
    /// The proactive pass that runs every `interval` and refreshes entries checked more than
    /// `interval / grace_ratio` ago (a ratio that is not a positive number counts as 1).
    pub(crate) fn proactive(interval: Duration, grace_ratio: f64) -> Self {
        let ratio = if grace_ratio.is_finite() && grace_ratio > 0.0 {
            grace_ratio
        } else {
            1.0
        };
        Self::Proactive {
            min_age: interval.div_f64(ratio),
            horizon: interval,
        }
    }

    /// Whether a proactive pass refreshes a policy with `max_age` seconds, checked `age` ago and valid
    /// `remaining` longer: checked `min_age` ago or more, or it would come within its near-expiry margin before
    /// the next pass. A lookup refreshes whatever it is asked about.
    pub(crate) fn is_due(self, max_age: u32, age: Duration, remaining: Duration) -> bool {
        match self {
            Self::Lookup => true,
            Self::Proactive { min_age, horizon } => {
                age >= min_age || needs_refetch(max_age, remaining, horizon)
            }
        }
    }

    /// [`Purpose::is_due`] for a store's `entry` at `now`, its times counted as [`Stored::Entry`]'s are (one more
    /// than `MAX_CLOCK_SKEW` in the future counts as now).
    pub(crate) fn is_due_stored(self, entry: &CacheEntry, now: &Now) -> bool {
        let checked_at = clamp_skewed(entry.checked_at, now.secs());
        let fetched_at = clamp_skewed(entry.fetched_at, now.secs());
        let max_age = entry.policy.max_age().as_secs();
        let remaining = now.until(fetched_at.saturating_add(u64::from(max_age)));
        self.is_due(max_age, now.since(checked_at), remaining)
    }
}

/// Whether a store's `entry` holds a time more than `MAX_CLOCK_SKEW` after `now` (a host whose clock runs ahead
/// wrote it).
pub(crate) fn is_skewed_entry(entry: &CacheEntry, now: &Now) -> bool {
    is_skewed(entry.checked_at, now.secs()) || is_skewed(entry.fetched_at, now.secs())
}

/// The best policy known for a domain during a refresh.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Known {
    pub(crate) held: Held,
    /// When it was last confirmed current (monotonic; `None`: long ago).
    pub(crate) checked: Option<Instant>,
    /// Read from the store (newer than the memory copy), not from memory.
    pub(crate) from_store: bool,
}

/// What the store said about a domain.
#[derive(Clone, Debug)]
pub(crate) enum Stored {
    /// Nothing known: there is no store, or reading it failed (a read error keeps the memory copy).
    Unknown,
    /// The store does not hold the domain.
    Absent,
    /// The store's entry.
    Entry(CacheEntry),
}

/// What a refresh does next, and what it learnt on the way.
#[derive(Debug)]
pub(crate) struct Decision {
    /// The store no longer holds a domain memory had: purged (e.g. `mta-sts-daemon cache purge` on any host
    /// sharing the store) or lost. The memory copy is forgotten.
    pub(crate) purged: bool,
    /// The store's entry holds a time more than `MAX_CLOCK_SKEW` in the future, counted as now.
    pub(crate) skewed: bool,
    pub(crate) step: Step,
}

/// The next step of a refresh.
#[derive(Debug)]
pub(crate) enum Step {
    /// Answer without discovery, after remembering `remember` in memory if given.
    Answer {
        done: Done,
        remember: Option<FrontEntry>,
    },
    /// Run a discovery.
    Discover(Plan),
}

/// A discovery to run.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// The best policy known before the discovery.
    pub(crate) known: Option<Known>,
    /// The id the discoverer may find unchanged (no HTTPS); `None`: fetch the policy over HTTPS.
    pub(crate) known_id: Option<PolicyId>,
    /// The memory copy was dropped because the store no longer holds the domain.
    pub(crate) purged: bool,
}

impl Plan {
    /// The answer when the discovery cannot start in time (no slot): the known policy while valid, else none.
    pub(crate) fn overloaded(&self, now: Instant) -> Done {
        Done {
            resolution: stale_or_none(valid(self.known.as_ref().map(|k| &k.held), now)),
            outcome: Outcome::Overloaded,
        }
    }

    /// Why a fetched policy was fetched, for the log: `new`, `purged`, `near_expiry` or `id_changed`.
    fn fetch_reason(&self) -> &'static str {
        match (&self.known, &self.known_id) {
            (None, _) if self.purged => "purged",
            (None, _) => "new",
            (Some(_), None) => "near_expiry",
            (Some(_), Some(_)) => "id_changed",
        }
    }
}

/// What to do to the store after a discovery.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum StoreWrite {
    Nothing,
    /// Write this entry (write-through).
    Set(CacheEntry),
    /// Remove the domain: its policy expired and it publishes none any more (bounds store growth).
    Remove,
}

/// What a discovery's result changes.
#[derive(Debug)]
pub(crate) struct Applied {
    /// The domain's new memory entry; `None`: memory stays as it is.
    pub(crate) front: Option<FrontEntry>,
    pub(crate) store: StoreWrite,
    pub(crate) done: Done,
    /// What to log.
    pub(crate) event: Event,
}

/// A discovery's result as logged (one info line per discovery).
#[derive(Debug)]
pub(crate) enum Event {
    Fetched {
        /// `new`, `purged`, `near_expiry` or `id_changed`.
        reason: &'static str,
        id: PolicyId,
        mode: Mode,
        max_age: u32,
    },
    Unchanged {
        id: PolicyId,
    },
    NoPolicy {
        reason: NoPolicyReason,
        /// A valid cached policy stays in use (RFC 8461 §10.2).
        kept_cached: bool,
        /// How long "no policy" (or the kept policy) is answered from memory.
        ttl: Duration,
    },
    Failed {
        error: DiscoveryError,
        /// A valid cached policy answers meanwhile.
        stale: bool,
    },
    /// This host lacked a resource ([`DiscoveryError::is_local_resource`]).
    LocalResource {
        error: DiscoveryError,
        /// A valid cached policy answers.
        stale: bool,
    },
}

/// Discovery results the engine treats as failures although the discoverer did not report one.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Anomaly {
    /// The discoverer answered "unchanged" to a question it was not asked.
    #[error("discovery reported id {id} unchanged, but the engine asked about {asked:?}")]
    UnexpectedUnchanged {
        id: PolicyId,
        asked: Option<PolicyId>,
    },
    /// The discoverer ignored its timeout and was cut off.
    #[error("discovery overran its {timeout:?} timeout")]
    Overran { timeout: Duration },
}

/// The engine's freshness settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Freshness {
    /// How long a check is answered from memory (`cache_grace`); also the shortest "no policy" caching.
    pub(crate) grace: Duration,
    /// The longest "no policy" caching, whatever the DNS negative TTL (never below `grace`).
    pub(crate) max_negative_ttl: Duration,
    /// How long a domain is not discovered again after a failure (RFC 8461 §3.3).
    pub(crate) failure_backoff: Duration,
}

impl Freshness {
    /// What a refresh for `purpose` does at `now`, given the memory entry `front` and what the store said.
    ///
    /// The store's entry is used when it was checked later than the memory copy (another host sharing the store
    /// refreshed the domain). A known policy that is valid and was checked recently enough is answered without
    /// discovery; a domain backing off after a failure is answered from the cache (stale) or not at all;
    /// otherwise a discovery runs, asking the TXT id to be re-checked unless the policy nears expiry.
    pub(crate) fn decide(
        &self,
        front: Option<&FrontEntry>,
        stored: Stored,
        now: &Now,
        purpose: Purpose,
    ) -> Decision {
        let retry_after = front.and_then(|entry| entry.retry_after);
        let mut known = front.and_then(|entry| {
            entry.policy.as_ref().map(|held| Known {
                held: held.clone(),
                checked: entry.checked,
                from_store: false,
            })
        });
        let (mut purged, mut skewed) = (false, false);
        match stored {
            Stored::Entry(entry) => {
                skewed = is_skewed_entry(&entry, now);
                // A time from the future counts as now (never later than now, at most 60 s ahead, as a check).
                let checked_at = clamp_skewed(entry.checked_at, now.secs());
                let checked = now.before(now.since(checked_at));
                let fetched_at = clamp_skewed(entry.fetched_at, now.secs());
                // Another host checked more recently than memory did. A check from the future is not: it says
                // nothing about when the host really checked, and counting it as now at every read would keep
                // it fresh forever.
                let newer = known.as_ref().is_none_or(|k| {
                    !is_skewed(entry.checked_at, now.secs()) && checked > k.checked
                });
                if newer {
                    let held = match &known {
                        // The same policy, checked again (by another host): keep sharing the memory copy.
                        Some(k)
                            if *k.held.policy.id() == entry.policy_id
                                && k.held.policy.fetched_at() == fetched_at =>
                        {
                            k.held.clone()
                        }
                        _ => {
                            let policy =
                                ResolvedPolicy::new(entry.policy_id, entry.policy, fetched_at);
                            Held::stored(Arc::new(policy), now)
                        }
                    };
                    known = Some(Known {
                        held,
                        checked,
                        from_store: true,
                    });
                }
            }
            // Gone from the store: forget the memory copy too, so that a purge reaches every engine using the
            // store within `cache_grace`. A full discovery with an HTTPS fetch follows (re-checking the old id
            // would bring back the purged policy).
            Stored::Absent if known.is_some() => {
                known = None;
                purged = true;
            }
            Stored::Absent | Stored::Unknown => {}
        }

        let (min_age, horizon) = match purpose {
            Purpose::Lookup => (self.grace, Duration::ZERO),
            Purpose::Proactive { min_age, horizon } => (min_age, horizon),
        };
        if let Some(k) = &known
            && let Some(checked) = k.checked
            && k.held.is_valid(now.mono)
            && now.mono.saturating_duration_since(checked) < min_age
            // A proactive pass refreshes a policy that would near expiry before the next pass.
            && (horizon.is_zero() || !k.held.needs_refetch(now.mono, horizon))
        {
            let (source, remember) = if k.from_store {
                // Never later than now (`checked` is not): a check from the future is not trusted for longer
                // than grace.
                let entry = FrontEntry::confirmed(k.held.clone(), checked, self.grace);
                (Source::Store, Some(entry))
            } else {
                (Source::Memory, None)
            };
            let done = Done {
                resolution: Resolution {
                    policy: Some(Arc::clone(&k.held.policy)),
                    source,
                },
                outcome: Outcome::Fresh,
            };
            return Decision {
                purged,
                skewed,
                step: Step::Answer { done, remember },
            };
        }

        // RFC 8461 §3.3: rate-limit refetch attempts after a failure.
        if retry_after.is_some_and(|until| now.mono < until) {
            let done = Done {
                resolution: stale_or_none(valid(known.as_ref().map(|k| &k.held), now.mono)),
                outcome: Outcome::Backoff,
            };
            return Decision {
                purged,
                skewed,
                step: Step::Answer {
                    done,
                    remember: None,
                },
            };
        }

        // An unchanged id needs no HTTPS, unless the policy is near expiry (§5.1, see `refetch_margin`).
        let known_id = known
            .as_ref()
            .filter(|k| !k.held.needs_refetch(now.mono, horizon))
            .map(|k| k.held.policy.id().clone());
        Decision {
            purged,
            skewed,
            step: Step::Discover(Plan {
                known,
                known_id,
                purged,
            }),
        }
    }

    /// What `discovery`, run for `plan`, changes at `now` (when it finished).
    pub(crate) fn apply(&self, discovery: Discovery, plan: Plan, now: &Now) -> Applied {
        match discovery {
            Discovery::Fetched { id, policy } => {
                let resolved = Arc::new(ResolvedPolicy::new(id, policy, now.secs()));
                let event = Event::Fetched {
                    reason: plan.fetch_reason(),
                    id: resolved.id().clone(),
                    mode: resolved.policy().mode(),
                    max_age: resolved.policy().max_age().as_secs(),
                };
                self.confirmed(Held::fetched(resolved, now), now, Outcome::Fetched, event)
            }
            Discovery::Unchanged { id } => match plan.known {
                Some(k) if plan.known_id.as_ref() == Some(&id) => {
                    // checked_at moves, fetched_at stays: an unchanged id does not extend validity (§5.1).
                    self.confirmed(k.held, now, Outcome::Unchanged, Event::Unchanged { id })
                }
                known => {
                    let error = Anomaly::UnexpectedUnchanged {
                        id,
                        asked: plan.known_id,
                    };
                    self.failed(
                        known,
                        DiscoveryError::new("unexpected_unchanged", error),
                        now,
                    )
                }
            },
            Discovery::NoPolicy {
                reason,
                negative_ttl,
            } => {
                let ttl = negative_ttl
                    .unwrap_or_default()
                    .min(self.max_negative_ttl)
                    .max(self.grace);
                let fresh_until = now.after(ttl);
                let had_known = plan.known.is_some();
                let kept = plan.known.filter(|k| k.held.is_valid(now.mono));
                let event = Event::NoPolicy {
                    reason,
                    kept_cached: kept.is_some(),
                    ttl,
                };
                let (front, store, policy) = match kept {
                    // RFC 8461 §10.2: removing the TXT record does not remove a cached policy; it applies until
                    // it expires (§5.1).
                    Some(k) => {
                        let policy = Arc::clone(&k.held.policy);
                        let front = FrontEntry {
                            policy: Some(k.held),
                            checked: k.checked,
                            fresh_until,
                            retry_after: None,
                        };
                        (front, StoreWrite::Nothing, Some(policy))
                    }
                    None => (
                        FrontEntry {
                            policy: None,
                            checked: None,
                            fresh_until,
                            retry_after: None,
                        },
                        // Expired and no longer published: nothing left to keep (bounds store growth).
                        if had_known {
                            StoreWrite::Remove
                        } else {
                            StoreWrite::Nothing
                        },
                        None,
                    ),
                };
                Applied {
                    front: Some(front),
                    store,
                    done: Done {
                        resolution: Resolution {
                            policy,
                            source: Source::Discovered,
                        },
                        outcome: Outcome::NoPolicy,
                    },
                    event,
                }
            }
            Discovery::Failed(error) if error.is_local_resource() => {
                Self::local_failure(plan.known.as_ref(), error, now)
            }
            Discovery::Failed(error) => self.failed(plan.known, error, now),
        }
    }

    /// A discovery this host could not run (no descriptor or memory for a socket): not the domain's failure.
    /// The cached policy answers while it is valid (RFC 8461 §3.3, §5.1), else none; no back-off, and nothing
    /// is remembered or written, so the next lookup discovers again.
    fn local_failure(known: Option<&Known>, error: DiscoveryError, now: &Now) -> Applied {
        let policy = valid(known.map(|k| &k.held), now.mono);
        let stale = policy.is_some();
        Applied {
            front: None,
            store: StoreWrite::Nothing,
            done: Done {
                outcome: Outcome::LocalResource { kind: error.kind() },
                resolution: stale_or_none(policy),
            },
            event: Event::LocalResource { error, stale },
        }
    }

    /// `held` confirmed current at `now` by a discovery: remembered, written through, answered.
    fn confirmed(&self, held: Held, now: &Now, outcome: Outcome, event: Event) -> Applied {
        let policy = Arc::clone(&held.policy);
        Applied {
            store: StoreWrite::Set(policy.to_entry(now.secs())),
            front: Some(FrontEntry::confirmed(held, now.mono, self.grace)),
            done: Done {
                resolution: Resolution {
                    policy: Some(policy),
                    source: Source::Discovered,
                },
                outcome,
            },
            event,
        }
    }

    /// A failed discovery: back off, answer from the cached policy while it is valid (§3.3).
    fn failed(&self, known: Option<Known>, error: DiscoveryError, now: &Now) -> Applied {
        let kept = known.filter(|k| k.held.is_valid(now.mono));
        let stale = kept.is_some();
        let retry_after = now.after(self.failure_backoff);
        let (held, checked) = match kept {
            Some(k) => (Some(k.held), k.checked),
            None => (None, None),
        };
        let policy = held.as_ref().map(|h| Arc::clone(&h.policy));
        Applied {
            front: Some(FrontEntry {
                policy: held,
                checked,
                fresh_until: retry_after,
                retry_after: Some(retry_after),
            }),
            store: StoreWrite::Nothing,
            done: Done {
                outcome: Outcome::Failed { kind: error.kind() },
                resolution: stale_or_none(policy),
            },
            event: Event::Failed { error, stale },
        }
    }
}

#[cfg(test)]
mod tests;
