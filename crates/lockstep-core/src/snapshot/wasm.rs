//! What a snapshot needs to know about a module, found once when it is compiled.
//!
//! wasmtime exposes an instance's exported globals only, and Rust modules keep their
//! `__stack_pointer` unexported. So the module wasmtime compiles is the original with one more
//! export per mutable global (`__lockstep_global_N`, N its index): nothing else changes, the
//! code is the same, and the bytes that are hashed, recorded and signed stay the original's.
//! The deep hash skips these exports, so hashes are those of the module as written.
//!
//! A module that writes into its funcref tables (`table.set`, `table.grow`, `table.fill`,
//! `table.copy`, `table.init`) also gets an export per table (`__lockstep_table_N`) and per
//! function (`__lockstep_func_N`): a snapshot reads each table element, tells which function
//! it refers to by comparing its function reference with those of the exported functions
//! (`Func::to_raw`, the function's identity in its store), and stores the function's index; a
//! restore sets the same functions back.
//!
//! Some state cannot be read back through wasmtime at all: whether a passive data segment was
//! dropped (`data.drop`, seen by a later `memory.init`), what an `externref` table or a mutable
//! global holding a reference holds. A running agent of such a module is refused by
//! `snapshot()` with `E_SNAPSHOT_UNSUPPORTED` naming it and the reason (docs/SNAPSHOT.md). Rust
//! and C agents built for the SDK use none of them.

use std::collections::BTreeSet;

use wasm_encoder::Encode;

use crate::error::{LockstepError, Result};

/// The prefix of the exports added for mutable globals.
const GLOBAL_EXPORT_PREFIX: &str = "__lockstep_global_";
/// The prefixes of the exports added for the tables and functions of a module that writes
/// into its tables.
const TABLE_EXPORT_PREFIX: &str = "__lockstep_table_";
const FUNC_EXPORT_PREFIX: &str = "__lockstep_func_";

/// Wasm pages are 64 KiB: the unit of a snapshot's memory.
pub(crate) const PAGE_BYTES: usize = 65_536;
/// A page is stored as its non-zero 4 KiB chunks (`snapshot::page_address`).
pub(crate) const CHUNK_BYTES: usize = 4096;

impl ModuleState {
    /// Which chunks of page `page` a fresh instance may hold non-zero (bit i: chunk i).
    pub(crate) fn init_mask(&self, page: usize) -> u16 {
        let Some(chunks) = &self.init_chunks else { return u16::MAX };
        let per_page = (PAGE_BYTES / CHUNK_BYTES) as u32;
        let first = page as u32 * per_page;
        let at = chunks.partition_point(|&c| c < first);
        chunks[at..].iter().take_while(|&&c| c < first + per_page).fold(0u16, |m, &c| m | 1 << (c - first))
    }
}

/// A module's facts for snapshots.
#[derive(Debug, Default)]
pub(crate) struct ModuleState {
    /// Every mutable global the module defines, in index order: (global index, the name of the
    /// export added for it).
    pub(crate) globals: Vec<(u32, String)>,
    /// Why a running instance cannot be snapshotted, if it cannot.
    pub(crate) unsupported: Option<String>,
    /// The 4 KiB chunks of memory a fresh instance may hold non-zero (what its active data
    /// segments write), ascending; `None` when that cannot be told (a start function, a data
    /// segment at a computed offset): restore then checks every chunk the snapshot has as zero.
    pub(crate) init_chunks: Option<Vec<u32>>,
    /// A module that writes into its (funcref) tables: the export added for each table, by
    /// table index, and for each function, by function index. Empty otherwise (its tables are
    /// what its element segments made them, which a restore repeats).
    pub(crate) tables: Vec<String>,
    pub(crate) funcs: Vec<String>,
}

impl ModuleState {
    /// Whether `name` is an export this module gained for snapshots (the deep hash skips it).
    pub(crate) fn is_added_export(&self, name: &str) -> bool {
        (name.starts_with(GLOBAL_EXPORT_PREFIX) && self.globals.iter().any(|(_, n)| n == name))
            || (name.starts_with(TABLE_EXPORT_PREFIX) && self.tables.iter().any(|n| n == name))
            || (name.starts_with(FUNC_EXPORT_PREFIX) && self.funcs.iter().any(|n| n == name))
    }
}

