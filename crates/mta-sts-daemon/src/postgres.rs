//! The PostgreSQL store (`cache.type: postgres`): asyncpg's keyword options onto the store's options.

use std::sync::Arc;

use mtasts_cache::{CacheError, PolicyCache};
use mtasts_cache_sql::{PostgresCache, PostgresOptions, SslMode};

use crate::config::PostgresConfig;

/// Connects to PostgreSQL as `config` says (the Python daemon's table layout, shared with it).
pub(crate) async fn open(config: &PostgresConfig) -> Result<Arc<dyn PolicyCache>, CacheError> {
    Ok(Arc::new(PostgresCache::connect(options(config)?).await?))
}

/// Checks `config` without connecting: the errors that no retry can fix.
pub(crate) fn check(config: &PostgresConfig) -> Result<(), CacheError> {
    options(config)?.check()
}

fn options(config: &PostgresConfig) -> Result<PostgresOptions, CacheError> {
    let mut options = PostgresOptions::default();
    options.dsn.clone_from(&config.dsn);
    options.hosts.clone_from(&config.host);
    options.port = config.port;
    options.user.clone_from(&config.user);
    options.password.clone_from(&config.password);
    options.passfile.clone_from(&config.passfile);
    options.database.clone_from(&config.database);
    options.ssl = config
        .ssl
        .as_deref()
        .map(str::parse::<SslMode>)
        .transpose()?;
    options.server_settings.clone_from(&config.server_settings);
    options.command_timeout = config.command_timeout;
    options.min_connections = u32::try_from(config.min_size).unwrap_or(u32::MAX);
    options.max_connections = u32::try_from(config.max_size).unwrap_or(u32::MAX);
    options.timeout = config.timeout;
    Ok(options)
}
