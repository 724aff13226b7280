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

impl ScanPage {
    /// A page of a store that pages by key ("keyset paging": `WHERE domain > <token> ORDER BY domain LIMIT n`),
    /// for store implementations. `rows` are the rows read, in key order, each with its decoded entry or why it
    /// could not be decoded; `rows_read` counts every row the store read, also those it could not even name. A
    /// full page (`rows_read >= page_size`) resumes after its last domain; a shorter one ends the scan.
    ///
    /// ```
    /// use mtasts_cache::{CacheError, ScanPage};
    /// let rows = vec![
    ///     ("a.example".to_owned(), Err(CacheError::corrupt("a.example", "bad JSON"))),
    ///     ("b.example".to_owned(), Err(CacheError::corrupt("b.example", "bad id"))),
    /// ];
    /// let page = ScanPage::from_keyset(rows, 2, 2);
    /// assert_eq!(page.corrupt.len(), 2);
    /// assert_eq!(page.next.unwrap().as_str(), "b.example");
    /// assert!(ScanPage::from_keyset(Vec::new(), 0, 2).next.is_none());
    /// ```
    pub fn from_keyset<I>(rows: I, rows_read: usize, page_size: usize) -> Self
    where
        I: IntoIterator<Item = (String, Result<CacheEntry, CacheError>)>,
    {
        let mut page = Self::default();
        let mut last = None;
        for (domain, decoded) in rows {
            match decoded {
                Ok(entry) => page.entries.push((domain.clone(), entry)),
                Err(error) => page.corrupt.push(CorruptEntry {
                    domain: domain.clone(),
                    error,
                }),
            }
            last = Some(domain);
        }
        if rows_read >= page_size.max(1) {
            page.next = last.map(ScanToken::new);
        }
        page
    }
}

/// An entry a scan could not decode.
#[derive(Debug, Clone)]
pub struct CorruptEntry {
    /// Its domain (key).
    pub domain: String,
    /// Why it could not be decoded (usually [`CacheError::Corrupt`]).
    pub error: CacheError,
}
