//! Shared helpers for the integration tests: the example agents built from guest/.
#![allow(dead_code)]

use lockstep_core::{Runtime, RuntimeConfig};

pub mod snapshot_forge;

/// Bytes of an example agent. `npm test` (scripts/build.mjs) builds them first; running
/// `cargo test` alone needs `cargo build --release` in guest/ before.
pub fn agent(name: &str) -> Vec<u8> {
    let path = format!("{}/../../guest/target/wasm32-unknown-unknown/release/{name}.wasm", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("example agent {path} is missing ({e}). Build the agents first: `npm run build` (or `cd guest && cargo build --release`)"))
}

pub fn runtime(workers: usize) -> Runtime {
    Runtime::new(RuntimeConfig { workers, max_agents: 1_024, fuel_per_call: 1_000_000, ..RuntimeConfig::development() }).expect("runtime")
}

pub fn wat(src: &str) -> Vec<u8> {
    wat::parse_str(src).expect("valid wat")
}

/// A minimal hand-written agent with every ABI export; `body` is spliced into the module.
pub fn wat_agent(version: u32, body: &str) -> Vec<u8> {
    wat(&format!(
        r#"(module
            (memory (export "memory") 2)
            (func (export "lockstep_abi_version") (result i32) i32.const {version})
            (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
            (func (export "agent_init") (result i32) i32.const 0)
            (func (export "agent_receive") (param i32) (result i32) i32.const 0)
            (func (export "agent_shutdown") (result i32) i32.const 0)
            {body})"#
    ))
}

/// Unsigned LEB128 (wasm's section sizes; also protobuf's varint), for hand-built bytes.
pub fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
