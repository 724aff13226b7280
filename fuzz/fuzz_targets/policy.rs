//! Feeds arbitrary bytes to the policy file parser: it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtasts_core::Policy;

fuzz_target!(|data: &[u8]| {
    if let Ok(policy) = Policy::parse(data) {
        // Whatever parses must match its own MX patterns' hosts consistently.
        for pattern in policy.mx() {
            let host = pattern.as_str().replacen("*.", "fuzz.", 1);
            assert!(policy.matches_mx(&host), "{pattern} does not match {host}");
        }
    }
});
