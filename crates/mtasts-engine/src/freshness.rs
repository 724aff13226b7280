//! The freshness rules (RFC 8461 §3.1, §3.3, §5.1, §10.2) as pure functions.
//!
//! [`Freshness::decide`] says what a refresh of a domain does, given what memory and the store know: answer
//! without discovery, or discover (and whether the TXT id may be found unchanged). [`Freshness::apply`] says what
//! a discovery's result changes: the memory entry, the store write, the answer. Neither does I/O, awaits, reads a
//! clock or counts anything: time is an argument, the effects are returned. The async shell (`refresh.rs`) does
//! the I/O around them; the unit tests at the bottom drive them without a runtime.

use std::sync::Arc;
use std::time::Duration;

use mtasts_cache::CacheEntry;
use mtasts_core::{Mode, PolicyId};

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

/// Whether `policy` must be fetched over HTTPS (not just re-checked by TXT id) at `now`, given that it should
/// stay valid for `horizon` more seconds (the next proactive pass).
fn needs_refetch(policy: &ResolvedPolicy, now: u64, horizon: u64) -> bool {
    let margin = refetch_margin(u64::from(policy.policy().max_age().as_secs()));
    now.saturating_add(margin).saturating_add(horizon) >= policy.expires_at()
}

/// What the engine keeps in memory per domain.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FrontEntry {
    /// The cached policy (possibly expired; [`FrontEntry::answer`] checks), or none.
    pub(crate) policy: Option<Arc<ResolvedPolicy>>,
    /// When `policy` was last confirmed current (0 when there is none).
    pub(crate) checked_at: u64,
    /// Answer from memory, without store or network, while `now < fresh_until`.
    pub(crate) fresh_until: u64,
    /// No discovery for this domain while `now < retry_after` (failure back-off, RFC 8461 §3.3).
    pub(crate) retry_after: u64,
}

impl FrontEntry {
    /// `policy`, confirmed current at `checked_at`: answered from memory for `grace` seconds.
    fn confirmed(policy: Arc<ResolvedPolicy>, checked_at: u64, grace: u64) -> Self {
        Self {
            policy: Some(policy),
            checked_at,
            fresh_until: checked_at.saturating_add(grace),
            retry_after: 0,
        }
    }

