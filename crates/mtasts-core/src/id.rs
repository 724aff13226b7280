//! The policy id of a TXT record (RFC 8461 §3.1).

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A policy id: 1 to 32 ASCII letters or digits (RFC 8461 §3.1, `sts-id`).
///
/// The id is compared byte for byte (it is opaque; a change means "fetch the policy again").
///
/// ```
/// use mtasts_core::PolicyId;
///
/// let id: PolicyId = "20160831085700Z".parse()?;
/// assert_eq!(id.as_str(), "20160831085700Z");
/// assert!("2016-08-31".parse::<PolicyId>().is_err());
/// # Ok::<(), mtasts_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId(String);

impl PolicyId {
    /// The longest id RFC 8461 §3.1 allows.
    pub const MAX_LEN: usize = 32;

    /// The id as text.
    ///
    /// ```
    /// let id: mtasts_core::PolicyId = "abc123".parse()?;
    /// assert_eq!(id.as_str(), "abc123");
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn is_valid(s: &str) -> bool {
        (1..=Self::MAX_LEN).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
    }
}

impl FromStr for PolicyId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if Self::is_valid(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::InvalidPolicyId {
                value: s.to_owned(),
            })
        }
    }
}

impl TryFrom<String> for PolicyId {
    type Error = Error;

    fn try_from(s: String) -> Result<Self, Error> {
        if Self::is_valid(&s) {
            Ok(Self(s))
        } else {
            Err(Error::InvalidPolicyId { value: s })
        }
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for PolicyId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for PolicyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for PolicyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::try_from(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids() {
        for ok in ["a", "Z", "0", "20160831085700Z", &"x".repeat(32), "AbC123"] {
            let id: PolicyId = ok.parse().unwrap();
            assert_eq!(id.as_str(), ok);
            assert_eq!(id.to_string(), ok);
        }
    }

    #[test]
    fn invalid_ids() {
        for bad in [
            "",
            &"x".repeat(33),
            "a-b",
            "a b",
            "a_b",
            "a.b",
            "é",
            " a",
            "a;",
        ] {
            let err = bad.parse::<PolicyId>().unwrap_err();
            assert_eq!(
                err,
                Error::InvalidPolicyId {
                    value: bad.to_owned()
                }
            );
            assert_eq!(err.kind(), "invalid_policy_id");
        }
    }
}
