//! TLSA records and the rules that make one usable for SMTP (RFC 7672 §3.1).

use std::fmt;

/// One TLSA record (RFC 6698 §2.1), as published at `_25._tcp.<mx-host>`.
///
/// Any values are kept, so a view can show what a domain publishes; [`TlsaRecord::usability`]
/// says whether an SMTP client can use the record.
///
/// ```
/// use mtasts_fetch::dane::{TlsaRecord, Unusable};
///
/// let dane_ee = TlsaRecord::new(3, 1, 1, [0xab; 32]);
/// assert!(dane_ee.is_usable());
/// assert_eq!(dane_ee.to_string(), format!("3 1 1 {}", "ab".repeat(32)));
/// // PKIX usages mean nothing to an SMTP client (RFC 7672 §3.1.3).
/// assert_eq!(TlsaRecord::new(1, 1, 1, [0; 32]).usability(), Err(Unusable::PkixUsage(1)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TlsaRecord {
    usage: u8,
    selector: u8,
    matching_type: u8,
    data: Vec<u8>,
}

/// Why a [`TlsaRecord`] cannot be used by an SMTP client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unusable {
    /// Certificate usage 0 (PKIX-TA) or 1 (PKIX-EE): SMTP clients treat them as unusable
    /// (RFC 7672 §3.1.3).
    #[error("certificate usage {0} (PKIX) is not used by SMTP")]
    PkixUsage(u8),
    /// A certificate usage other than 0–3 (RFC 6698 §2.1.1, RFC 7218).
    #[error("unknown certificate usage {0}")]
    UnknownUsage(u8),
    /// A selector other than 0 (full certificate) or 1 (SubjectPublicKeyInfo) (RFC 6698 §2.1.2).
    #[error("unknown selector {0}")]
    UnknownSelector(u8),
    /// A matching type other than 0 (full), 1 (SHA2-256) or 2 (SHA2-512) (RFC 6698 §2.1.3).
    #[error("unknown matching type {0}")]
    UnknownMatchingType(u8),
    /// The association data has the wrong length for its matching type: a SHA2-256 digest is
    /// 32 bytes, a SHA2-512 digest 64, full data is never empty.
    #[error("matching type {matching_type} needs {expected} bytes of data, not {actual}")]
    DataLength {
        /// The matching type.
        matching_type: u8,
        /// The length it needs (1 for "at least one byte" with matching type 0).
        expected: usize,
        /// The length published.
        actual: usize,
    },
}

impl TlsaRecord {
    /// A record from its four fields.
    pub fn new(usage: u8, selector: u8, matching_type: u8, data: impl Into<Vec<u8>>) -> Self {
        Self {
            usage,
            selector,
            matching_type,
            data: data.into(),
        }
    }

    /// The certificate usage: 2 is DANE-TA, 3 is DANE-EE.
    pub fn usage(&self) -> u8 {
        self.usage
    }

    /// The selector: 0 for the full certificate, 1 for its SubjectPublicKeyInfo.
    pub fn selector(&self) -> u8 {
        self.selector
    }

    /// The matching type: 0 full data, 1 SHA2-256, 2 SHA2-512.
    pub fn matching_type(&self) -> u8 {
        self.matching_type
    }

    /// The certificate association data.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Whether an SMTP client can use this record (RFC 7672 §3.1): usage 2 or 3, selector 0
    /// or 1, matching type 0, 1 or 2 with data of the right length.
    ///
    /// # Errors
    ///
    /// The first rule the record breaks, in the order above.
    pub fn usability(&self) -> Result<(), Unusable> {
        match self.usage {
            // RFC 7672 §3.1.1 (DANE-EE) and §3.1.2 (DANE-TA).
            2 | 3 => {}
            0 | 1 => return Err(Unusable::PkixUsage(self.usage)),
            other => return Err(Unusable::UnknownUsage(other)),
        }
        if self.selector > 1 {
            return Err(Unusable::UnknownSelector(self.selector));
        }
        let length_ok = match self.matching_type {
            0 => !self.data.is_empty(),
            1 => self.data.len() == 32,
            2 => self.data.len() == 64,
            other => return Err(Unusable::UnknownMatchingType(other)),
        };
        if length_ok {
            Ok(())
        } else {
            Err(Unusable::DataLength {
                matching_type: self.matching_type,
                expected: [1, 32, 64][usize::from(self.matching_type)],
                actual: self.data.len(),
            })
        }
    }

    /// `self.usability().is_ok()`.
    pub fn is_usable(&self) -> bool {
        self.usability().is_ok()
    }
}

/// The presentation format (RFC 6698 §2.2): `usage selector matching-type hex-data`.
impl fmt::Display for TlsaRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} ",
            self.usage, self.selector, self.matching_type
        )?;
        if self.data.is_empty() {
            // RFC 3597 §5 spelling of empty data, so the field is never missing.
            return f.write_str("-");
        }
        self.data
            .iter()
            .try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usability(usage: u8, selector: u8, matching_type: u8, len: usize) -> Result<(), Unusable> {
        TlsaRecord::new(usage, selector, matching_type, vec![7; len]).usability()
    }

    #[test]
    fn dane_ta_and_dane_ee_with_every_selector_and_matching_type_are_usable() {
        for usage in [2, 3] {
            for selector in [0, 1] {
                for (matching_type, len) in [(0, 300), (0, 1), (1, 32), (2, 64)] {
                    assert_eq!(
                        usability(usage, selector, matching_type, len),
                        Ok(()),
                        "{usage} {selector} {matching_type} len {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn pkix_and_unknown_usages_are_unusable() {
        assert_eq!(usability(0, 1, 1, 32), Err(Unusable::PkixUsage(0)));
        assert_eq!(usability(1, 1, 1, 32), Err(Unusable::PkixUsage(1)));
        assert_eq!(usability(4, 1, 1, 32), Err(Unusable::UnknownUsage(4)));
        assert_eq!(usability(255, 1, 1, 32), Err(Unusable::UnknownUsage(255)));
    }

    #[test]
    fn unknown_selectors_and_matching_types_are_unusable() {
        assert_eq!(usability(3, 2, 1, 32), Err(Unusable::UnknownSelector(2)));
        assert_eq!(
            usability(3, 255, 1, 32),
            Err(Unusable::UnknownSelector(255))
        );
        assert_eq!(
            usability(3, 1, 3, 32),
            Err(Unusable::UnknownMatchingType(3))
        );
        assert_eq!(
            usability(3, 1, 255, 32),
            Err(Unusable::UnknownMatchingType(255))
        );
    }

    #[test]
    fn digests_of_the_wrong_length_are_unusable() {
        for (matching_type, expected, bad) in [(1, 32, [0, 31, 33, 64]), (2, 64, [0, 32, 63, 65])] {
            for actual in bad {
                assert_eq!(
                    usability(3, 1, matching_type, actual),
                    Err(Unusable::DataLength {
                        matching_type,
                        expected,
                        actual
                    })
                );
            }
        }
        assert_eq!(
            usability(2, 0, 0, 0),
            Err(Unusable::DataLength {
                matching_type: 0,
                expected: 1,
                actual: 0
            })
        );
    }

    #[test]
    fn display_is_the_presentation_format() {
        assert_eq!(
            TlsaRecord::new(3, 1, 1, [0x00, 0x0f, 0xa0, 0xff]).to_string(),
            "3 1 1 000fa0ff"
        );
        assert_eq!(TlsaRecord::new(2, 0, 0, []).to_string(), "2 0 0 -");
    }
}
