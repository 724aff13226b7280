//! The MTA-STS (RFC 8461) policy resolution engine: which policy applies to a domain now?
//!
//! [`Engine`] answers from a bounded memory front, an optional persistent store ([`mtasts_cache::PolicyCache`],
//! shared by a fleet if wanted), and discovery over DNS and HTTPS through the [`Discover`] trait, following RFC
//! 8461's freshness rules strictly: a policy is applied only while less than its `max_age` has passed since its
//! last HTTPS fetch (§5.1), failures keep the cached policy and back off (§3.3), a removed TXT record does not
//! remove a cached policy (§10.2). Concurrent lookups of a domain share one discovery. The daemon
//! (`mta-sts-daemon`) wraps it; other Rust MTAs can embed it.
//!
//! - [`Engine`], built by [`EngineBuilder`]: [`Engine::resolve`] (and its synchronous hot path
//!   [`Engine::cached`]), [`Engine::purge`], [`Engine::refresh_proactively`] and [`Engine::spawn_proactive`]
//!   (the proactive refresh loop on the engine's clock), [`Engine::stats`]; for administration, what memory
//!   holds ([`Engine::memory_entry`] as a [`MemoryEntry`], [`Engine::memory_policies`]) and
//!   [`Engine::purge_all`].
//! - [`Engine::resolve_with_dane`] for zones that ask for DANE (RFC 7672; RFC 8461 §2: MTA-STS must not override
//!   DANE): a [`DaneResolution`], the MTA-STS resolution and a [`DaneAnswer`] from
//!   [`Discover::discover_dane`] ([`DaneDiscovery`]), kept in memory only.
//! - [`Resolution`]: a [`ResolvedPolicy`] or none, and its [`Source`]. There is no error type: a lookup never
//!   fails (RFC 8461 §3.3: deliver as if there were no policy).
//! - [`Discover`]: the discovery seam. The engine asks a [`DiscoveryRequest`] and gets a [`Discovery`] back; it
//!   depends on no DNS or HTTP library. `mtasts-fetch` implements it (hickory DNS, hyper + rustls); an MTA with
//!   its own resolver and HTTP client implements it instead.
//! - [`Clock`]: the time source ([`SystemClock`]; [`ManualClock`] for tests).
//! - [`EngineStats`]: the engine's metrics, live ([`Count`], [`Level`]), registered in a prometheus-client
//!   [`Registry`](prometheus_client::registry::Registry) by [`EngineBuilder::build_with_registry`].
//! - [`RefreshReport`]: a proactive pass's result.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use mtasts_cache::MemoryCache;
//! use mtasts_core::PolicyDomain;
//! use mtasts_engine::Engine;
//! use mtasts_fetch::Fetcher;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::builder(Fetcher::builder().build()?)
//!     .store(Arc::new(MemoryCache::new(100_000)))
//!     .cache_grace(Duration::from_secs(60))
//!     .build();
//! let resolution = engine.resolve(&PolicyDomain::parse("gmail.com")?, Duration::from_secs(4)).await;
//! match &resolution.policy {
//!     Some(p) => println!("{} policy, mx {:?} ({})", p.policy().mode(), p.policy().mx(), resolution.source),
//!     None => println!("no policy ({})", resolution.source),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Crate features
//!
//! None.

mod clock;
mod coalesce;
mod dane;
mod discover;
mod engine;
mod freshness;
mod front;
mod inspect;
mod proactive;
mod refresh;
mod resolution;
mod stats;
mod writes;

pub use async_trait::async_trait;
pub use clock::{Clock, ManualClock, SystemClock};
pub use discover::{
    DaneAnswer, DaneDiscovery, Discover, Discovery, DiscoveryError, DiscoveryRequest,
    NoPolicyReason,
};
pub use engine::{
    DEFAULT_CACHE_GRACE, DEFAULT_FAILURE_BACKOFF, DEFAULT_MAX_DANE_TTL, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_NEGATIVE_TTL, DEFAULT_MEMORY_BYTES, DEFAULT_MEMORY_CAPACITY,
    DEFAULT_REFRESH_TIMEOUT, DaneResolution, Engine, EngineBuilder,
};
pub use freshness::refetch_margin;
pub use inspect::MemoryEntry;
pub use proactive::RefreshReport;
pub use prometheus_client;
pub use resolution::{Resolution, ResolvedPolicy, Source};
pub use stats::{Count, EngineStats, Level};