fn malformed(e: impl std::fmt::Display) -> LockstepError {
    LockstepError::InvalidModule { reason: format!("malformed module: {e}") }
}

/// Analyses `bytes` (already admitted) and returns its facts and, when it has mutable
/// globals, the bytes to compile instead: the same module with an export for each.
pub(crate) fn prepare(bytes: &[u8]) -> Result<(ModuleState, Option<Vec<u8>>)> {
    let mut state = ModuleState::default();
    let mut export_names = BTreeSet::new();
    let mut global_index = 0u32;
    let mut mutable = Vec::new();
    let mut has_start = false;
    let mut computed_offset = false;
    let mut init_chunks = BTreeSet::new();
    let (mut data_drop, mut memory_init) = (None, None);
    let mut function = 0u32;
    let mut imported_functions = 0u32;
    let mut defined_functions = 0u32;
    // Each table: whether it holds function references.
    let mut tables: Vec<bool> = Vec::new();
    let mut table_op: Option<String> = None;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            wasmparser::Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    match import.map_err(malformed)?.ty {
                        wasmparser::TypeRef::Global(_) => global_index += 1,
                        wasmparser::TypeRef::Func(_) | wasmparser::TypeRef::FuncExact(_) => imported_functions += 1,
                        wasmparser::TypeRef::Table(t) => tables.push(t.element_type == wasmparser::RefType::FUNCREF),
                        _ => {}
                    }
                }
                function = imported_functions;
            }
            wasmparser::Payload::FunctionSection(reader) => defined_functions = reader.count(),
            wasmparser::Payload::TableSection(reader) => {
                for t in reader {
                    tables.push(t.map_err(malformed)?.ty.element_type == wasmparser::RefType::FUNCREF);
                }
            }
            wasmparser::Payload::GlobalSection(reader) => {
                for g in reader {
                    let g = g.map_err(malformed)?;
                    if g.ty.mutable {
                        if matches!(g.ty.content_type, wasmparser::ValType::Ref(_)) {
                            state.unsupported.get_or_insert_with(|| format!("mutable global {global_index} holds a reference, which a snapshot cannot store"));
                        }
                        mutable.push(global_index);
                    }
                    global_index += 1;
                }
            }
            wasmparser::Payload::ExportSection(reader) => {
                for e in reader {
                    export_names.insert(e.map_err(malformed)?.name.to_string());
                }
            }
            wasmparser::Payload::StartSection { .. } => has_start = true,
            wasmparser::Payload::DataSection(reader) => {
                for d in reader {
                    let d = d.map_err(malformed)?;
                    let wasmparser::DataKind::Active { offset_expr, .. } = d.kind else { continue };
                    let mut ops = offset_expr.get_operators_reader();
                    match (ops.read(), ops.read()) {
                        (Ok(wasmparser::Operator::I32Const { value }), Ok(wasmparser::Operator::End)) if !d.data.is_empty() => {
                            let start = value as u32 as u64;
                            let end = start + d.data.len() as u64;
                            let (first, last) = (start / CHUNK_BYTES as u64, (end - 1) / CHUNK_BYTES as u64);
                            init_chunks.extend((first..=last).map(|c| c as u32));
                        }
                        (Ok(wasmparser::Operator::I32Const { .. }), Ok(wasmparser::Operator::End)) => {}
                        _ => computed_offset = true,
                    }
                }
            }
            wasmparser::Payload::CodeSectionEntry(body) => {
                let mut ops = body.get_operators_reader().map_err(malformed)?;
                while !ops.eof() {
                    let what = match ops.read().map_err(malformed)? {
                        wasmparser::Operator::TableSet { .. } => "table.set",
                        wasmparser::Operator::TableGrow { .. } => "table.grow",
                        wasmparser::Operator::TableFill { .. } => "table.fill",
                        wasmparser::Operator::TableCopy { .. } => "table.copy",
                        wasmparser::Operator::TableInit { .. } => "table.init",
                        wasmparser::Operator::DataDrop { .. } => {
                            data_drop.get_or_insert(function);
                            continue;
                        }
                        wasmparser::Operator::MemoryInit { .. } => {
                            memory_init.get_or_insert(function);
                            continue;
                        }
                        _ => continue,
                    };
                    table_op.get_or_insert_with(|| format!("function {function} uses {what}"));
                }
                function += 1;
            }
            _ => {}
        }
    }
    if let (Some(drop_in), Some(init_in)) = (data_drop, memory_init) {
        state.unsupported.get_or_insert_with(|| {
            format!("function {drop_in} uses data.drop and function {init_in} memory.init: whether a passive data segment was dropped is state a snapshot cannot read")
        });
    }
    state.init_chunks = (!has_start && !computed_offset).then(|| init_chunks.into_iter().collect());
    // A prefix no export of the module uses.
    let free = |base: &str| {
        let mut prefix = base.to_string();
        while export_names.iter().any(|n| n.starts_with(&prefix)) {
            prefix.push('_');
        }
        prefix
    };
    let mut added: Vec<(String, u8, u32)> = Vec::new();
    // One export per mutable global.
    let prefix = free(GLOBAL_EXPORT_PREFIX);
    state.globals = mutable.iter().map(|&i| (i, format!("{prefix}{i}"))).collect();
    added.extend(state.globals.iter().map(|(i, n)| (n.clone(), 0x03, *i)));
    if let Some(op) = table_op {
        if let Some(t) = tables.iter().position(|&funcref| !funcref) {
            state.unsupported.get_or_insert_with(|| format!("{op}, and table {t} holds external references, which a snapshot cannot store"));
        } else {
            // One export per table and per function, to read and set the tables' elements.
            let (tp, fp) = (free(TABLE_EXPORT_PREFIX), free(FUNC_EXPORT_PREFIX));
            state.tables = (0..tables.len() as u32).map(|t| format!("{tp}{t}")).collect();
            state.funcs = (0..imported_functions + defined_functions).map(|f| format!("{fp}{f}")).collect();
            added.extend(state.tables.iter().enumerate().map(|(i, n)| (n.clone(), 0x01, i as u32)));
            added.extend(state.funcs.iter().enumerate().map(|(i, n)| (n.clone(), 0x00, i as u32)));
        }
    }
    if added.is_empty() {
        return Ok((state, None));
    }
    let compiled = with_exports(bytes, &added)?;
    Ok((state, Some(compiled)))
}

