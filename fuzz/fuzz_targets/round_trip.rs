//! Whatever parses prints back to text (and JSON) that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtasts_core::{MxPattern, Policy, PolicyDomain, TxtRecord};

fuzz_target!(|data: &[u8]| {
    if let Ok(policy) = Policy::parse(data) {
        let text = policy.to_string();
        assert_eq!(text.parse::<Policy>().as_ref(), Ok(&policy), "{text:?}");
        let json = serde_json::to_string(&policy).expect("a policy always serializes");
        let back: Policy = serde_json::from_str(&json).expect("serialized JSON deserializes");
        assert_eq!(back, policy, "{json}");
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(record) = text.parse::<TxtRecord>() {
        assert_eq!(
            record.to_string().parse::<TxtRecord>().as_ref(),
            Ok(&record)
        );
    }
    if let Ok(pattern) = text.parse::<MxPattern>() {
        assert_eq!(
            pattern.to_string().parse::<MxPattern>().as_ref(),
            Ok(&pattern)
        );
    }
    if let Ok(domain) = PolicyDomain::parse(text) {
        assert_eq!(PolicyDomain::parse(domain.as_str()).as_ref(), Ok(&domain));
    }
});
