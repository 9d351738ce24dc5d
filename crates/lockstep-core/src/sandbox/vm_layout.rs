//! Where an instance's VMContext lies, read from wasmtime's own structures, only as a hint for
//! prefetching (one of the engine's small `unsafe` modules).
//!
//! Why: every call into an agent and every host call it makes touch its instance's VMContext
//! and the instance record just before it (the module's runtime info, read by each host call's
//! trampoline). With 10,000 agents those lines are out of the caches by the agent's next turn;
//! the tick loop asks for them a few agents ahead (`scheduler::TurnAddresses`), which needs
//! their address, and wasmtime's API does not give it. Measured in one binary with the hint
//! switched on and off tick by tick: a 10,000 × 16 flood tick −8%, 10,000 counters on one
//! worker −19% (BENCHMARKS.md, 2026-11-27, seventeenth session).
//!
//! Invariants (what makes the one read sound):
//! 1. `Func::to_raw` returns a pointer to the function's live `VMFuncRef`, owned by the store
//!    the caller borrows for the call. This is wasmtime's implementation, not its documented
//!    contract (which calls the pointer runtime-defined): read and checked in 48.0.8's source
//!    (`Func::vm_func_ref`: the `NonNull` the store keeps; for a function the instance
//!    defines, its slot in the VMContext). The workspace pins wasmtime with `=`, and an
//!    upgrade must check it again (the test below fails if the layout moved).
//! 2. The read stays inside that `VMFuncRef`: its field offset and size come from
//!    `wasmtime_environ::VMOffsets`' description of it for this host (`HostPtr`), the same
//!    crate version wasmtime is built from (the workspace pins both), and the read is skipped
//!    unless the field lies inside the size.
//! 3. The value read is only ever used as an address to prefetch: never dereferenced, so even
//!    a wrong one would cost only a useless hint. (A module that exports an imported host
//!    function as its step gets the host function's context there: wasted hints, nothing
//!    else.) The tests check that it is right: the address holds wasmtime's VMContext magic
//!    number, here and for agents on both memory allocators (`runtime::tests`).
//!
//! The read is skipped where `scheduler::prefetch` does nothing (targets other than x86-64).

use wasmtime::{AsContextMut, Func};
use wasmtime_environ::{HostPtr, PtrSize};

/// The address of the VMContext of the instance that defines `func`, or 0 if unknown.
pub(crate) fn vmctx_address(func: &Func, store: impl AsContextMut) -> usize {
    let func_ref = func.to_raw(store).cast::<u8>().cast_const();
    let layout = HostPtr.vm_func_ref();
    let offset = usize::from(layout.vmctx());
    if !cfg!(target_arch = "x86_64") || func_ref.is_null() || offset + std::mem::size_of::<usize>() > usize::from(layout.size()) {
        return 0;
    }
    // SAFETY: `func_ref` points to a live `VMFuncRef` (invariant 1) and the word at `offset`
    // lies inside it (invariant 2); unaligned, in case, as a plain word read.
    unsafe { func_ref.add(offset).cast::<usize>().read_unaligned() }
}

/// Whether `address` holds wasmtime's VMContext magic number (what the tests check the hint
/// against).
///
/// # Safety
/// `address` must be readable for 4 bytes: a hint from `vmctx_address` for an instance that
/// is alive.
#[cfg(test)]
pub(crate) unsafe fn holds_vmctx_magic(address: usize) -> bool {
    let at = address + usize::from(HostPtr.vmctx_magic());
    // SAFETY: readable, the caller's contract.
    unsafe { (at as *const u32).read_unaligned() == wasmtime_environ::VMCONTEXT_MAGIC }
}

#[cfg(test)]
mod tests {
    use wasmtime::{Engine, Instance, Module, Store};

    /// The hint is the instance's VMContext: wasmtime puts its magic number at the offset
    /// `VMOffsets` names, and the functions of one instance share it.
    #[test]
    fn the_vmctx_hint_points_at_the_instances_vmcontext() {
        let engine = Engine::default();
        let wasm = wat::parse_str(r#"(module (func (export "a")) (func (export "b")))"#).expect("wat");
        let module = Module::new(&engine, wasm).expect("module");
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &module, &[]).expect("instance");
        let a = instance.get_func(&mut store, "a").expect("a");
        let b = instance.get_func(&mut store, "b").expect("b");
        let vmctx = super::vmctx_address(&a, &mut store);
        assert_ne!(vmctx, 0);
        assert_eq!(super::vmctx_address(&b, &mut store), vmctx);
        // SAFETY: `vmctx` is the live instance's VMContext (what this test checks: were it
        // not, the magic number would not match), which begins with the 4-byte magic.
        assert!(unsafe { super::holds_vmctx_magic(vmctx) });
        let other = Instance::new(&mut store, &module, &[]).expect("instance");
        let c = other.get_func(&mut store, "a").expect("a");
        assert_ne!(super::vmctx_address(&c, &mut store), vmctx, "another instance, another VMContext");
    }
}
