//! The policy lifetime (RFC 8461 §3.2 `max_age`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::Error;

/// How long a sender may cache a policy, in seconds (RFC 8461 §3.2 `max_age`):
/// `0..=31_557_600` (about one year).
///
/// In a policy file it is written as 1 to 10 digits; [`Display`](fmt::Display) prints it without
/// leading zeros.
///
/// ```
/// use mtasts_core::MaxAge;
///
/// let max_age: MaxAge = "86400".parse()?;
/// assert_eq!(max_age.as_secs(), 86_400);
/// assert_eq!(max_age.as_duration(), std::time::Duration::from_secs(86_400));
/// assert!(MaxAge::new(31_557_601).is_err());
/// # Ok::<(), mtasts_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MaxAge(u32);

impl MaxAge {
    /// The largest value RFC 8461 §3.2 allows: 31 557 600 s.
    pub const MAX: Self = Self(31_557_600);

    /// A `max_age` of `secs` seconds; an error above [`MaxAge::MAX`].
    ///
    /// ```
    /// assert_eq!(mtasts_core::MaxAge::new(604_800)?.as_secs(), 604_800);
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    pub fn new(secs: u32) -> Result<Self, Error> {
        if secs <= Self::MAX.0 {
            Ok(Self(secs))
        } else {
            Err(Error::InvalidMaxAge {
                value: secs.to_string(),
                reason: "greater than 31557600",
            })
        }
    }

    /// The value in seconds.
    ///
    /// ```
    /// assert_eq!(mtasts_core::MaxAge::MAX.as_secs(), 31_557_600);
    /// ```
    #[must_use]
    pub fn as_secs(self) -> u32 {
        self.0
    }

    /// The value as a [`Duration`].
    ///
    /// ```
    /// let max_age = mtasts_core::MaxAge::new(60)?;
    /// assert_eq!(max_age.as_duration(), std::time::Duration::from_secs(60));
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn as_duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }
}

impl FromStr for MaxAge {
    type Err = Error;

    /// Parses `1*10DIGIT` (RFC 8461 §3.2): no sign, no spaces, at most ten digits.
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidMaxAge {
            value: s.to_owned(),
            reason,
        };
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("expected 1 to 10 digits"));
        }
        if s.len() > 10 {
            return Err(invalid("more than 10 digits"));
        }
        // Ten digits always fit in a u64.
        let value = s
            .bytes()
            .fold(0_u64, |acc, b| acc * 10 + u64::from(b - b'0'));
        if value > u64::from(Self::MAX.0) {
            return Err(invalid("greater than 31557600"));
        }
        u32::try_from(value)
            .map(Self)
            .map_err(|_| invalid("greater than 31557600"))
    }
}

impl TryFrom<u32> for MaxAge {
    type Error = Error;

    fn try_from(secs: u32) -> Result<Self, Error> {
        Self::new(secs)
    }
}

impl From<MaxAge> for Duration {
    fn from(max_age: MaxAge) -> Self {
        max_age.as_duration()
    }
}

impl fmt::Display for MaxAge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl serde::Serialize for MaxAge {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for MaxAge {
    /// Accepts a number (as the Python daemon stores it) or a string of digits.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MaxAgeVisitor)
    }
}

struct MaxAgeVisitor;

impl serde::de::Visitor<'_> for MaxAgeVisitor {
    type Value = MaxAge;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a max_age: an integer 0..=31557600 or a string of 1 to 10 digits")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MaxAge, E> {
        let secs = u32::try_from(v).map_err(|_| {
            E::custom(Error::InvalidMaxAge {
                value: v.to_string(),
                reason: "greater than 31557600",
            })
        })?;
        MaxAge::new(secs).map_err(E::custom)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MaxAge, E> {
        let v = u64::try_from(v).map_err(|_| {
            E::custom(Error::InvalidMaxAge {
                value: v.to_string(),
                reason: "negative",
            })
        })?;
        self.visit_u64(v)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MaxAge, E> {
        v.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_values() {
        for (text, secs) in [
            ("0", 0),
            ("1", 1),
            ("86400", 86_400),
            ("604800", 604_800),
            ("31557600", 31_557_600),
            ("0000000001", 1),
            ("0031557600", 31_557_600),
        ] {
            let max_age: MaxAge = text.parse().unwrap();
            assert_eq!(max_age.as_secs(), secs, "{text}");
            assert_eq!(max_age.to_string().parse::<MaxAge>(), Ok(max_age));
        }
    }

    #[test]
    fn invalid_values() {
        for (text, reason) in [
            ("", "expected 1 to 10 digits"),
            ("-1", "expected 1 to 10 digits"),
            ("+1", "expected 1 to 10 digits"),
            (" 1", "expected 1 to 10 digits"),
            ("1 ", "expected 1 to 10 digits"),
            ("1d", "expected 1 to 10 digits"),
            ("abc", "expected 1 to 10 digits"),
            ("1.5", "expected 1 to 10 digits"),
            ("٣", "expected 1 to 10 digits"),
            ("00000000001", "more than 10 digits"),
            ("31557601", "greater than 31557600"),
            ("9999999999", "greater than 31557600"),
        ] {
            assert_eq!(
                text.parse::<MaxAge>(),
                Err(Error::InvalidMaxAge {
                    value: text.to_owned(),
                    reason
                }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn new_checks_the_bound() {
        assert_eq!(MaxAge::new(31_557_600), Ok(MaxAge::MAX));
        assert_eq!(
            MaxAge::new(31_557_601).unwrap_err().kind(),
            "invalid_max_age"
        );
        assert_eq!(MaxAge::new(u32::MAX).unwrap_err().kind(), "invalid_max_age");
    }
}
