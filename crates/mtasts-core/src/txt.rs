//! The `_mta-sts` TXT record (RFC 8461 §3.1).

use std::fmt;
use std::str::FromStr;

use crate::{Error, PolicyId, syntax};

/// One parsed `_mta-sts` TXT record (RFC 8461 §3.1), e.g. `v=STSv1; id=20160831085700Z;`.
///
/// Parse the text of one record (its character-strings concatenated). To pick the record out of
/// all TXT records of the name, use [`select_record`].
///
/// ```
/// use mtasts_core::TxtRecord;
///
/// let record: TxtRecord = "v=STSv1; id=20160831085700Z;".parse()?;
/// assert_eq!(record.id().as_str(), "20160831085700Z");
/// assert_eq!(record.to_string(), "v=STSv1; id=20160831085700Z");
/// # Ok::<(), mtasts_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxtRecord {
    id: PolicyId,
    extensions: Vec<(String, String)>,
}

impl TxtRecord {
    /// The policy id.
    ///
    /// ```
    /// let record: mtasts_core::TxtRecord = "v=STSv1;id=abc".parse()?;
    /// assert_eq!(record.id().as_str(), "abc");
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn id(&self) -> &PolicyId {
        &self.id
    }

    /// Extension fields (`name=value` other than `id`), in record order.
    ///
    /// ```
    /// let record: mtasts_core::TxtRecord = "v=STSv1; id=abc; ext=1".parse()?;
    /// assert_eq!(record.extensions(), &[("ext".to_owned(), "1".to_owned())]);
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn extensions(&self) -> &[(String, String)] {
        &self.extensions
    }
}

impl FromStr for TxtRecord {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let mut id = None;
        let mut extensions = Vec::new();
        for (name, value) in syntax::txt_fields(text)? {
            if name == "id" {
                if id.is_some() {
                    return Err(Error::TxtDuplicateId);
                }
                id = Some(value.parse::<PolicyId>()?);
            } else {
                extensions.push((name.to_owned(), value.to_owned()));
            }
        }
        let id = id.ok_or(Error::TxtMissingId)?;
        Ok(Self { id, extensions })
    }
}

impl fmt::Display for TxtRecord {
    /// The canonical record: `v=STSv1; id=<id>` then `; name=value` per extension.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v=STSv1; id={}", self.id)?;
        for (name, value) in &self.extensions {
            write!(f, "; {name}={value}")?;
        }
        Ok(())
    }
}

/// Picks the MTA-STS record out of all TXT records of `_mta-sts.<domain>` (RFC 8461 §3.1).
///
/// Records that do not begin with the version field `v=STSv1` followed by its delimiter (optional
/// spaces or tabs, then `;` — RFC 8461 §3.1 prose says "v=STSv1;", the ABNF `sts-sep` allows
/// whitespace before the `;`, see erratum 6285) are discarded, so `v=STSv12; …` does not count.
/// Exactly one record must remain and it must be valid; otherwise there is no policy:
/// [`Error::NoRecord`], [`Error::MultipleRecords`], or the record's parse error.
///
/// ```
/// use mtasts_core::select_record;
///
/// let records = ["v=spf1 -all", "v=STSv12; id=zzz", "v=STSv1; id=20190429T010101"];
/// assert_eq!(select_record(records)?.id().as_str(), "20190429T010101");
/// assert_eq!(select_record(["v=spf1 -all"]).unwrap_err().kind(), "no_record");
/// # Ok::<(), mtasts_core::Error>(())
/// ```
pub fn select_record<'a, I>(records: I) -> Result<TxtRecord, Error>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut count = 0;
    let mut selected = None;
    for record in records {
        if syntax::starts_with_version(record) {
            count += 1;
            selected.get_or_insert(record);
        }
    }
    match (count, selected) {
        (1, Some(record)) => record.parse(),
        (0, _) | (_, None) => Err(Error::NoRecord),
        _ => Err(Error::MultipleRecords { count }),
    }
}
