//! `mta-sts-daemon`: an MTA-STS (RFC 8461) socketmap daemon for Postfix, a drop-in replacement for the Python
//! `postfix-mta-sts-resolver` (same flags, same YAML configuration, same answers).
//!
//! The binary is thin; everything lives here so that tests can run the server in-process:
//! [`config`] reads the YAML file as PyYAML would, [`cli`] parses the flags.
//!
//! # Crate features
//! - `sqlite`, `redis`, `postgres` (all default): the persistent policy stores (`cache.type`).

pub mod cli;
pub mod config;
