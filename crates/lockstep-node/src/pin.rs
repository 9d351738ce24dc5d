//! Keeps the addon loaded until the process ends, once any thread has loaded it.
//!
//! Why: Node closes (`dlclose`) an addon's handle when the environment that loaded it goes: a
//! worker thread that was the only one to `require('lockstep')`, once it exits. Nothing else
//! marked this library never-unload (glibc does so for C++ libraries with unique symbols, as
//! onnxruntime's binding; `LD_DEBUG=files` shows "activating NODELETE" for ours now), so it
//! could be unmapped while state it installed for the whole process lives on: wasmtime's
//! signal handlers (its trap handling), the allocator's thread-exit destructors and the
//! threads of its pools. An addon that stays mapped is loaded once; Node's later loads find it
//! and register it again for their environment, which napi-rs supports
//! (`__test__/binding.test.mjs`, "the addon loaded by worker threads alone ...", which also
//! caught mimalloc 3 crashing in that case: now mimalloc 2).
//!
//! The unsafe calls and their invariants:
//! - `dladdr` is given the address of a function of this library and only reads the loader's
//!   tables; the name it returns points into them and is used before this function returns;
//! - `dlopen` with `RTLD_NOLOAD` loads nothing: it finds the library already mapped (it is: this
//!   code runs in it) and, with `RTLD_NODELETE`, marks it never to be unmapped. Its handle is
//!   never closed.
//!
//! Not done on Windows (Node does not unload addons there) nor where dladdr fails: the addon
//! then works as before.

/// Runs as the library is loaded (a constructor), before Node registers the module.
#[napi_derive::module_init]
fn pin_the_addon() {
    #[cfg(unix)]
    pin();
}

#[cfg(unix)]
fn pin() {
    let mut info: libc::Dl_info =
        libc::Dl_info { dli_fname: std::ptr::null(), dli_fbase: std::ptr::null_mut(), dli_sname: std::ptr::null(), dli_saddr: std::ptr::null_mut() };
    let here = pin as fn() as *const libc::c_void;
    // SAFETY: see the module's invariants: `here` is a function of this library; `info` is
    // written by the loader.
    if unsafe { libc::dladdr(here, &mut info) } == 0 || info.dli_fname.is_null() {
        return;
    }
    // SAFETY: `dli_fname` is the loader's NUL-terminated path of this library, alive while it is
    // mapped (it is: this code runs from it). NOLOAD maps nothing new.
    let handle = unsafe { libc::dlopen(info.dli_fname, libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE) };
    // The handle is deliberately never closed (nor needed again).
    let _ = handle;
}
