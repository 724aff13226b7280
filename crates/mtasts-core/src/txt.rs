//! The `_mta-sts` TXT record (RFC 8461 §3.1).

use std::fmt;
use std::str::FromStr;

use crate::leniency::Leniencies;
use crate::{Error, Leniency, PolicyId, syntax};

/// One parsed `_mta-sts` TXT record (RFC 8461 §3.1), e.g. `v=STSv1; id=20160831085700Z;`.
///
/// Parse the text of one record (its character-strings concatenated). To pick the record out of
/// all TXT records of the name, use [`select_record`]. Two unambiguous deviations from the ABNF
/// are accepted and reported by [`TxtRecord::leniencies`]: whitespace at the end and empty fields
/// between separators. Equality and hashing compare the id and the extensions only.
///
/// ```
/// use mtasts_core::TxtRecord;
///
/// let record: TxtRecord = "v=STSv1; id=20160831085700Z;".parse()?;
/// assert_eq!(record.id().as_str(), "20160831085700Z");
/// assert_eq!(record.to_string(), "v=STSv1; id=20160831085700Z");
/// # Ok::<(), mtasts_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TxtRecord {
    id: PolicyId,
    extensions: Vec<(String, String)>,
    leniencies: Leniencies,
}

impl PartialEq for TxtRecord {
    /// Same id and extensions; how the text was spelled ([`TxtRecord::leniencies`]) does not count.
    fn eq(&self, other: &Self) -> bool {
        (&self.id, &self.extensions) == (&other.id, &other.extensions)
    }
}

impl Eq for TxtRecord {}

impl std::hash::Hash for TxtRecord {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (&self.id, &self.extensions).hash(state);
    }
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

    /// The deviations from the RFC 8461 §3.1 ABNF this record was accepted through (sorted, each
    /// once); empty for a record that follows the ABNF.
    ///
    /// ```
    /// use mtasts_core::{Leniency, TxtRecord};
    ///
    /// let record: TxtRecord = "v=STSv1; id=20160831085700Z   ".parse()?;
    /// assert_eq!(record.leniencies(), &[Leniency::TxtTrailingWhitespace]);
    /// let strict: TxtRecord = "v=STSv1; id=20160831085700Z;".parse()?;
    /// assert!(strict.leniencies().is_empty());
    /// assert_eq!(record, strict);
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn leniencies(&self) -> &[Leniency] {
        self.leniencies.as_slice()
    }
}

impl FromStr for TxtRecord {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let mut id = None;
        let mut extensions = Vec::new();
        let mut leniencies = Leniencies::default();
        for (name, value) in syntax::txt_fields(text, &mut leniencies)? {
            if name == "v" {
                // The version field again (`…; v=STSv2`): ambiguous, never a leniency.
                return Err(Error::TxtRepeatedVersion);
            }
            if name == "id" {
                // RFC 8461 §3.2 (for "TXT records and policy files"): a duplicated
                // non-repeated field is ignored except for its first entry.
                if id.is_none() {
                    id = Some(value.parse::<PolicyId>()?);
                }
            } else {
                extensions.push((name.to_owned(), value.to_owned()));
            }
        }
        let id = id.ok_or(Error::TxtMissingId)?;
        Ok(Self {
            id,
            extensions,
            leniencies,
        })
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
/// [`Error::NoRecord`], [`Error::MultipleRecords`], or the record's parse error. The record is
/// parsed as [`TxtRecord`] parses, leniencies included (see [`TxtRecord::leniencies`]).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ext_of(record: &TxtRecord) -> Vec<(&str, &str)> {
        record
            .extensions()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn valid_records() {
        /// Record text, then the expected id and extensions.
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
        let cases: &[Case<'_>] = &[
            // RFC 8461 §3.1 example.
            ("v=STSv1; id=20160831085700Z;", "20160831085700Z", &[]),
            ("v=STSv1; id=20160831085700Z", "20160831085700Z", &[]),
            ("v=STSv1;id=a", "a", &[]),
            ("v=STSv1 ; id=a", "a", &[]),
            ("v=STSv1\t;\tid=a\t;\t", "a", &[]),
            ("v=STSv1;   id=a   ;   ", "a", &[]),
            ("v=STSv1; id=a;", "a", &[]),
            (
                "v=STSv1; id=abcdefghijklmnopqrstuvwxyz012345",
                "abcdefghijklmnopqrstuvwxyz012345",
                &[],
            ),
            ("v=STSv1; ext=1; id=a", "a", &[("ext", "1")]),
            (
                "v=STSv1; id=a; x-y.z_9=!\"#$%&'()*+,-./:<>?@[]^`{|}~",
                "a",
                &[("x-y.z_9", "!\"#$%&'()*+,-./:<>?@[]^`{|}~")],
            ),
            ("v=STSv1; ID=x; id=a", "a", &[("ID", "x")]),
            // A duplicated id: the first wins (RFC 8461 §3.2 paragraph on duplicates).
            ("v=STSv1; id=first; id=second", "first", &[]),
        ];
        for (text, id, extensions) in cases {
            let record: TxtRecord = text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(record.id().as_str(), *id, "{text:?}");
            assert_eq!(ext_of(&record), *extensions, "{text:?}");
            assert_eq!(record.to_string().parse::<TxtRecord>(), Ok(record));
        }
    }

