//! The PostgreSQL store (`cache.type: postgres`).

use std::sync::Arc;
use std::time::Duration;

use mtasts_cache::{CacheError, PolicyCache};
use mtasts_cache_sql::{PostgresCache, PostgresOptions};

/// Connects to PostgreSQL at `dsn` (the Python daemon's table layout, shared with it).
pub(crate) async fn open(
    dsn: &str,
    timeout: Duration,
    max_size: usize,
) -> Result<Arc<dyn PolicyCache>, CacheError> {
    let options = PostgresOptions::new(dsn)
        .timeout(timeout)
        .max_connections(u32::try_from(max_size).unwrap_or(u32::MAX));
    Ok(Arc::new(PostgresCache::connect(options).await?))
}
