//! MTA-STS (RFC 8461) policy model and parsers, without I/O.
//!
//! An MTA-STS domain publishes a TXT record at `_mta-sts.<domain>` ([`TxtRecord`], picked from
//! all TXT records with [`select_record`]) and a policy file at
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt` ([`Policy`]). A policy has a [`Mode`], a
//! lifetime ([`MaxAge`]) and [`MxPattern`]s that the MX hosts must match. [`PolicyDomain`] is the
//! canonical form of the domain a policy is looked up for, and [`PolicyId`] the id that tells
//! when to fetch the policy again. Every type parses with [`FromStr`](std::str::FromStr),
//! validates on construction, prints its canonical form with `Display` and round-trips through
//! serde. All errors are one [`Error`] type.
//!
//! This crate does no I/O: fetching over DNS and HTTPS is `mtasts-fetch`'s job.
//!
//! # Example
//!
//! ```
//! use mtasts_core::{select_record, Mode, Policy, PolicyDomain};
//!
//! fn main() -> Result<(), mtasts_core::Error> {
//!     let domain = PolicyDomain::parse("Example.com.")?;
//!     assert_eq!(domain.txt_name(), "_mta-sts.example.com");
//!
//!     // The TXT records found at `_mta-sts.example.com`.
//!     let record = select_record(["v=spf1 -all", "v=STSv1; id=20160831085700Z;"])?;
//!     assert_eq!(record.id().as_str(), "20160831085700Z");
//!
//!     // The body fetched from `https://mta-sts.example.com/.well-known/mta-sts.txt`.
//!     let body = b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n";
//!     let policy = Policy::parse(body)?;
//!     assert_eq!(policy.mode(), Mode::Enforce);
//!     assert!(policy.matches_mx("mail.example.com"));
//!     assert!(policy.matches_mx("backup.example.net"));
//!     assert!(!policy.matches_mx("a.backup.example.net"));
//!     Ok(())
//! }
//! ```
//!
//! # Strictness
//!
//! Parsing follows the ABNF of RFC 8461 §3.1 and §3.2. Where the RFC leaves room, this crate
//! decides as follows (details and the RFC text on [`Policy`] and [`select_record`]):
//! - A missing `version`, `mode` or `max_age`, or no `mx` outside mode `none`, makes a policy
//!   invalid (the ABNF marks them "required once" / "required at least once").
//! - A repeated `version`, `mode` or `max_age` (or TXT `id`): the first one wins, as §3.2 says
//!   ("all entries except for the first SHALL be ignored").
//! - Unknown fields are kept ([`Policy::extensions`], [`TxtRecord::extensions`]) and otherwise
//!   ignored, but they must follow the extension ABNF.
//! - Whitespace: exactly where the ABNF allows it (around `;` in TXT records, after `:` and at
//!   the end of policy lines), apart from the leniencies below.
//! - A policy body must be UTF-8; non-ASCII text is allowed only in extension values.
//! - Record selection follows the published `sts-field-delim`, so `v=STSv1 ;` counts as a
//!   version field (erratum 6285 discusses this).
//!
//! Leniencies — every deviation from the ABNF that is accepted, each unambiguous and deployed
//! (the Python `postfix-mta-sts-resolver` enforces such records, so rejecting them would switch
//! enforcement off after a migration). Each is a [`Leniency`], reported by
//! [`TxtRecord::leniencies`] and [`Policy::leniencies`] so tools can warn about it:
//! - [`Leniency::TxtTrailingWhitespace`]: spaces or tabs at the end of a TXT record without a
//!   final `;` (`v=STSv1; id=20160831085700Z   `).
//! - [`Leniency::TxtEmptyField`]: empty fields between TXT separators (`v=STSv1;; id=1`,
//!   `v=STSv1; id=20160831085700Z;;;`).
//! - [`Leniency::PolicyEmptyLine`]: empty lines (or lines of only spaces and tabs) in a policy
//!   file are skipped.
//! - [`Leniency::MxTrailingDot`]: an `mx` pattern may end in a dot, which is dropped.
//!
//! Nothing ambiguous is accepted: another version (`v=STSv2`), a repeated version field
//! (`v=STSv1; id=1; v=STSv2`), a record that does not begin
//! with `v=STSv1` and a delimiter, an id outside 1 to 32 letters and digits, line breaks or other
//! characters in a record, and several `v=STSv1` records all mean no policy (§3.1: "if the
//! resulting record is syntactically invalid, senders MUST assume the recipient domain does not
//! have an available MTA-STS Policy").
//!
//! # Crate features
//!
//! None; serde support is always on.

mod domain;
mod error;
mod id;
mod leniency;
mod max_age;
mod mode;
mod mx;
mod name;
mod policy;
mod syntax;
mod txt;

pub use domain::PolicyDomain;
pub use error::Error;
pub use id::PolicyId;
pub use leniency::Leniency;
pub use max_age::MaxAge;
pub use mode::Mode;
pub use mx::MxPattern;
pub use policy::Policy;
pub use txt::{TxtRecord, select_record};
