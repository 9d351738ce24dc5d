//! `replay()` itself never panics, never aborts and answers every hostile log with a typed
//! error, a divergence or an incomplete verdict: structurally valid logs (valid CRCs, valid
//! config) with hostile fields, honest session scripts (which must verify `ok && complete`)
//! and their mutations. The body is shared with the bounded, seeded run in `cargo test`
//! (crates/lockstep-core/tests/replay_hostile.rs), so a crash found here is a test case there.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/lockstep-core/tests/replay_fuzz/mod.rs"]
mod replay_fuzz;

static MODULES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    replay_fuzz::one_input(data, MODULES.get_or_init(replay_fuzz::hostile_modules));
});
