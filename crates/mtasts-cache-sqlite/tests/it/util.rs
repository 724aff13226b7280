//! Shared helpers: temporary databases and raw connections that bypass the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mtasts_cache::PolicyCache;
use mtasts_cache_sqlite::{SqliteCache, SqliteOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tempfile::TempDir;

/// A temporary directory holding one database file, removed on drop.
pub(crate) struct TempDb {
    _dir: TempDir,
    pub(crate) path: PathBuf,
}

impl TempDb {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cache.db");
        Self { _dir: dir, path }
    }

    pub(crate) async fn open(&self, timeout: Duration) -> SqliteCache {
        SqliteCache::open(SqliteOptions::new(&self.path).threads(4).timeout(timeout))
            .await
            .expect("open store")
    }

    pub(crate) async fn store(&self) -> Arc<dyn PolicyCache> {
        Arc::new(self.open(Duration::from_secs(5)).await)
    }

    /// A raw connection, as another program (the Python daemon) would have.
    pub(crate) async fn raw(&self) -> SqliteConnection {
        raw(&self.path).await
    }
}

pub(crate) async fn raw(path: &Path) -> SqliteConnection {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    SqliteConnection::connect_with(&options)
        .await
        .expect("raw connection")
}
