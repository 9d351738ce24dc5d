//! The manifest/signature parser never panics, whatever the bytes: `admit` (section walk,
//! manifest JSON, signature) and `split` on arbitrary input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lockstep_core::security;

fuzz_target!(|data: &[u8]| {
    let _ = security::split(data);
    let _ = security::admit(data, &[[7u8; 32]], false);
    let _ = security::admit(data, &[], true);
    let _ = security::Manifest::parse(data);
    if data.len() > 8 {
        // A real module prefix with fuzzed custom sections after it.
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend_from_slice(&data[8..]);
        let _ = security::admit(&m, &[[7u8; 32]], false);
    }
});
