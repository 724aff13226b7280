//! MX host patterns (RFC 8461 §3.2 `mx`, §4.1 matching).

use std::fmt;
use std::str::FromStr;

use crate::Error;
use crate::name::check_domain;

/// One `mx` pattern of a policy: a host name (`mail.example.com`) or a wildcard (`*.example.com`)
/// (RFC 8461 §3.2: `sts-policy-mx-value = ["*."] Domain`).
///
/// Parsing validates the name (letter/digit/hyphen labels of 1 to 63 characters, no leading or
/// trailing hyphen, at most 253 characters; `*` only as the whole leftmost label; A-labels are
/// plain labels), lowercases it and drops one trailing dot, so the stored form is canonical.
///
/// ```
/// use mtasts_core::MxPattern;
///
/// let pattern: MxPattern = "*.Example.COM.".parse()?;
/// assert_eq!(pattern.as_str(), "*.example.com");
/// assert!(pattern.is_wildcard());
/// assert!(pattern.matches("mx1.example.com"));
/// assert!(!pattern.matches("example.com"));
/// assert!("mx.*.example.com".parse::<MxPattern>().is_err());
/// # Ok::<(), mtasts_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MxPattern(String);

impl MxPattern {
    /// The canonical pattern text (lowercase, no trailing dot).
    ///
    /// ```
    /// let pattern: mtasts_core::MxPattern = "MX.example.com".parse()?;
    /// assert_eq!(pattern.as_str(), "mx.example.com");
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern starts with `*.`.
    ///
    /// ```
    /// let pattern: mtasts_core::MxPattern = "mx.example.com".parse()?;
    /// assert!(!pattern.is_wildcard());
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// Whether MX host `host` matches this pattern (RFC 8461 §4.1).
    ///
    /// Comparison is case-insensitive and ignores one trailing dot of `host`. A plain pattern
    /// matches the same name only; a wildcard `*.example.com` matches a host with exactly one
    /// more, non-empty, leftmost label: `mx.example.com`, but neither `example.com` nor
    /// `a.b.example.com` (§4.1: a wildcard covers exactly one, leftmost, label).
    ///
    /// ```
    /// let pattern: mtasts_core::MxPattern = "*.example.com".parse()?;
    /// assert!(pattern.matches("MX.Example.com."));
    /// assert!(!pattern.matches("a.b.example.com"));
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        match self.0.strip_prefix("*.") {
            Some(parent) => host.split_once('.').is_some_and(|(label, rest)| {
                !label.is_empty() && label != "*" && rest.eq_ignore_ascii_case(parent)
            }),
            None => host.eq_ignore_ascii_case(&self.0),
        }
    }
}

impl FromStr for MxPattern {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidMxPattern {
            value: s.to_owned(),
            reason,
        };
        let name = s.strip_suffix('.').unwrap_or(s);
        let domain = name.strip_prefix("*.").unwrap_or(name);
        check_domain(domain).map_err(invalid)?;
        if name.len() > crate::name::MAX_NAME_LEN {
            return Err(invalid("longer than 253 characters"));
        }
        Ok(Self(name.to_ascii_lowercase()))
    }
}

impl fmt::Display for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for MxPattern {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for MxPattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for MxPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_canonicalizes() {
        for (text, canonical, wildcard) in [
            ("mail.example.com", "mail.example.com", false),
            ("MAIL.Example.Com", "mail.example.com", false),
            ("mail.example.com.", "mail.example.com", false),
            ("*.example.com", "*.example.com", true),
            ("*.EXAMPLE.com.", "*.example.com", true),
            ("xn--mnchen-3ya.de", "xn--mnchen-3ya.de", false),
            ("*.xn--mnchen-3ya.de", "*.xn--mnchen-3ya.de", true),
            ("localhost", "localhost", false),
            ("*.com", "*.com", true),
            ("1mx.example.com", "1mx.example.com", false),
        ] {
            let pattern: MxPattern = text.parse().unwrap();
            assert_eq!(pattern.as_str(), canonical, "{text}");
            assert_eq!(pattern.is_wildcard(), wildcard, "{text}");
            assert_eq!(pattern.to_string().parse::<MxPattern>(), Ok(pattern));
        }
    }

    #[test]
    fn rejects_invalid_patterns() {
        for bad in [
            "",
            ".",
            "*",
            "*.",
            "**.example.com",
            "*example.com",
            "mx*.example.com",
            "mx.*.example.com",
            "*.*.example.com",
            "example.*",
            ".example.com",
            "example..com",
            "example.com..",
            "-mx.example.com",
            "mx-.example.com",
            "mx_1.example.com",
            "mx example.com",
            "mx.example.com:25",
            "[192.0.2.1]",
            "münchen.de",
            "mx.example.com\t",
            " mx.example.com",
        ] {
            let err = bad.parse::<MxPattern>().unwrap_err();
            assert_eq!(err.kind(), "invalid_mx_pattern", "{bad:?}");
        }
    }

    #[test]
    fn label_and_name_limits() {
        let label63 = "a".repeat(63);
        assert!(
            format!("{label63}.example.com")
                .parse::<MxPattern>()
                .is_ok()
        );
        assert!(
            format!("a{label63}.example.com")
                .parse::<MxPattern>()
                .is_err()
        );
        let name253 = [label63.as_str(); 4]
            .join(".")
            .get(..253)
            .unwrap()
            .to_owned();
        let name253 = name253.trim_end_matches('.').to_owned() + "";
        assert!(name253.len() <= 253);
        assert!(name253.parse::<MxPattern>().is_ok(), "{}", name253.len());
        let name254 = format!("{}.abc", [label63.as_str(); 3].join("."));
        assert_eq!(name254.len(), 195);
        let too_long = format!("{label63}.{label63}.{label63}.{}", "b".repeat(62));
        assert_eq!(too_long.len(), 254);
        assert!(too_long.parse::<MxPattern>().is_err());
        let wildcard_too_long = format!("*.{label63}.{label63}.{label63}.{}", "b".repeat(60));
        assert_eq!(wildcard_too_long.len(), 254);
        assert!(wildcard_too_long.parse::<MxPattern>().is_err());
    }

    /// RFC 8461 §4.1 matching, including its own examples.
    #[test]
    fn matching_table() {
        for (pattern, host, expected) in [
            // §4.1: the wildcard stands for exactly one leftmost label ...
            ("*.example.com", "mx1.example.com", true),
            // ... so it covers neither the parent itself ...
            ("*.example.com", "example.com", false),
            // ... nor two labels.
            ("*.example.com", "foo.mx1.example.com", false),
            ("*.example.com", "MX1.EXAMPLE.COM", true),
            ("*.example.com", "mx1.example.com.", true),
            ("*.example.com", ".example.com", false),
            ("*.example.com", "mx1.example.org", false),
            ("*.example.com", "mx1example.com", false),
            ("*.example.com", "mx1.notexample.com", false),
            ("mail.example.com", "mail.example.com", true),
            ("mail.example.com", "MAIL.example.COM", true),
            ("mail.example.com", "mail.example.com.", true),
            ("mail.example.com", "mail.example.com..", false),
            ("mail.example.com", "mx.mail.example.com", false),
            ("mail.example.com", "example.com", false),
            ("mail.example.com", "mail.example.co", false),
            ("mail.example.com", "", false),
            ("*.example.com", "", false),
        ] {
            let p: MxPattern = pattern.parse().unwrap();
            assert_eq!(p.matches(host), expected, "{pattern} vs {host:?}");
        }
    }
}
