//! Paging over all entries.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use crate::{CacheEntry, CacheError};

/// Where a [`PolicyCache::scan`](crate::PolicyCache::scan) continues. Opaque; its text form can be stored and
/// parsed back to resume a scan later.
///
/// ```
/// use mtasts_cache::ScanToken;
/// let token = ScanToken::new("example.com");
/// let resumed: ScanToken = token.to_string().parse().unwrap();
/// assert_eq!(token, resumed);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScanToken(String);

impl ScanToken {
    /// A token with the given store-specific content (for store implementations).
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The store-specific content.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScanToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ScanToken {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// One page of a scan.
#[derive(Debug, Clone, Default)]
pub struct ScanPage {
    /// Decoded entries, keyed by domain.
    pub entries: Vec<(String, CacheEntry)>,
    /// Entries that could not be decoded (reported, skipped).
    pub corrupt: Vec<CorruptEntry>,
    /// Where to continue; `None` when the scan is complete.
    pub next: Option<ScanToken>,
}

/// An entry a scan could not decode.
#[derive(Debug, Clone)]
pub struct CorruptEntry {
    /// Its domain (key).
    pub domain: String,
    /// Why it could not be decoded (usually [`CacheError::Corrupt`]).
    pub error: CacheError,
}
