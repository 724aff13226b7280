//! The domain a policy is looked up for (RFC 8461 §3, §3.4).

use std::fmt;
use std::net::IpAddr;

use crate::Error;
use crate::name::check_domain;

/// The (recipient or next-hop) domain whose policy is wanted, in canonical ASCII form: lowercase,
/// no trailing dot, internationalized labels converted to A-labels (UTS #46 via the `idna`
/// crate).
///
/// Postfix asks for parent domains with a leading dot (`.example.com`); RFC 8461 §3.4 forbids
/// applying a parent domain's policy, so such keys are an [`Error::ParentDomain`]. IP literals
/// are an [`Error::IpLiteral`].
///
/// ```
/// use mtasts_core::PolicyDomain;
///
/// let domain = PolicyDomain::parse("Bücher.Example.")?;
/// assert_eq!(domain.as_str(), "xn--bcher-kva.example");
/// assert_eq!(domain.policy_host(), "mta-sts.xn--bcher-kva.example");
/// assert_eq!(domain.txt_name(), "_mta-sts.xn--bcher-kva.example");
/// assert_eq!(PolicyDomain::parse(".example.com").unwrap_err().kind(), "parent_domain");
/// # Ok::<(), mtasts_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyDomain(String);

impl PolicyDomain {
    /// Parses and canonicalizes a domain (see the type docs).
    ///
    /// ```
    /// let domain = mtasts_core::PolicyDomain::parse("EXAMPLE.com.")?;
    /// assert_eq!(domain.as_str(), "example.com");
    /// assert!(mtasts_core::PolicyDomain::parse("[192.0.2.1]").is_err());
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    pub fn parse(input: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidDomain {
            value: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(invalid("empty name"));
        }
        if input.starts_with('.') {
            return Err(Error::ParentDomain {
                value: input.to_owned(),
            });
        }
        let name = input.strip_suffix('.').unwrap_or(input);
        if name.starts_with('[') || name.parse::<IpAddr>().is_ok() {
            return Err(Error::IpLiteral {
                value: input.to_owned(),
            });
        }
        let ascii = idna::domain_to_ascii_cow(name.as_bytes(), idna::AsciiDenyList::STD3)
            .map_err(|_| invalid("not a valid domain name (UTS #46 processing failed)"))?;
        check_domain(&ascii).map_err(invalid)?;
        Ok(Self(ascii.into_owned()))
    }

    /// The canonical ASCII name.
    ///
    /// ```
    /// let domain = mtasts_core::PolicyDomain::parse("example.com")?;
    /// assert_eq!(domain.as_str(), "example.com");
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host serving the policy file: `mta-sts.<domain>` (RFC 8461 §3.3).
    ///
    /// ```
    /// let domain = mtasts_core::PolicyDomain::parse("example.com")?;
    /// assert_eq!(domain.policy_host(), "mta-sts.example.com");
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn policy_host(&self) -> String {
        format!("mta-sts.{}", self.0)
    }

    /// The name of the TXT record: `_mta-sts.<domain>` (RFC 8461 §3.1).
    ///
    /// ```
    /// let domain = mtasts_core::PolicyDomain::parse("example.com")?;
    /// assert_eq!(domain.txt_name(), "_mta-sts.example.com");
    /// # Ok::<(), mtasts_core::Error>(())
    /// ```
    #[must_use]
    pub fn txt_name(&self) -> String {
        format!("_mta-sts.{}", self.0)
    }
}

impl std::str::FromStr for PolicyDomain {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for PolicyDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for PolicyDomain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for PolicyDomain {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for PolicyDomain {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalizes() {
        for (input, canonical) in [
            ("example.com", "example.com"),
            ("EXAMPLE.COM", "example.com"),
            ("example.com.", "example.com"),
            ("mail.example.com", "mail.example.com"),
            ("münchen.de", "xn--mnchen-3ya.de"),
            ("MÜNCHEN.DE", "xn--mnchen-3ya.de"),
            ("xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
            ("例え.jp", "xn--r8jz45g.jp"),
            ("localhost", "localhost"),
        ] {
            let domain = PolicyDomain::parse(input).unwrap();
            assert_eq!(domain.as_str(), canonical, "{input}");
            assert_eq!(PolicyDomain::parse(domain.as_str()), Ok(domain));
        }
    }

    #[test]
    fn rejects() {
        for (input, kind) in [
            ("", "invalid_domain"),
            (".", "parent_domain"),
            (".example.com", "parent_domain"),
            ("192.0.2.1", "ip_literal"),
            ("192.0.2.1.", "ip_literal"),
            ("2001:db8::1", "ip_literal"),
            ("[192.0.2.1]", "ip_literal"),
            ("[ipv6:2001:db8::1]", "ip_literal"),
            ("example..com", "invalid_domain"),
            ("example.com..", "invalid_domain"),
            ("exa mple.com", "invalid_domain"),
            ("exa_mple.com", "invalid_domain"),
            ("-example.com", "invalid_domain"),
            ("example-.com", "invalid_domain"),
            ("example.com:25", "invalid_domain"),
            ("*.example.com", "invalid_domain"),
            ("xn--zz.com", "invalid_domain"),
        ] {
            let err = PolicyDomain::parse(input).unwrap_err();
            assert_eq!(err.kind(), kind, "{input:?}: {err}");
        }
        let label = "a".repeat(63);
        let long = format!("{}.com", [label.as_str(); 4].join("."));
        assert_eq!(
            PolicyDomain::parse(&long).unwrap_err().kind(),
            "invalid_domain"
        );
    }
}
