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
//! Parsing follows the ABNF of RFC 8461 §3.1 and §3.2. Where the RFC leaves a choice open this
//! crate decides as follows (see [`Policy`] for the policy file rules):
//! - `version`, `mode` and `max_age` must each appear exactly once in a policy (the ABNF marks
//!   them "required once"); a missing or repeated one is an error.
//! - Unknown fields are kept (see [`Policy::extensions`]) but otherwise ignored, as RFC 8461 §3.1
//!   and §3.2 require; they must still follow the extension ABNF.
//! - Empty lines in a policy file are skipped.
//!
//! # Crate features
//!
//! None; serde support is always on.

mod domain;
mod error;
mod id;
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
pub use max_age::MaxAge;
pub use mode::Mode;
pub use mx::MxPattern;
pub use policy::Policy;
pub use txt::{TxtRecord, select_record};