    #[test]
    fn invalid_records() {
        let cases: &[(&str, &str, Option<usize>)] = &[
            ("", "txt_syntax", Some(0)),
            ("id=a", "txt_syntax", Some(0)),
            (" v=STSv1; id=a", "txt_syntax", Some(0)),
            ("V=STSv1; id=a", "txt_syntax", Some(0)),
            ("v=STSv1", "txt_syntax", Some(7)),
            ("v=STSv1;", "txt_syntax", Some(8)),
            ("v=STSv1; ", "txt_syntax", Some(9)),
            ("v=STSv1 id=a", "txt_syntax", Some(7)),
            ("v=STSv12; id=a", "txt_syntax", Some(7)),
            ("v=STSv1;;", "txt_syntax", Some(9)),
            ("v=STSv1; ; ", "txt_syntax", Some(11)),
            ("v=STSv1 ", "txt_syntax", Some(7)),
            ("v=STSv1; id=a b", "txt_syntax", Some(13)),
            ("v=STSv1; id=a;; b", "txt_syntax", Some(17)),
            ("v=STSv1; id=a\n", "txt_syntax", Some(13)),
            ("v=STSv1; id=a\u{a0}", "txt_syntax", Some(13)),
            ("v=STSv1; id = a", "txt_syntax", Some(11)),
            ("v=STSv1; id=", "txt_syntax", Some(12)),
            ("v=STSv1; id=a=b", "txt_syntax", Some(13)),
            ("v=STSv1; id=a; =b", "txt_syntax", Some(15)),
            ("v=STSv1; id=a; _x=b", "txt_syntax", Some(15)),
            ("v=STSv1; id=a; x=é", "txt_syntax", Some(17)),
            ("v=STSv1; id=a\r\n", "txt_syntax", Some(13)),
            (
                "v=STSv1; id=a; aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1",
                "txt_syntax",
                Some(15),
            ),
            ("v=STSv1; ext=1", "txt_missing_id", None),
            ("v=STSv1; id=a; v=STSv2", "txt_repeated_version", None),
            ("v=STSv1; v=STSv1; id=a", "txt_repeated_version", None),
            ("v=STSv1; id=a-b", "invalid_policy_id", None),
            ("v=STSv1; id=2016.08.31", "invalid_policy_id", None),
            (
                "v=STSv1; id=abcdefghijklmnopqrstuvwxyz0123456",
                "invalid_policy_id",
                None,
            ),
        ];
        for (text, kind, offset) in cases {
            let err = text.parse::<TxtRecord>().expect_err(text);
            assert_eq!(err.kind(), *kind, "{text:?}: {err}");
            if let Some(offset) = offset {
                assert!(
                    matches!(err, Error::TxtSyntax { offset: o, .. } if o == *offset),
                    "{text:?}: {err:?}"
                );
            }
        }
    }

    /// The unambiguous deviations the Python daemon enforces (issue 14): accepted, each noted.
    #[test]
    fn lenient_records() {
        use Leniency::{TxtEmptyField as Empty, TxtTrailingWhitespace as Trailing};
        let cases: &[(&str, &str, &[Leniency])] = &[
            // The two records of the migration report.
            (
                "v=STSv1; id=20160831085700Z   ",
                "20160831085700Z",
                &[Trailing],
            ),
            (
                "v=STSv1; id=20160831085700Z;;;",
                "20160831085700Z",
                &[Empty],
            ),
            ("v=STSv1; id=a ", "a", &[Trailing]),
            ("v=STSv1; id=a\t", "a", &[Trailing]),
            ("v=STSv1;; id=a", "a", &[Empty]),
            ("v=STSv1; ; id=a", "a", &[Empty]),
            ("v=STSv1; id=a;;", "a", &[Empty]),
            ("v=STSv1; id=a; ;ext=1 ", "a", &[Trailing, Empty]),
            // Strict records note nothing.
            ("v=STSv1; id=a;", "a", &[]),
            ("v=STSv1; id=a ; ", "a", &[]),
        ];
        for (text, id, leniencies) in cases {
            let record: TxtRecord = text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(record.id().as_str(), *id, "{text:?}");
            assert_eq!(record.leniencies(), *leniencies, "{text:?}");
            let canonical: TxtRecord = record.to_string().parse().expect("canonical form");
            assert!(canonical.leniencies().is_empty(), "{record}");
            assert_eq!(canonical, record);
            let selected = select_record(["v=spf1 -all", text]).expect("selected");
            assert_eq!(selected.leniencies(), *leniencies, "{text:?}");
        }
    }

