//! The ABI has one source, the `lockstep-abi` crate: the engine and the guest SDK both depend
//! on it. Two places cannot: `ring.js` (JavaScript) keeps a copy of the ring layout, checked
//! here against `lockstep_abi::ring`; and the SDK must not grow a hand copy again, which the
//! second test checks by reading its source.

use lockstep_abi::ring;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// `s` as an integer literal (`_`, hex, a leading `-`), if it is one.
fn integer(s: &str) -> Option<i128> {
    let s = s.trim().replace('_', "");
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest.trim().to_string()),
        None => (false, s),
    };
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => i128::from_str_radix(hex, 16).ok()?,
        None => s.parse().ok()?,
    };
    Some(if negative { -v } else { v })
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
    let number = |s: &str| -> u64 { integer(s).and_then(|v| u64::try_from(v).ok()).unwrap_or_else(|| panic!("{name}: cannot evaluate {s}")) };
    if let Some((a, b)) = expr.split_once("<<") {
        number(a) << number(b)
    } else if let Some((a, b)) = expr.split_once(" - ") {
        number(a) - number(b)
    } else {
        number(expr)
    }
}

#[test]
fn ring_js_speaks_the_abi_crates_ring_layout() {
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
    assert_eq!(constant(&js, "MAX_PAYLOAD_BYTES"), lockstep_abi::MAX_PAYLOAD_BYTES as u64);
}

/// Lines of Rust `source` that give a name an integer of their own: `const X: T = 40;`, an enum
/// discriminant `Warn = 2,`, a match arm `-2 => …`. (`let` bindings are code, not ABI.)
fn integer_definitions(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("").trim();
        if code.is_empty() || code.starts_with("let ") {
            continue;
        }
        // `x = 1`, not `x == 1`, `x <= 1`, `x += 1`, `x => 1`.
        let assigned =
            code.split_once('=').filter(|(lhs, rhs)| !lhs.trim_end().ends_with(|c: char| "=!<>+-*/%&|^".contains(c)) && !rhs.starts_with(['=', '>']));
        if let Some((_, rhs)) = assigned {
            if integer(rhs.trim_end_matches([';', ','])).is_some() {
                found.push(line.trim().to_string());
            }
        }
        if let Some((arm, _)) = code.split_once("=>") {
            if integer(arm).is_some() {
                found.push(line.trim().to_string());
            }
        }
    }
    found
}

#[test]
fn the_guest_sdk_has_no_copy_of_the_abi() {
    let sdk = read("guest/sdk/src/lib.rs");
    assert!(sdk.contains("pub use lockstep_abi as abi;"), "the SDK re-exports the ABI crate");
    assert_eq!(integer_definitions(&sdk), Vec::<String>::new(), "the SDK takes its ABI numbers from lockstep-abi");
    // The checker itself finds what the SDK used to define by hand.
    let old = "pub const MESSAGE_HEADER_BYTES: usize = 40;\n    Warn = 2,\n        -2 => Err(SendError::OutboxFull),\n    pub const LOG: i32 = 8;";
    assert_eq!(integer_definitions(old).len(), 4);
    let manifest = read("guest/sdk/Cargo.toml");
    assert!(manifest.contains("lockstep-abi = { path = \"../../crates/lockstep-abi\""), "the SDK depends on the ABI crate");
}

#[test]
fn the_engine_grants_the_abi_crates_capability_bits() {
    assert_eq!(lockstep_core::security::Capabilities::all().bits(), lockstep_abi::grant::ALL);
    assert_eq!(lockstep_core::security::Capabilities::default().bits(), 0);
}

/// `lockstep sign` (bin/lockstep.js) warns about imports a manifest does not cover from its own
/// table of which capability each import needs: that table must name every import the engine
/// links (those of `lockstep-abi`), or signing an agent that uses one (`send_batch`,
/// `generate`, `random_fill`: all three were missing) warns that runtimes refuse it.
#[test]
fn the_sign_command_knows_every_host_import() {
    let abi = read("crates/lockstep-abi/src/lib.rs");
    let mut engine: Vec<String> = abi
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const IMPORT_"))
        .filter(|l| !l.starts_with("MODULE"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_string))
        .collect();
    engine.sort();
    let js = read("bin/lockstep.js");
    let table = |start: &str, end: &str| -> String {
        let from = js.find(start).unwrap_or_else(|| panic!("bin/lockstep.js has no `{start}`"));
        let rest = &js[from + start.len()..];
        rest[..rest.find(end).unwrap()].to_string()
    };
    // `const NEEDS = { name: …, … };` (one entry a line) and `const ALWAYS = new Set([…]);`
    let mut known: Vec<String> =
        table("const NEEDS = {", "};").lines().filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.trim().to_string())).filter(|k| !k.is_empty()).collect();
    known.extend(table("const ALWAYS = new Set([", "]);").split(',').map(|s| s.trim().trim_matches('\'').to_string()));
    known.sort();
    assert!(engine.len() >= 11, "{engine:?}");
    assert_eq!(known, engine, "bin/lockstep.js NEEDS and ALWAYS against lockstep-abi's IMPORT_* names");
}

/// The SDK writes its import names out (attributes cannot take constants) and checks each
/// against lockstep-abi at compile time: every `raw` import must be in that check (red team:
/// `send_plain` was not, so a rename in lockstep-abi would have left the SDK importing the old
/// name).
#[test]
fn every_sdk_raw_import_is_checked_against_the_abi_crate() {
    let sdk = read("guest/sdk/src/lib.rs");
    let raw = &sdk[sdk.find("pub mod raw {").unwrap()..];
    let raw = &raw[..raw.find("\n}\n").unwrap()];
    let names: Vec<&str> = raw.lines().filter_map(|l| l.trim().strip_prefix("pub fn ")).filter_map(|l| l.split('(').next()).collect();
    assert!(names.len() >= 12, "{names:?}");
    let unchecked: Vec<&&str> = names.iter().filter(|n| !sdk.contains(&format!(r#", "{n}"));"#))).collect();
    assert!(unchecked.is_empty(), "SDK raw imports not checked against lockstep-abi (`same(abi::IMPORT_…, \"…\")`): {unchecked:?}");
}
