//! The replay-log reader never panics and never allocates unboundedly on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lockstep_core::replay_log::LogReader;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = LogReader::new(data) {
        while let Ok(Some(_)) = r.next_record() {}
    }
});
