//! Integration tests of mtasts-cache: the memory store against the conformance suite.

mod memory;
mod reconnect;