    /// The answer this entry gives at `now`, or `None` when the store and maybe the network must be asked.
    pub(crate) fn answer(&self, now: u64) -> Option<Resolution> {
        if now >= self.fresh_until {
            return None;
        }
        let backing_off = now < self.retry_after;
        match &self.policy {
            // RFC 8461 §5.1: an expired policy is never applied; look again.
            Some(policy) if !policy.is_valid_at(now) => None,
            Some(policy) => Some(Resolution {
                policy: Some(Arc::clone(policy)),
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
    pub(crate) fn valid_policy(&self, now: u64) -> Option<Arc<ResolvedPolicy>> {
        self.policy.clone().filter(|p| p.is_valid_at(now))
    }
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
    /// `horizon` seconds more. Bounded by the pass's own concurrency, not by `max_in_flight`.
    Proactive { min_age: u64, horizon: u64 },
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
        // Truncation is intended: whole seconds; the value is finite and non-negative.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let min_age = (interval.as_secs_f64() / ratio) as u64;
        Self::Proactive {
            min_age,
            horizon: interval.as_secs(),
        }
    }

    /// Whether a proactive pass refreshes `policy`, last checked at `checked_at`: checked `min_age` ago or more,
    /// or it would come within its near-expiry margin before the next pass. A lookup refreshes whatever it is
    /// asked about.
    pub(crate) fn is_due(self, policy: &ResolvedPolicy, checked_at: u64, now: u64) -> bool {
        match self {
            Self::Lookup => true,
            Self::Proactive { min_age, horizon } => {
                now.saturating_sub(checked_at) >= min_age || needs_refetch(policy, now, horizon)
            }
        }
    }
}

/// The best policy known for a domain during a refresh.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Known {
    pub(crate) policy: Arc<ResolvedPolicy>,
    pub(crate) checked_at: u64,
    /// Read from the store (newer than the memory copy), not from memory.
    pub(crate) from_store: bool,
}

impl Known {
    fn valid_policy(&self, now: u64) -> Option<Arc<ResolvedPolicy>> {
        Some(Arc::clone(&self.policy)).filter(|p| p.is_valid_at(now))
    }
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
    pub(crate) fn overloaded(&self, now: u64) -> Done {
        Done {
            resolution: stale_or_none(self.known.as_ref().and_then(|k| k.valid_policy(now))),
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
    /// The domain's new memory entry.
    pub(crate) front: FrontEntry,
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
        ttl: u64,
    },
    Failed {
        error: DiscoveryError,
        /// A valid cached policy answers meanwhile.
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

/// The engine's freshness settings, whole seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Freshness {
    /// How long a check is answered from memory (`cache_grace`); also the shortest "no policy" caching.
    pub(crate) grace: u64,
    /// The longest "no policy" caching, whatever the DNS negative TTL (never below `grace`).
    pub(crate) max_negative_ttl: u64,
    /// How long a domain is not discovered again after a failure (RFC 8461 §3.3).
    pub(crate) failure_backoff: u64,
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
        now: u64,
        purpose: Purpose,
    ) -> Decision {
        let retry_after = front.map_or(0, |entry| entry.retry_after);
        let mut known = front.and_then(|entry| {
            entry.policy.as_ref().map(|policy| Known {
                policy: Arc::clone(policy),
                checked_at: entry.checked_at,
                from_store: false,
            })
        });
        let mut purged = false;
        match stored {
            Stored::Entry(entry)
                if known
                    .as_ref()
                    .is_none_or(|k| entry.checked_at > k.checked_at) =>
            {
                let policy = match &known {
                    // The same policy, checked again (by another host): keep sharing the memory copy.
                    Some(k)
                        if *k.policy.id() == entry.policy_id
                            && k.policy.fetched_at() == entry.fetched_at =>
                    {
                        Arc::clone(&k.policy)
                    }
                    _ => Arc::new(ResolvedPolicy::from_entry(&entry)),
                };
                known = Some(Known {
                    policy,
                    checked_at: entry.checked_at,
                    from_store: true,
                });
            }
            // Gone from the store: forget the memory copy too, so that a purge reaches every engine using the
            // store within `cache_grace`. A full discovery with an HTTPS fetch follows (re-checking the old id
            // would bring back the purged policy).
            Stored::Absent if known.is_some() => {
                known = None;
                purged = true;
            }
            Stored::Entry(_) | Stored::Absent | Stored::Unknown => {}
        }

        let (min_age, horizon) = match purpose {
            Purpose::Lookup => (self.grace, 0),
            Purpose::Proactive { min_age, horizon } => (min_age, horizon),
        };
        if let Some(k) = &known
            && k.policy.is_valid_at(now)
            && now.saturating_sub(k.checked_at) < min_age
            // A proactive pass refreshes a policy that would near expiry before the next pass.
            && (horizon == 0 || !needs_refetch(&k.policy, now, horizon))
        {
            let (source, remember) = if k.from_store {
                // Another host's clock may be ahead: never trust a check from the future for longer than grace.
                let checked_at = k.checked_at.min(now);
                let entry = FrontEntry::confirmed(Arc::clone(&k.policy), checked_at, self.grace);
                (Source::Store, Some(entry))
            } else {
                (Source::Memory, None)
            };
            let done = Done {
                resolution: Resolution {
                    policy: Some(Arc::clone(&k.policy)),
                    source,
                },
                outcome: Outcome::Fresh,
            };
            return Decision {
                purged,
                step: Step::Answer { done, remember },
            };
        }

        // RFC 8461 §3.3: rate-limit refetch attempts after a failure.
        if now < retry_after {
            let done = Done {
                resolution: stale_or_none(known.as_ref().and_then(|k| k.valid_policy(now))),
                outcome: Outcome::Backoff,
            };
            return Decision {
                purged,
                step: Step::Answer {
                    done,
                    remember: None,
                },
            };
        }

        // An unchanged id needs no HTTPS, unless the policy is near expiry (§5.1, see `refetch_margin`).
        let known_id = known
            .as_ref()
            .filter(|k| !needs_refetch(&k.policy, now, horizon))
            .map(|k| k.policy.id().clone());
        Decision {
            purged,
            step: Step::Discover(Plan {
                known,
                known_id,
                purged,
            }),
        }
    }

    /// What `discovery`, run for `plan`, changes at `now` (when it finished).
    pub(crate) fn apply(&self, discovery: Discovery, plan: Plan, now: u64) -> Applied {
        match discovery {
            Discovery::Fetched { id, policy } => {
                let resolved = Arc::new(ResolvedPolicy::new(id, policy, now));
                let event = Event::Fetched {
                    reason: plan.fetch_reason(),
                    id: resolved.id().clone(),
                    mode: resolved.policy().mode(),
                    max_age: resolved.policy().max_age().as_secs(),
                };
                self.confirmed(resolved, now, Outcome::Fetched, event)
            }
            Discovery::Unchanged { id } => match plan.known {
                Some(k) if plan.known_id.as_ref() == Some(&id) => {
                    // checked_at moves, fetched_at stays: an unchanged id does not extend validity (§5.1).
                    self.confirmed(k.policy, now, Outcome::Unchanged, Event::Unchanged { id })
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
                    .map_or(0, |ttl| ttl.as_secs())
                    .min(self.max_negative_ttl)
                    .max(self.grace);
                let fresh_until = now.saturating_add(ttl);
                let had_known = plan.known.is_some();
                let kept = plan.known.filter(|k| k.policy.is_valid_at(now));
                let event = Event::NoPolicy {
                    reason,
                    kept_cached: kept.is_some(),
                    ttl,
                };
                let (front, store, policy) = match kept {
                    // RFC 8461 §10.2: removing the TXT record does not remove a cached policy; it applies until
                    // it expires (§5.1).
                    Some(k) => (
                        FrontEntry {
                            policy: Some(Arc::clone(&k.policy)),
                            checked_at: k.checked_at,
                            fresh_until,
                            retry_after: 0,
                        },
                        StoreWrite::Nothing,
                        Some(k.policy),
                    ),
                    None => (
                        FrontEntry {
                            policy: None,
                            checked_at: 0,
                            fresh_until,
                            retry_after: 0,
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
                    front,
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
            Discovery::Failed(error) => self.failed(plan.known, error, now),
        }
    }

    /// `policy` confirmed current at `now` by a discovery: remembered, written through, answered.
    fn confirmed(
        &self,
        policy: Arc<ResolvedPolicy>,
        now: u64,
        outcome: Outcome,
        event: Event,
    ) -> Applied {
        Applied {
            front: FrontEntry::confirmed(Arc::clone(&policy), now, self.grace),
            store: StoreWrite::Set(policy.to_entry(now)),
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
    fn failed(&self, known: Option<Known>, error: DiscoveryError, now: u64) -> Applied {
        let kept = known.filter(|k| k.policy.is_valid_at(now));
        let stale = kept.is_some();
        let retry_after = now.saturating_add(self.failure_backoff);
        let (policy, checked_at) = match kept {
            Some(k) => (Some(k.policy), k.checked_at),
            None => (None, 0),
        };
        Applied {
            front: FrontEntry {
                policy: policy.clone(),
                checked_at,
                fresh_until: retry_after,
                retry_after,
            },
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
