//! Connection pools: deadpool-redis for a single server, a small deadpool manager for Sentinel.
//!
//! deadpool-redis's own Sentinel manager opens connections with the redis crate's fixed default timeouts and
//! keeps a pooled connection as long as it answers `PING`, also after a failover turned its server into a
//! replica. [`SentinelManager`] uses the configured timeouts and recycles a connection only while its server
//! still says `ROLE` = master.

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::sentinel::SentinelClient;
use deadpool_redis::redis::{self, AsyncConnectionConfig, RedisError, Role};
use tokio::sync::Mutex;

/// Opens connections to whichever server the sentinels name as master.
pub(crate) struct SentinelManager {
    /// The sentinel client caches its sentinel connections and needs `&mut`.
    client: Mutex<SentinelClient>,
    config: AsyncConnectionConfig,
}

impl SentinelManager {
    pub(crate) fn new(client: SentinelClient, config: AsyncConnectionConfig) -> Self {
        Self {
            client: Mutex::new(client),
            config,
        }
    }
}

impl managed::Manager for SentinelManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut client = self.client.lock().await;
        client.get_async_connection_with_config(&self.config).await
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        _: &Metrics,
    ) -> RecycleResult<RedisError> {
        match redis::cmd("ROLE").query_async::<Role>(conn).await? {
            Role::Primary { .. } => Ok(()),
            _ => Err(RecycleError::message("server is no longer the master")),
        }
    }
}

/// The pool behind a store.
pub(crate) enum Pool {
    Direct(deadpool_redis::Pool),
    Sentinel(managed::Pool<SentinelManager>),
}

/// A pooled connection; returns to its pool when dropped.
pub(crate) enum Conn {
    Direct(deadpool_redis::Connection),
    Sentinel(managed::Object<SentinelManager>),
}

impl Pool {
    pub(crate) async fn get(&self) -> Result<Conn, deadpool_redis::PoolError> {
        match self {
            Self::Direct(p) => p.get().await.map(Conn::Direct),
            Self::Sentinel(p) => p.get().await.map(Conn::Sentinel),
        }
    }

    /// Drops every idle connection (after a failover: they may all point at the old master).
    pub(crate) fn drop_idle(&self) {
        match self {
            Self::Direct(p) => drop(p.retain(|_, _| false)),
            Self::Sentinel(p) => drop(p.retain(|_, _| false)),
        }
    }

    pub(crate) fn close(&self) {
        match self {
            Self::Direct(p) => p.close(),
            Self::Sentinel(p) => p.close(),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Self::Direct(p) => p.is_closed(),
            Self::Sentinel(p) => p.is_closed(),
        }
    }

    pub(crate) fn status(&self) -> deadpool_redis::Status {
        match self {
            Self::Direct(p) => p.status(),
            Self::Sentinel(p) => p.status(),
        }
    }
}

impl Conn {
    pub(crate) fn connection(&mut self) -> &mut MultiplexedConnection {
        match self {
            Self::Direct(c) => c,
            Self::Sentinel(c) => c,
        }
    }

    /// Removes a connection that failed from its pool instead of returning it.
    pub(crate) fn discard(self) {
        match self {
            Self::Direct(c) => drop(deadpool_redis::Connection::take(c)),
            Self::Sentinel(c) => drop(managed::Object::take(c)),
        }
    }
}
