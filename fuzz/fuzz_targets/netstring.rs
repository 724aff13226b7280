//! libFuzzer entry point of [`mtasts_fuzz::netstring`] (the check lives in the library so seeds replay on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtasts_fuzz::netstring(data));
