//! The crate's error type.

use crate::Mode;

/// Everything that can be wrong with MTA-STS input: TXT records (RFC 8461 §3.1), policy files
/// (§3.2), MX patterns (§4.1) and policy domains (§3.4).
///
/// Each variant says what was wrong; errors inside a policy file say on which line
/// ([`Error::line`]). [`Error::kind`] gives a stable short label for logs and metrics.
///
/// ```
/// use mtasts_core::Policy;
///
/// let err = "version: STSv1\nmode: enforce\nmax_age: soon\nmx: mx.example.com\n"
///     .parse::<Policy>()
///     .unwrap_err();
/// assert_eq!(err.kind(), "invalid_max_age");
/// assert_eq!(err.line(), Some(3));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A policy id is not 1 to 32 ASCII letters or digits (RFC 8461 §3.1).
    #[error(
        "invalid policy id {value:?}: expected 1 to 32 ASCII letters or digits (RFC 8461 §3.1)"
    )]
    InvalidPolicyId {
        /// The rejected text.
        value: String,
    },
    /// A mode is not `enforce`, `testing` or `none` (RFC 8461 §3.2).
    #[error(
        "invalid mode {value:?}: expected \"enforce\", \"testing\" or \"none\" (RFC 8461 §3.2)"
    )]
    InvalidMode {
        /// The rejected text.
        value: String,
    },
    /// A `max_age` is not 1 to 10 digits or exceeds 31 557 600 (RFC 8461 §3.2).
    #[error("invalid max_age {value:?}: {reason} (RFC 8461 §3.2)")]
    InvalidMaxAge {
        /// The rejected text.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A policy `version` is not `STSv1` (RFC 8461 §3.2).
    #[error("invalid version {value:?}: expected \"STSv1\" (RFC 8461 §3.2)")]
    InvalidVersion {
        /// The rejected text.
        value: String,
    },
    /// An `mx` pattern is not a domain name or `*.` followed by one (RFC 8461 §3.2, §4.1).
    #[error("invalid mx pattern {value:?}: {reason} (RFC 8461 §3.2)")]
    InvalidMxPattern {
        /// The rejected text.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An extension field's name or value breaks the ABNF of RFC 8461 §3.1 / §3.2.
    #[error("invalid extension field {name:?}: {reason}")]
    InvalidExtension {
        /// The field name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A policy body is not valid UTF-8 (RFC 8461 §3.2: the body is text, ASCII apart from
    /// UTF-8 in extension values).
    #[error("policy body is not valid UTF-8 (bad byte at offset {offset}) (RFC 8461 §3.2)")]
    NotUtf8 {
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// A policy line does not follow the `key: value` ABNF of RFC 8461 §3.2.
    #[error("policy line {line}: {reason} (RFC 8461 §3.2)")]
    PolicySyntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A required policy field (`version`, `mode`, `max_age`) is missing.
    #[error("policy has no {field:?} field; RFC 8461 §3.2 requires it")]
    MissingField {
        /// The field name.
        field: &'static str,
    },
    /// A policy whose mode is not `none` has no `mx` field.
    #[error(
        "policy in mode \"{mode}\" has no \"mx\" field; RFC 8461 §3.2 requires at least one unless mode is \"none\""
    )]
    MissingMx {
        /// The policy's mode.
        mode: Mode,
    },
    /// A field value in a policy file is invalid; `error` says which field and why.
    #[error("policy line {line}: {error}")]
    AtLine {
        /// 1-based line number.
        line: usize,
        /// The error of the field on that line.
        error: Box<Self>,
    },
    /// A TXT record does not follow the ABNF of RFC 8461 §3.1.
    #[error("TXT record, byte {offset}: {reason} (RFC 8461 §3.1)")]
    TxtSyntax {
        /// Byte offset in the record's text.
        offset: usize,
        /// What is wrong there.
        reason: &'static str,
    },
    /// A TXT record repeats the version field (`v=STSv1; id=1; v=STSv2`). Later duplicates of
    /// other fields are ignored (RFC 8461 §3.2), but a second version is ambiguous: which version
    /// is the record? So the record is invalid, and there is no policy (§3.1).
    #[error("TXT record repeats the version field \"v\" (RFC 8461 §3.1)")]
    TxtRepeatedVersion,
    /// A TXT record has no `id` field (RFC 8461 §3.1: `id` is required).
    #[error("TXT record has no \"id\" field (RFC 8461 §3.1)")]
    TxtMissingId,
    /// No TXT record of the name starts with `v=STSv1;` (RFC 8461 §3.1).
    #[error("no TXT record starts with \"v=STSv1;\" (RFC 8461 §3.1)")]
    NoRecord,
    /// Several TXT records start with `v=STSv1;`; RFC 8461 §3.1 requires exactly one.
    #[error("{count} TXT records start with \"v=STSv1;\"; RFC 8461 §3.1 requires exactly one")]
    MultipleRecords {
        /// How many records started with the version field.
        count: usize,
    },
    /// A policy domain is not a valid domain name.
    #[error("invalid policy domain {value:?}: {reason}")]
    InvalidDomain {
        /// The rejected text.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A lookup key with a leading dot (Postfix's parent-domain form): RFC 8461 §3.4 forbids
    /// using a parent domain's policy.
    #[error("{value:?} is a parent-domain lookup; RFC 8461 §3.4 forbids policy inheritance")]
    ParentDomain {
        /// The rejected text.
        value: String,
    },
    /// An IP address literal where a policy domain was expected.
    #[error("{value:?} is an IP address literal, not a policy domain")]
    IpLiteral {
        /// The rejected text.
        value: String,
    },
}

impl Error {
    /// A stable short label for logs and metrics, e.g. `"invalid_max_age"`.
    ///
    /// For [`Error::AtLine`] this is the label of the field error inside.
    ///
    /// ```
    /// use mtasts_core::MaxAge;
    ///
    /// let err = "31557601".parse::<MaxAge>().unwrap_err();
    /// assert_eq!(err.kind(), "invalid_max_age");
    /// ```
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidPolicyId { .. } => "invalid_policy_id",
            Self::InvalidMode { .. } => "invalid_mode",
            Self::InvalidMaxAge { .. } => "invalid_max_age",
            Self::InvalidVersion { .. } => "invalid_version",
            Self::InvalidMxPattern { .. } => "invalid_mx_pattern",
            Self::InvalidExtension { .. } => "invalid_extension",
            Self::NotUtf8 { .. } => "not_utf8",
            Self::PolicySyntax { .. } => "policy_syntax",
            Self::MissingField { .. } => "missing_field",
            Self::MissingMx { .. } => "missing_mx",
            Self::AtLine { error, .. } => error.kind(),
            Self::TxtSyntax { .. } => "txt_syntax",
            Self::TxtRepeatedVersion => "txt_repeated_version",
            Self::TxtMissingId => "txt_missing_id",
            Self::NoRecord => "no_record",
            Self::MultipleRecords { .. } => "multiple_records",
            Self::InvalidDomain { .. } => "invalid_domain",
            Self::ParentDomain { .. } => "parent_domain",
            Self::IpLiteral { .. } => "ip_literal",
        }
    }

    /// The 1-based policy-file line the error is on, when it is about one line.
    ///
    /// ```
    /// use mtasts_core::Policy;
    ///
    /// let err = Policy::parse(b"version: STSv1\nmode: enforce\nmx : mx.example.com\n").unwrap_err();
    /// assert_eq!(err.kind(), "policy_syntax");
    /// assert_eq!(err.line(), Some(3));
    /// ```
    #[must_use]
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::PolicySyntax { line, .. } | Self::AtLine { line, .. } => Some(*line),
            _ => None,
        }
    }

    pub(crate) fn at_line(self, line: usize) -> Self {
        Self::AtLine {
            line,
            error: Box::new(self),
        }
    }
}
