//! The deviations from RFC 8461's ABNF that the parsers accept, named so callers can report them.

use std::fmt;

/// One deviation from the RFC 8461 ABNF that the parsers accept because it is unambiguous and
/// deployed (the Python `postfix-mta-sts-resolver` accepts it too, so rejecting it would switch
/// enforcement off after a migration). Everything else that breaks the ABNF is rejected.
///
/// [`TxtRecord::leniencies`](crate::TxtRecord::leniencies) and
/// [`Policy::leniencies`](crate::Policy::leniencies) tell which ones a value needed, so a tool
/// can warn the domain's administrator. They never change what the value means.
///
/// `Display` gives a sentence for people, [`Leniency::as_str`] (also the serde form) a stable
/// label for logs and JSON.
///
/// ```
/// use mtasts_core::{Leniency, TxtRecord};
///
/// let record: TxtRecord = "v=STSv1; id=20160831085700Z;;;".parse()?;
/// assert_eq!(record.leniencies(), &[Leniency::TxtEmptyField]);
/// assert_eq!(Leniency::TxtEmptyField.as_str(), "txt_empty_field");
/// # Ok::<(), mtasts_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Leniency {
    /// Spaces or tabs at the end of a TXT record, after its last field and without a `;`
    /// (`v=STSv1; id=abc   `). The ABNF of RFC 8461 §3.1 allows whitespace only around `;`.
    TxtTrailingWhitespace,
    /// An empty field between two `;` of a TXT record (`v=STSv1;; id=abc;;;`). The ABNF of
    /// RFC 8461 §3.1 has one optional `;` at the end and none between separators.
    TxtEmptyField,
    /// An empty line (or one of only spaces and tabs) in a policy file. The ABNF of RFC 8461
    /// §3.2 has no room for one; it carries no field.
    PolicyEmptyLine,
    /// An `mx` pattern of a policy file written with a trailing dot (`mx: mail.example.com.`).
    /// RFC 8461 §3.2 patterns have none; the dot is dropped.
    MxTrailingDot,
}

impl Leniency {
    /// A stable short label: `txt_trailing_whitespace`, `txt_empty_field`, `policy_empty_line`
    /// or `mx_trailing_dot`.
    ///
    /// ```
    /// assert_eq!(mtasts_core::Leniency::MxTrailingDot.as_str(), "mx_trailing_dot");
    /// ```
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TxtTrailingWhitespace => "txt_trailing_whitespace",
            Self::TxtEmptyField => "txt_empty_field",
            Self::PolicyEmptyLine => "policy_empty_line",
            Self::MxTrailingDot => "mx_trailing_dot",
        }
    }
}

impl fmt::Display for Leniency {
    /// What was accepted, and which rule it breaks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TxtTrailingWhitespace => {
                "the TXT record ends in whitespace without a final \";\" (RFC 8461 §3.1)"
            }
            Self::TxtEmptyField => {
                "the TXT record has an empty field between \";\" separators (RFC 8461 §3.1)"
            }
            Self::PolicyEmptyLine => "the policy file has an empty line (RFC 8461 §3.2)",
            Self::MxTrailingDot => "an mx pattern of the policy file ends in a dot (RFC 8461 §3.2)",
        })
    }
}

impl serde::Serialize for Leniency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The leniencies a parse needed: sorted, each once.
#[derive(Debug, Clone, Default)]
pub(crate) struct Leniencies(Vec<Leniency>);

impl Leniencies {
    pub(crate) fn add(&mut self, leniency: Leniency) {
        if let Err(at) = self.0.binary_search(&leniency) {
            self.0.insert(at, leniency);
        }
    }

    pub(crate) fn as_slice(&self) -> &[Leniency] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_serde_agree_and_are_distinct() {
        let all = [
            Leniency::TxtTrailingWhitespace,
            Leniency::TxtEmptyField,
            Leniency::PolicyEmptyLine,
            Leniency::MxTrailingDot,
        ];
        for leniency in all {
            assert_eq!(
                serde_json::to_value(leniency).ok(),
                Some(serde_json::Value::from(leniency.as_str()))
            );
            assert!(leniency.to_string().contains("RFC 8461"), "{leniency}");
        }
        let mut labels: Vec<_> = all.iter().map(|l| l.as_str()).collect();
        labels.dedup();
        assert_eq!(labels.len(), all.len());
    }

    #[test]
    fn leniencies_are_sorted_and_unique() {
        let mut set = Leniencies::default();
        set.add(Leniency::TxtEmptyField);
        set.add(Leniency::TxtTrailingWhitespace);
        set.add(Leniency::TxtEmptyField);
        assert_eq!(
            set.as_slice(),
            &[Leniency::TxtTrailingWhitespace, Leniency::TxtEmptyField]
        );
    }
}