/// Reads an unsigned LEB128 u32 at `*pos`.
fn leb_u32(bytes: &[u8], pos: &mut usize) -> Result<u32> {
    let mut result = 0u64;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(*pos).ok_or_else(|| malformed("truncated section header"))?;
        *pos += 1;
        result |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return u32::try_from(result).map_err(|_| malformed("LEB128 value out of range"));
        }
    }
    Err(malformed("LEB128 value too long"))
}

/// `bytes` with `exports` (name, external kind, index) added to its export section (created
/// if it has none); every other section is copied as it is.
fn with_exports(bytes: &[u8], exports: &[(String, u8, u32)]) -> Result<Vec<u8>> {
    let mut module = wasm_encoder::Module::new();
    let added = |count: u32, entries: &[u8]| {
        let mut data = Vec::with_capacity(entries.len() + exports.len() * 24 + 5);
        (count + exports.len() as u32).encode(&mut data);
        data.extend_from_slice(entries);
        for (name, kind, index) in exports {
            name.as_str().encode(&mut data);
            data.push(*kind);
            index.encode(&mut data);
        }
        data
    };
    let mut pos = 8;
    let mut exported = false;
    while pos < bytes.len() {
        let id = bytes[pos];
        pos += 1;
        let size = leb_u32(bytes, &mut pos)? as usize;
        let data = bytes.get(pos..pos + size).ok_or_else(|| malformed("section runs past the end"))?;
        pos += size;
        // The export section goes after imports..globals (ids 1-6, and 13, tags) and before
        // start, elements, data count, code and data.
        if !exported && id != 0 && !matches!(id, 1..=7 | 13) {
            module.section(&wasm_encoder::RawSection { id: 7, data: &added(0, &[]) });
            exported = true;
        }
        if id == 7 {
            let mut at = 0;
            let count = leb_u32(data, &mut at)?;
            module.section(&wasm_encoder::RawSection { id: 7, data: &added(count, &data[at..]) });
            exported = true;
        } else {
            module.section(&wasm_encoder::RawSection { id, data });
        }
    }
    if !exported {
        module.section(&wasm_encoder::RawSection { id: 7, data: &added(0, &[]) });
    }
    Ok(module.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wat(src: &str) -> Vec<u8> {
        wat::parse_str(src).expect("valid wat")
    }

    #[test]
    fn mutable_globals_get_an_export_and_the_rest_is_unchanged() {
        let bytes = wat(r#"(module (memory (export "memory") 1) (global $sp (mut i32) (i32.const 8)) (global i64 (i64.const 1))
            (global (export "g") (mut f64) (f64.const 2)) (func (export "f") (result i32) global.get $sp)
            (data (i32.const 70000) "abc"))"#);
        let (state, compiled) = prepare(&bytes).unwrap();
        assert_eq!(state.globals, vec![(0, "__lockstep_global_0".into()), (2, "__lockstep_global_2".into())]);
        assert_eq!(state.unsupported, None);
        assert_eq!(state.init_chunks, Some(vec![17]), "70,000 is in the 18th 4 KiB chunk");
        let compiled = compiled.expect("re-encoded");
        let mut exports = Vec::new();
        for p in wasmparser::Parser::new(0).parse_all(&compiled) {
            if let wasmparser::Payload::ExportSection(r) = p.unwrap() {
                exports.extend(r.into_iter().map(|e| e.unwrap().name.to_string()));
            }
        }
        assert_eq!(exports, ["memory", "g", "f", "__lockstep_global_0", "__lockstep_global_2"]);
        wasmtime::Module::validate(&wasmtime::Engine::default(), &compiled).expect("still valid");
        assert!(state.is_added_export("__lockstep_global_0") && !state.is_added_export("g"));
    }

    #[test]
    fn a_taken_prefix_is_not_reused() {
        let bytes = wat(r#"(module (memory (export "memory") 1) (global (export "__lockstep_global_0") (mut i32) (i32.const 1)))"#);
        let (state, _) = prepare(&bytes).unwrap();
        assert_eq!(state.globals, vec![(0, "__lockstep_global__0".into())]);
        assert!(!state.is_added_export("__lockstep_global_0"));
    }

    #[test]
    fn table_mutation_gets_table_and_function_exports_and_the_rest_is_named() {
        let (s, compiled) = prepare(&wat(r#"(module (memory 1) (table 1 funcref) (func (drop (table.grow (ref.null func) (i32.const 1)))))"#)).unwrap();
        assert_eq!(s.unsupported, None);
        assert_eq!((s.tables, s.funcs), (vec!["__lockstep_table_0".to_string()], vec!["__lockstep_func_0".to_string()]));
        wasmtime::Module::validate(&wasmtime::Engine::default(), &compiled.expect("re-encoded")).expect("still valid");
        let (s, _) = prepare(&wat(r#"(module (memory 1) (table 1 externref) (func (drop (table.grow (ref.null extern) (i32.const 1)))))"#)).unwrap();
        assert!(s.unsupported.unwrap().contains("external references"));
        let (s, _) = prepare(&wat(r#"(module (memory 1) (data "x") (func (memory.init 0 (i32.const 0) (i32.const 0) (i32.const 1)) (data.drop 0)))"#)).unwrap();
        assert!(s.unsupported.unwrap().contains("data.drop"));
        let (s, _) = prepare(&wat(r#"(module (memory 1) (start 0) (func))"#)).unwrap();
        assert_eq!((s.unsupported, s.init_chunks), (None, None), "a start function may write anywhere");
    }
}
