//! The interrupt word of `openJournal(source, { interrupt })`: element 0 of an `Int32Array`
//! over a `SharedArrayBuffer`, which another thread sets (`Atomics.store`) to stop a long seek
//! between two ticks. The dashboard's time travel sets it when its server closes or its
//! process exits: a native replay cannot be stopped otherwise, and Node waits for a worker
//! thread's native call to return before the process can end.
//!
//! The only unsafe code of it is the load of that word. Its invariants:
//! - the word is the first element of a typed array whose napi reference this `InterruptWord`
//!   holds, so its memory stays allocated while the `InterruptWord` lives;
//! - its buffer is a `SharedArrayBuffer` (index.js refuses any other): it cannot be detached or
//!   moved (a growable one grows in place), so the address stays the word's;
//! - typed arrays keep elements aligned to their size: an `Int32Array` element is a valid
//!   `AtomicI32` (same size and alignment), and other threads only write it atomically;
//! - the [`Interrupt`] handed to the core must not outlive this `InterruptWord`: the cursor that
//!   holds it is declared (and so dropped) before the word in `NativeJournalCursor`.

use std::sync::atomic::{AtomicI32, Ordering};

use lockstep_core::journal::Interrupt;
use napi::bindgen_prelude::Int32Array;

use crate::error::{invalid_config, Result};

pub struct InterruptWord {
    array: Int32Array,
}

/// The word's address, as a number: what the core's interrupt closure (Send + Sync) captures.
#[derive(Clone, Copy)]
struct WordAt(usize);

impl WordAt {
    fn is_set(self) -> bool {
        // SAFETY: see the module's invariants: a live, aligned i32 of a SharedArrayBuffer that
        // other threads write only with atomic stores.
        unsafe { (*(self.0 as *const AtomicI32)).load(Ordering::Relaxed) != 0 }
    }
}

impl InterruptWord {
    pub fn new(array: Int32Array) -> Result<Self> {
        if array.is_empty() {
            return Err(invalid_config(
                "option interrupt must be an Int32Array of at least one element over a SharedArrayBuffer; got an empty one".to_string(),
            ));
        }
        Ok(Self { array })
    }

    /// The core's view of the word: interrupted while it is not 0.
    pub fn interrupt(&self) -> Interrupt {
        let at = WordAt(self.array.as_ptr() as usize);
        Interrupt::new(move || at.is_set())
    }
}
