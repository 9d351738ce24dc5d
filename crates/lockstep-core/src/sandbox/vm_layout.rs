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
//! 1. `Func::to_raw` returns null or a pointer to the function's live `VMFuncRef`, owned by
//!    the store the caller borrows for the read.
//! 2. The read stays inside that `VMFuncRef`: its field offset and size come from
//!    `wasmtime_environ::VMOffsets`' description of it for this host (`HostPtr`), the same
//!    crate version wasmtime is built from (the workspace pins both), and the read is skipped
//!    unless the field lies inside the size.
//! 3. The value read is only ever used as an address to prefetch: never dereferenced, so even
//!    a wrong one would cost only a useless hint. The test below checks that it is right: the
//!    address holds wasmtime's VMContext magic number.

use wasmtime::{AsContextMut, Func};
use wasmtime_environ::{HostPtr, PtrSize};

/// The address of the VMContext of the instance that defines `func`, or 0 if unknown.
pub(crate) fn vmctx_address(func: &Func, store: impl AsContextMut) -> usize {
    let func_ref = func.to_raw(store).cast::<u8>().cast_const();
    let layout = HostPtr.vm_func_ref();
    let offset = usize::from(layout.vmctx());
    if func_ref.is_null() || offset + std::mem::size_of::<usize>() > usize::from(layout.size()) {
        return 0;
    }
    // SAFETY: `func_ref` points to a live `VMFuncRef` (invariant 1) and the word at `offset`
    // lies inside it (invariant 2); unaligned, in case, as a plain word read.
    unsafe { func_ref.add(offset).cast::<usize>().read_unaligned() }
}

#[cfg(test)]
mod tests {
    use wasmtime::{Engine, Instance, Module, Store};
    use wasmtime_environ::{HostPtr, PtrSize, VMCONTEXT_MAGIC};

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
        let magic_at = vmctx + usize::from(HostPtr.vmctx_magic());
        // SAFETY: `vmctx` is the live instance's VMContext (what this test checks: were it
        // not, the magic number would not match), which begins with the 4-byte magic.
        let magic = unsafe { (magic_at as *const u32).read_unaligned() };
        assert_eq!(magic, VMCONTEXT_MAGIC);
        let other = Instance::new(&mut store, &module, &[]).expect("instance");
        let c = other.get_func(&mut store, "a").expect("a");
        assert_ne!(super::vmctx_address(&c, &mut store), vmctx, "another instance, another VMContext");
    }
}
