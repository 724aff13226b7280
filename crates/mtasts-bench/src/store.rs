//! The benchmark's domains and policies, and a SQLite store pre-filled with them in the Python daemon's
//! layout (written through `mtasts-cache-sql`, as the daemon itself writes it).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use mtasts_cache::{CacheEntry, PolicyCache};
use mtasts_cache_sql::{SqliteCache, SqliteOptions};
use mtasts_core::Policy;

/// The zone (socketmap name) every request uses, as in `socketmap:inet:127.0.0.1:8461:postfix`.
pub(crate) const ZONE: &str = "postfix";

/// The `n`-th domain of the pre-filled store.
pub(crate) fn cached_domain(n: usize) -> String {
    format!("d{n:05}.bench.test")
}

/// The benchmark policy: enforce, with two `mx` lines (one exact, one wildcard).
pub(crate) fn policy_text(domain: &str) -> String {
    format!(
        "version: STSv1\nmode: enforce\nmx: mail.{domain}\nmx: *.mx.example.net\nmax_age: 604800\n"
    )
}

/// Creates `file` with `count` domains, each confirmed now (so a `cache_grace` longer than the bench makes
/// every answer come from memory once read).
pub(crate) async fn prefill(file: &Path, count: usize) -> Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let cache = SqliteCache::open(SqliteOptions::new(file).threads(1))
        .await
        .with_context(|| format!("open {}", file.display()))?;
    let id: mtasts_core::PolicyId = "bench1".parse().context("policy id")?;
    for n in 0..count {
        let domain = cached_domain(n);
        let policy: Policy = policy_text(&domain).parse().context("bench policy")?;
        cache
            .set(&domain, &CacheEntry::new(now, id.clone(), policy))
            .await
            .with_context(|| format!("store {domain}"))?;
    }
    cache.close().await;
    Ok(())
}

/// Copies the SQLite database `from` (closed, so its WAL is checkpointed) to `to`.
pub(crate) fn copy_db(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).with_context(|| format!("copy {}", from.display()))?;
    Ok(())
}