    #[test]
    fn selection() {
        let ok = |records: &[&str], id: &str| {
            let record = select_record(records.iter().copied())
                .unwrap_or_else(|e| panic!("{records:?}: {e}"));
            assert_eq!(record.id().as_str(), id, "{records:?}");
        };
        let err = |records: &[&str], expected: Error| {
            assert_eq!(
                select_record(records.iter().copied()),
                Err(expected),
                "{records:?}"
            );
        };
        ok(&["v=STSv1; id=a"], "a");
        // §3.1: a record of several strings is read as their concatenation (done by the caller).
        ok(
            &[["v=STSv1; ", "id=20160831", "085700Z;"].concat().as_str()],
            "20160831085700Z",
        );
        ok(
            &["v=spf1 -all", "v=STSv1; id=a", "google-site-verification=x"],
            "a",
        );
        // `v=STSv12` does not begin with "v=STSv1" + delimiter: discarded, not counted.
        ok(&["v=STSv12; id=b", "v=STSv1; id=a"], "a");
        ok(&["v=STSv1.1; id=b", "v=STSv1; id=a"], "a");
        // Erratum 6285: whitespace before ";" is allowed by the ABNF, so it counts.
        ok(&["v=STSv1 ; id=a"], "a");
        ok(&["v=STSv1\t;id=a"], "a");
        // Records that begin differently are discarded, even when they would be near misses.
        ok(&[" v=STSv1; id=b", "v=STSv1; id=a"], "a");
        ok(&["v=STSv1 id=b", "v=STSv1; id=a"], "a");
        ok(&["v=STSv1", "v=STSv1; id=a"], "a");
        ok(&["V=STSv1; id=b", "v=STSv1; id=a"], "a");

        err(&[], Error::NoRecord);
        err(&["v=spf1 -all"], Error::NoRecord);
        err(&["v=STSv12; id=a"], Error::NoRecord);
        err(&["v=STSv1"], Error::NoRecord);
        err(
            &["v=STSv1; id=a", "v=STSv1; id=b"],
            Error::MultipleRecords { count: 2 },
        );
        // Two identical records are still two records.
        err(
            &["v=STSv1; id=a", "v=STSv1; id=a"],
            Error::MultipleRecords { count: 2 },
        );
        // An invalid record still counts, so it spoils a valid one.
        err(
            &["v=STSv1; id=a", "v=STSv1; garbage"],
            Error::MultipleRecords { count: 2 },
        );
        err(
            &["v=STSv1; id=a", "v=STSv1 ;id=b", "v=STSv1;id=c"],
            Error::MultipleRecords { count: 3 },
        );
        // The one remaining record is invalid: no policy, with the reason.
        assert_eq!(
            select_record(["v=STSv1; id=not-valid"]).unwrap_err().kind(),
            "invalid_policy_id"
        );
        assert_eq!(
            select_record(["v=STSv1;"]).unwrap_err().kind(),
            "txt_syntax"
        );
        assert_eq!(
            select_record(["v=STSv1; ext=1"]).unwrap_err(),
            Error::TxtMissingId
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        let err = "v=STSv1; id=abc def".parse::<TxtRecord>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "TXT record, byte 15: expected \";\" (spaces or tabs around it allowed) between fields (RFC 8461 §3.1)"
        );
        let err = "v=STSv1; id=abc-def".parse::<TxtRecord>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid policy id \"abc-def\": expected 1 to 32 ASCII letters or digits (RFC 8461 §3.1)"
        );
        let err = select_record(["v=STSv1; id=a", "v=STSv1; id=b"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 TXT records start with \"v=STSv1;\"; RFC 8461 §3.1 requires exactly one"
        );
        assert_eq!(err.kind(), "multiple_records");
    }
}
