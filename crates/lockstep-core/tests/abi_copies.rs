//! The ABI is written down in more than one place until it has a crate of its own (issue 10):
//! `abi.rs` and `ring.rs` here, the guest SDK (`guest/sdk/src/lib.rs`) and `ring.js`. This test
//! reads the other copies and fails when one of them disagrees with the engine.

use lockstep_core::{abi, ring};

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The value of `const NAME ... = <expr>;` in `source` (Rust `pub const NAME: T = …;` or JS
/// `const NAME = …;`), for the expressions these files use: integers (`_`, hex), `a << b`, `a - b`.
fn constant(source: &str, name: &str) -> u64 {
    let line = source
        .lines()
        .find(|l| {
            let l = l.trim_start().trim_start_matches("pub ");
            l.starts_with(&format!("const {name}:")) || l.starts_with(&format!("const {name} ="))
        })
        .unwrap_or_else(|| panic!("no constant {name}"));
    let expr = line.split('=').nth(1).and_then(|r| r.split(';').next()).unwrap_or_else(|| panic!("{line}")).trim();
    let number = |s: &str| -> u64 {
        let s = s.trim().replace('_', "");
        match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("{name}: {s}")),
            None => s.parse().unwrap_or_else(|_| panic!("{name}: cannot evaluate {s}")),
        }
    };
    if let Some((a, b)) = expr.split_once("<<") {
        number(a) << number(b)
    } else if let Some((a, b)) = expr.split_once(" - ") {
        number(a) - number(b)
    } else {
        number(expr)
    }
}

#[test]
fn the_guest_sdk_speaks_the_engines_abi() {
    let sdk = read("guest/sdk/src/lib.rs");
    assert_eq!(constant(&sdk, "ABI_VERSION"), abi::ABI_VERSION as u64);
    assert_eq!(constant(&sdk, "IO_BUFFER_BYTES"), abi::IO_BUFFER_BYTES as u64);
    assert_eq!(constant(&sdk, "MESSAGE_HEADER_BYTES"), abi::MESSAGE_HEADER_BYTES as u64);
    assert_eq!(constant(&sdk, "HOST"), abi::HOST_ID);
    // Capability bits, as the `granted` import reports them (security::Capabilities::bits).
    for (name, bit) in [("SEND_HOST", 1), ("SEND_AGENTS", 2), ("INFER", 4), ("LOG", 8), ("RANDOM", 16), ("CLOCK", 32)] {
        assert_eq!(constant(&sdk, name), bit, "capability bit {name}");
    }
    let all = lockstep_core::security::Capabilities::all().bits();
    assert_eq!(all, 63, "the engine grants exactly the six bits the SDK names");
}

#[test]
fn ring_js_speaks_the_engines_ring_layout() {
    let js = read("ring.js");
    assert_eq!(constant(&js, "MAGIC"), ring::MAGIC as u64);
    assert_eq!(constant(&js, "VERSION"), ring::VERSION as u64);
    assert_eq!(constant(&js, "HEADER_BYTES"), ring::HEADER_BYTES as u64);
    // ring.js indexes an Int32Array: element index × 4 = byte offset.
    assert_eq!(constant(&js, "HEAD") * 4, ring::OFFSET_HEAD as u64);
    assert_eq!(constant(&js, "TAIL") * 4, ring::OFFSET_TAIL as u64);
    assert_eq!(constant(&js, "RECORD_HEADER_BYTES"), ring::RECORD_HEADER_BYTES as u64);
    assert_eq!(constant(&js, "MIN_CAPACITY"), ring::MIN_CAPACITY as u64);
    assert_eq!(constant(&js, "MAX_CAPACITY"), ring::MAX_CAPACITY as u64);
    assert_eq!(constant(&js, "TYPE_MESSAGE"), ring::TYPE_MESSAGE as u64);
    assert_eq!(constant(&js, "TYPE_EVENT"), ring::TYPE_EVENT as u64);
    assert_eq!(constant(&js, "TYPE_TICK"), ring::TYPE_TICK as u64);
    assert_eq!(constant(&js, "TYPE_PAD"), ring::TYPE_PAD as u64);
    assert_eq!(constant(&js, "MAX_PAYLOAD_BYTES"), abi::MAX_PAYLOAD_BYTES as u64);
}
