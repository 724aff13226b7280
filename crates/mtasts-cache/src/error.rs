//! The error type shared by every store.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

/// A boxed, shareable underlying error (driver error, I/O error, decode error).
///
/// Kept in an [`Arc`] so that [`CacheError`] is [`Clone`]: one failed store call may be reported to several
/// waiting lookups.
pub type BoxError = Arc<dyn StdError + Send + Sync + 'static>;

/// Why a cache operation failed.
///
/// Every store maps its driver's errors onto these variants, so callers (the engine, the daemon's purge command)
/// can react without knowing which store is configured. [`CacheError::kind`] gives a stable short label for logs
/// and metrics.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The store's server could not be reached (connection refused, reset, DNS failure, pool exhausted…).
    #[error("{store} cache unavailable")]
    Unavailable {
        /// Which store (`"sqlite"`, `"postgres"`, `"redis"`, `"memory"`).
        store: &'static str,
        /// What the driver said.
        #[source]
        source: BoxError,
    },
    /// The operation did not complete within the configured timeout.
    #[error("{store} cache operation timed out after {after:?}")]
    Timeout {
        /// Which store.
        store: &'static str,
        /// The configured limit that was exceeded.
        after: Duration,
    },
    /// A stored entry could not be decoded (bad JSON, invalid policy or id, bad timestamp).
    ///
    /// `scan` reports such rows in [`ScanPage::corrupt`](crate::ScanPage::corrupt) and goes on; `get` returns
    /// this error for the row asked for.
    #[error("corrupt cache entry for {domain:?}: {reason}")]
    Corrupt {
        /// The domain (key) of the bad entry.
        domain: String,
        /// What is wrong with it, for the log.
        reason: String,
    },
    /// The server answered with an error (SQL error, Redis error reply, permission denied…).
    #[error("{store} cache query failed")]
    Query {
        /// Which store.
        store: &'static str,
        /// What the driver said.
        #[source]
        source: BoxError,
    },
    /// A [`ScanToken`](crate::ScanToken) that this store did not issue.
    #[error("invalid scan token {token:?}")]
    InvalidToken {
        /// The token as given.
        token: String,
    },
    /// The store's options are unusable (malformed URL/DSN, zero pool size, unusable file name…).
    #[error("invalid {store} cache configuration: {reason}")]
    Config {
        /// Which store.
        store: &'static str,
        /// What is wrong.
        reason: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The store was closed with [`PolicyCache::close`](crate::PolicyCache::close).
    #[error("{store} cache is closed")]
    Closed {
        /// Which store.
        store: &'static str,
    },
}

impl CacheError {
    /// A stable short label for logs and metrics: `"unavailable"`, `"timeout"`, `"corrupt"`, `"query"`,
    /// `"invalid_token"`, `"config"`, `"closed"`.
    ///
    /// ```
    /// use mtasts_cache::CacheError;
    /// let err = CacheError::Corrupt { domain: "example.com".into(), reason: "bad JSON".into() };
    /// assert_eq!(err.kind(), "corrupt");
    /// ```
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "unavailable",
            Self::Timeout { .. } => "timeout",
            Self::Corrupt { .. } => "corrupt",
            Self::Query { .. } => "query",
            Self::InvalidToken { .. } => "invalid_token",
            Self::Config { .. } => "config",
            Self::Closed { .. } => "closed",
        }
    }

    /// Whether retrying later may help (server unreachable, timeout): the store is expected to recover by itself.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Timeout { .. })
    }

    /// Builds [`CacheError::Unavailable`] from any driver error.
    pub fn unavailable<E>(store: &'static str, source: E) -> Self
    where
        E: StdError + Send + Sync + 'static,
    {
        Self::Unavailable {
            store,
            source: Arc::new(source),
        }
    }

    /// Builds [`CacheError::Query`] from any driver error.
    pub fn query<E>(store: &'static str, source: E) -> Self
    where
        E: StdError + Send + Sync + 'static,
    {
        Self::Query {
            store,
            source: Arc::new(source),
        }
    }

    /// This error and each of its causes, `: `-separated: what a log line or a test needs to say why (the
    /// `Display` of a driver error alone says "unavailable", its source says "certificate not trusted").
    ///
    /// ```
    /// use mtasts_cache::CacheError;
    /// let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
    /// let err = CacheError::unavailable("redis", refused);
    /// assert_eq!(err.with_causes(), "redis cache unavailable: connection refused");
    /// ```
    #[must_use]
    pub fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut source = StdError::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    /// Builds [`CacheError::Corrupt`].
    pub fn corrupt(domain: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            domain: domain.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_stable_labels() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(CacheError::unavailable("redis", io).kind(), "unavailable");
        let t = CacheError::Timeout {
            store: "redis",
            after: Duration::from_secs(1),
        };
        assert_eq!(t.kind(), "timeout");
        assert!(t.is_transient());
        assert!(!CacheError::corrupt("a", "b").is_transient());
        assert_eq!(
            CacheError::InvalidToken { token: "x".into() }.kind(),
            "invalid_token"
        );
        assert_eq!(CacheError::Closed { store: "memory" }.kind(), "closed");
    }

    #[test]
    fn unavailable_keeps_source() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = CacheError::unavailable("postgres", io);
        assert!(StdError::source(&err).is_some());
        assert_eq!(err.to_string(), "postgres cache unavailable");
    }
}
