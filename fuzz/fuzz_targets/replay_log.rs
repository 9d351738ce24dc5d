//! The replay-log reader never panics and never allocates unboundedly on arbitrary bytes:
//! once on the raw input, and once on records re-framed with valid checksums, so the fuzzer
//! reaches the body parsers behind the CRC check.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lockstep_core::replay_log::{write_header, LogReader};

fn read_all(bytes: &[u8]) {
    if let Ok(mut r) = LogReader::new(bytes) {
        while let Ok(Some(_)) = r.next_record() {}
    }
}

fuzz_target!(|data: &[u8]| {
    read_all(data);
    let mut log = Vec::new();
    write_header(&mut log);
    let mut rest = data;
    while rest.len() >= 2 {
        let (tag, len) = (rest[0], rest[1] as usize);
        let body = &rest[2..(2 + len).min(rest.len())];
        let start = log.len();
        log.push(tag);
        log.extend_from_slice(&(body.len() as u32).to_le_bytes());
        log.extend_from_slice(body);
        let crc = crc32fast::hash(&log[start..]);
        log.extend_from_slice(&crc.to_le_bytes());
        rest = &rest[(2 + len).min(rest.len())..];
    }
    read_all(&log);
});
