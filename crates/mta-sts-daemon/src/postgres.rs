//! The PostgreSQL store (`cache.type: postgres`).

use std::sync::Arc;
use std::time::Duration;

use mtasts_cache::{CacheError, PolicyCache};

/// Connects to PostgreSQL at `dsn`.
pub(crate) async fn open(
    dsn: &str,
    timeout: Duration,
    max_size: usize,
) -> Result<Arc<dyn PolicyCache>, CacheError> {
    let _ = (dsn, timeout, max_size);
    Err(CacheError::Config {
        store: "postgres",
        reason: "the PostgreSQL store is not available in this build yet".to_owned(),
        source: None,
    })
}
