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
use napi::bindgen_prelude::{FromNapiValue, Int32Array, TypeName, ValueType};
use napi::sys;

/// `openDir` / `openLog`'s third argument: checked as it crosses napi (an Int32Array of at least
/// one element whose buffer is a SharedArrayBuffer), so the invariants above hold for a caller
/// of the addon too, not only for index.js's.
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

/// napi's own argument error (index.js checks the option first, with E_INVALID_CONFIG).
fn refused(got: &str) -> napi::Error {
    napi::Error::new(napi::Status::InvalidArg, format!("option interrupt must be an Int32Array of at least one element over a SharedArrayBuffer; got {got}"))
}

impl FromNapiValue for InterruptWord {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        let mut is_typed_array = false;
        // SAFETY: `env` and `value` come from napi for this call (the trait's contract).
        if unsafe { sys::napi_is_typedarray(env, value, &mut is_typed_array) } != sys::Status::napi_ok || !is_typed_array {
            return Err(refused("another value"));
        }
        let (mut kind, mut length, mut data, mut buffer, mut offset) = (0, 0usize, std::ptr::null_mut(), std::ptr::null_mut(), 0usize);
        // SAFETY: as above; `value` is a typed array (checked).
        if unsafe { sys::napi_get_typedarray_info(env, value, &mut kind, &mut length, &mut data, &mut buffer, &mut offset) } != sys::Status::napi_ok {
            return Err(refused("a typed array napi cannot read"));
        }
        let mut plain = true;
        // SAFETY: `buffer` is the typed array's buffer, just read. napi_is_arraybuffer is false
        // for a SharedArrayBuffer (the only other buffer a typed array can have).
        if unsafe { sys::napi_is_arraybuffer(env, buffer, &mut plain) } != sys::Status::napi_ok || plain {
            return Err(refused("a typed array over an ArrayBuffer, which can be detached or resized"));
        }
        if kind != sys::TypedarrayType::int32_array || length == 0 {
            return Err(refused("another typed array, or an empty one"));
        }
        // SAFETY: as above; holds a reference to the array (so to its buffer) from here on.
        let array = unsafe { Int32Array::from_napi_value(env, value) }?;
        Ok(Self { array })
    }
}

impl TypeName for InterruptWord {
    fn type_name() -> &'static str {
        "Int32Array"
    }

    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl InterruptWord {
    /// The core's view of the word: interrupted while it is not 0.
    pub fn interrupt(&self) -> Interrupt {
        let at = WordAt(self.array.as_ptr() as usize);
        Interrupt::new(move || at.is_set())
    }
}
