//! ARCHITECTURE.md is checked against the code: its module table names exactly the modules in
//! `src/`, and every test its invariants and durability tables cite exists (so a claim cannot
//! lose its test, and a module cannot appear or vanish, without the page being updated).

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The rows of the markdown table whose header row starts with `| {first} |`.
fn table(doc: &str, first: &str) -> Vec<Vec<String>> {
    let header = format!("| {first} |");
    let start = doc.find(&header).unwrap_or_else(|| panic!("ARCHITECTURE.md has no table starting `{header}`"));
    doc[start..].lines().skip(2).take_while(|l| l.starts_with('|')).map(|l| l.trim_matches('|').split(" | ").map(|c| c.trim().to_string()).collect()).collect()
}

/// The `code spans` of a table cell.
fn spans(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// Every file under `dir` (recursively) with one of `exts`, read.
fn sources(dir: &Path, exts: &[&str], out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("target") && !path.ends_with("node_modules") {
                sources(&path, exts, out);
            }
        } else if path.extension().is_some_and(|e| exts.iter().any(|x| e == *x)) {
            out.push(std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
}

#[test]
fn the_module_table_names_exactly_the_modules_in_src() {
    let doc = std::fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap();
    let named: Vec<String> = table(&doc, "module").iter().flat_map(|row| spans(&row[0])).collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .flatten()
        .filter_map(|e| e.path().file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|m| m != "lib")
        .collect();
    modules.sort();
    for m in &modules {
        assert!(named.contains(m), "module `{m}` (src/{m}) is missing from ARCHITECTURE.md's module table");
    }
    for n in &named {
        let exists = modules.contains(n) || repo().join("crates").join(n).is_dir();
        assert!(exists, "ARCHITECTURE.md names `{n}`, which is neither a module of src/ nor a crate");
    }
}

#[test]
fn every_test_the_invariants_table_cites_exists() {
    let doc = std::fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap();
    let mut rows = table(&doc, "invariant");
    assert!(rows.len() >= 10, "the invariants table lost its rows");
    // "Where durability is enforced" cites its tests the same way.
    let durability = table(&doc, "guarantee");
    assert!(durability.len() >= 5, "the durability table lost its rows");
    rows.extend(durability);
    let mut code = Vec::new();
    for dir in ["crates", "examples"] {
        sources(&repo().join(dir), &["rs"], &mut code);
    }
    let mut js = Vec::new();
    sources(&repo().join("__test__"), &["mjs", "js"], &mut js);
    for row in rows {
        let cited = spans(row.get(2).unwrap_or_else(|| panic!("row without a `tested by` cell: {row:?}")));
        assert!(!cited.is_empty(), "the invariant `{}` cites no test", row[0]);
        for t in cited {
            let found = if t.contains('/') {
                repo().join("crates/lockstep-core").join(&t).exists() || repo().join(&t).exists()
            } else if t.contains(' ') {
                js.iter().any(|f| f.contains(&format!("test('{t}'")))
            } else {
                code.iter().any(|f| f.contains(&format!("fn {t}(")))
            };
            assert!(found, "ARCHITECTURE.md cites `{t}` for \"{}\", but no such test exists", row[0]);
        }
    }
}
