//! Feeds arbitrary text to the TXT record parser and to record selection (records separated
//! by NUL bytes): they must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtasts_core::{TxtRecord, select_record};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = text.parse::<TxtRecord>();
    if let Ok(record) = select_record(text.split('\0')) {
        assert!(
            text.split('\0')
                .any(|r| r.parse::<TxtRecord>().as_ref() == Ok(&record))
        );
    }
});
