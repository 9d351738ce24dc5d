//! The agent ABI, version 1: export names, import names, memory layouts and return codes.
//!
//! Defined in the `lockstep-abi` crate (`crates/lockstep-abi`), which the guest SDK uses too;
//! re-exported here so `lockstep_core::abi::X` names the same constant. `docs/ABI.md` is the
//! human-readable copy.

pub use lockstep_abi::*;
