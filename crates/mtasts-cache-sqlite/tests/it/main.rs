//! Integration tests of mtasts-cache-sqlite: the conformance suite on temporary files, compatibility with the
//! Python daemon's cache file, and failure behaviour.

mod compat;
mod conformance;
mod failures;
mod util;
