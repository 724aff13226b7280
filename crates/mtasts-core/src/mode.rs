//! The policy mode (RFC 8461 §3.2, §5).

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// How a sending MTA applies a policy (RFC 8461 §3.2 `mode`, §5 "Policy Application").
///
/// Displays and parses as the lowercase RFC keyword; serde uses the same strings.
///
/// ```
/// use mtasts_core::Mode;
///
/// let mode: Mode = "enforce".parse()?;
/// assert_eq!(mode, Mode::Enforce);
/// assert_eq!(Mode::Testing.to_string(), "testing");
/// assert!("Enforce".parse::<Mode>().is_err()); // values are case-sensitive
/// # Ok::<(), mtasts_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `enforce`: do not deliver to MX hosts that fail MX matching or certificate validation.
    Enforce,
    /// `testing`: report failures (RFC 8460) but deliver anyway.
    Testing,
    /// `none`: no active policy (used to withdraw a policy).
    None,
}

impl Mode {
    /// The RFC keyword: `"enforce"`, `"testing"` or `"none"`.
    ///
    /// ```
    /// assert_eq!(mtasts_core::Mode::None.as_str(), "none");
    /// ```
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Testing => "testing",
            Self::None => "none",
        }
    }
}

impl FromStr for Mode {
    type Err = Error;

    /// Parses exactly `enforce`, `testing` or `none` (RFC 8461 §3.2 uses case-sensitive `%s`
    /// strings).
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "enforce" => Ok(Self::Enforce),
            "testing" => Ok(Self::Testing),
            "none" => Ok(Self::None),
            _ => Err(Error::InvalidMode {
                value: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for mode in [Mode::Enforce, Mode::Testing, Mode::None] {
            assert_eq!(mode.to_string().parse::<Mode>(), Ok(mode));
        }
    }

    #[test]
    fn rejects_other_words() {
        for bad in [
            "", "ENFORCE", "Testing", "enforce ", " none", "report", "off",
        ] {
            assert_eq!(
                bad.parse::<Mode>(),
                Err(Error::InvalidMode { value: bad.into() })
            );
        }
    }
}
