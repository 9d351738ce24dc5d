//! Admission limits on a module's shape, checked before anything is compiled: what the ABI
//! forbids (docs/ABI.md "Module limits") is refused with a typed error naming the rule.
//!
//! Why here and not only in wasmtime's validator: the validator would refuse multi-memory and
//! memory64 too (they are switched off in `Sandbox::new`), but with a message about wasm
//! proposals rather than about our ABI, and it has no opinion on sizes. Every limit below
//! bounds host memory that one agent could otherwise take outside its memory cap.

use crate::abi;
use crate::error::{LockstepError, Result};
use crate::security::{MANIFEST_SECTION, SIGNATURE_SECTION};

fn refuse(reason: String) -> LockstepError {
    LockstepError::InvalidModule { reason }
}

/// Checks size, memories, tables, globals and custom sections. Walks the section headers
/// only (plus the import, memory, table and global sections, which are small).
pub fn check(bytes: &[u8]) -> Result<()> {
    if bytes.len() > abi::MAX_MODULE_BYTES {
        return Err(refuse(format!(
            "the module is {} bytes; the limit is {} bytes (docs/ABI.md, module limits). Build with --release and strip debug info",
            bytes.len(),
            abi::MAX_MODULE_BYTES
        )));
    }
    let (mut memories, mut tables, mut globals, mut functions) = (0u64, 0u64, 0u64, 0u64);
    let mut custom_bytes = 0usize;
    let bad = |e: wasmparser::BinaryReaderError| refuse(format!("malformed module: {e}"));
    let check_memory = |m: &wasmparser::MemoryType| -> Result<()> {
        if m.memory64 {
            return Err(refuse("the module declares a 64-bit memory (memory64); the lockstep ABI is wasm32 with one 32-bit memory".into()));
        }
        if m.shared {
            return Err(refuse("the module declares a shared memory; agents are single-threaded (docs/ABI.md)".into()));
        }
        Ok(())
    };
    let check_table = |t: &wasmparser::TableType| -> Result<()> {
        // A larger maximum is fine: growth past the limit is refused by the limiter at run time.
        if t.table64 || t.initial > abi::MAX_TABLE_ELEMENTS as u64 {
            return Err(refuse(format!(
                "the module's table starts at {} elements; the limit is {} (docs/ABI.md, module limits)",
                t.initial,
                abi::MAX_TABLE_ELEMENTS
            )));
        }
        Ok(())
    };
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.map_err(bad)? {
            wasmparser::Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    match import.map_err(bad)?.ty {
                        wasmparser::TypeRef::Memory(m) => {
                            check_memory(&m)?;
                            memories += 1;
                        }
                        wasmparser::TypeRef::Table(t) => {
                            check_table(&t)?;
                            tables += 1;
                        }
                        wasmparser::TypeRef::Global(_) => globals += 1,
                        wasmparser::TypeRef::Func(_) | wasmparser::TypeRef::FuncExact(_) => functions += 1,
                        _ => {}
                    }
                }
            }
            wasmparser::Payload::MemorySection(reader) => {
                for m in reader {
                    check_memory(&m.map_err(bad)?)?;
                    memories += 1;
                }
            }
            wasmparser::Payload::TableSection(reader) => {
                for t in reader {
                    check_table(&t.map_err(bad)?.ty)?;
                    tables += 1;
                }
            }
            wasmparser::Payload::GlobalSection(reader) => globals += u64::from(reader.count()),
            wasmparser::Payload::FunctionSection(reader) => functions += u64::from(reader.count()),
            wasmparser::Payload::CustomSection(c) if c.name() != MANIFEST_SECTION && c.name() != SIGNATURE_SECTION => {
                custom_bytes += c.data().len();
                if custom_bytes > abi::MAX_CUSTOM_SECTION_BYTES {
                    return Err(refuse(format!(
                        "the module's custom sections (names, debug info, ...) exceed {} bytes; strip them (e.g. `strip = true` in the Cargo profile, or wasm-opt --strip-debug)",
                        abi::MAX_CUSTOM_SECTION_BYTES
                    )));
                }
            }
            _ => {}
        }
    }
    if memories != 1 {
        return Err(refuse(format!("the module declares {memories} memories; the lockstep ABI allows exactly one, exported as `memory` (docs/ABI.md)")));
    }
    if tables > abi::MAX_TABLES as u64 {
        return Err(refuse(format!("the module declares {tables} tables; the limit is {} (docs/ABI.md, module limits)", abi::MAX_TABLES)));
    }
    if functions > abi::MAX_FUNCTIONS as u64 {
        return Err(refuse(format!("the module imports and defines {functions} functions; the limit is {} (docs/ABI.md, module limits)", abi::MAX_FUNCTIONS)));
    }
    if globals > abi::MAX_GLOBALS as u64 {
        return Err(refuse(format!("the module declares {globals} globals; the limit is {} (docs/ABI.md, module limits)", abi::MAX_GLOBALS)));
    }
    Ok(())
}
