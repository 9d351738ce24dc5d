//! The limits ARCHITECTURE.md ("Limits") and docs/ABI.md ("Module limits", budgets) state are
//! the ones the code enforces: change a constant without the docs and this fails. What agents
//! see comes from the ABI crate (`lockstep-abi`), the host side from `limits`.

use lockstep_abi as abi;
use lockstep_core::limits::*;
use lockstep_core::RuntimeConfig;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// 1048576 → "1,048,576".
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(n: usize) -> String {
    if n >= 1 << 30 {
        format!("{} GiB", n >> 30)
    } else {
        format!("{} MiB", n >> 20)
    }
}

fn assert_says(doc: &str, name: &str, text: &str) {
    assert!(doc.contains(text), "{name}: the docs should say \"{text}\"");
}

#[test]
fn the_limits_in_architecture_md_are_the_enforced_ones() {
    let doc = read("ARCHITECTURE.md");
    let row = |messages: usize, bytes: usize| format!("{}, {}", thousands(messages), mib(bytes));
    assert_says(&doc, "pending", &format!("{} messages, {}", thousands(MAX_PENDING_MESSAGES), mib(MAX_PENDING_BYTES)));
    assert_says(&doc, "host messages", &row(MAX_HOST_MESSAGES, MAX_HOST_MESSAGE_BYTES));
    assert_says(&doc, "dead letters", &row(MAX_DEAD_LETTERS, MAX_DEAD_LETTER_BYTES));
    assert_says(&doc, "backlog", &format!("{} records, {}", thousands(MAX_OUTBOUND_BACKLOG_RECORDS), mib(MAX_OUTBOUND_BACKLOG_BYTES)));
    assert_says(&doc, "inbox", &format!("{} messages, {}", thousands(abi::MAX_INBOX_MESSAGES), mib(abi::MAX_INBOX_BYTES)));
    assert_says(&doc, "outbox", &format!("{} and {} of payload", thousands(abi::MAX_OUTBOX_PER_TICK), mib(abi::MAX_OUTBOX_BYTES_PER_TICK)));
    assert_says(&doc, "ring records", &thousands(MAX_RING_RECORDS_PER_TICK));
    assert_says(&doc, "input arena", &format!("keeps between ticks | {} |", mib(MAX_RETAINED_INPUT_BYTES)));
    assert_says(&doc, "mailbox arena", &format!("keeps between ticks (inbox, outbox) | {} KiB |", MAX_RETAINED_MAILBOX_BYTES >> 10));
    assert_says(&doc, "agent ids", &thousands(MAX_AGENT_IDS));
    assert_says(&doc, "sliced agents", &format!("each holds a fiber stack for its life) | {} |", thousands(MAX_SLICED_AGENTS)));
    assert_says(&doc, "modules / priorities", &format!("{} / {}", thousands(MAX_MODULES), MAX_PHASES));
    assert_says(&doc, "edges", &format!("| edges of the workflow graph (`connect`, `spawn(..., {{ after }})`) | {} ", thousands(MAX_EDGES)));
    assert_says(&doc, "inference", &format!("{}, {} of input", abi::MAX_INFER_REQUESTS_PER_TICK, mib(abi::MAX_INFER_BYTES_PER_TICK)));
    assert_says(&doc, "log lines", &format!("{} per call, {} per tick", abi::MAX_LOG_LINES_PER_CALL, thousands(abi::MAX_LOG_LINES_PER_TICK)));
    assert_says(&doc, "maxLogBytes", &format!("`maxLogBytes` ({})", mib(RuntimeConfig::default().max_log_bytes)));
    use lockstep_core::logging::{MAX_MESSAGE_BYTES, MAX_QUEUED_BYTES, MAX_QUEUED_RECORDS};
    assert_says(
        &doc,
        "runtime log queue",
        &format!("holds {} records, {}, each message cut at {} bytes", thousands(MAX_QUEUED_RECORDS), mib(MAX_QUEUED_BYTES), thousands(MAX_MESSAGE_BYTES)),
    );
}

#[test]
fn the_module_limits_in_abi_md_are_the_enforced_ones() {
    let doc = read("docs/ABI.md");
    assert_says(&doc, "module size", &format!("| module size | {} |", mib(abi::MAX_MODULE_BYTES)));
    assert_says(&doc, "custom sections", &format!("| {} in all |", mib(abi::MAX_CUSTOM_SECTION_BYTES)));
    assert_says(&doc, "tables", &format!("at most {}, starting at ≤ {} elements", abi::MAX_TABLES, thousands(abi::MAX_TABLE_ELEMENTS)));
    assert_says(&doc, "globals", &format!("| globals | at most {} |", thousands(abi::MAX_GLOBALS)));
    assert_says(&doc, "functions", &format!("at most {}", thousands(abi::MAX_FUNCTIONS)));
    assert_says(&doc, "budgets", &format!("{} messages and {} of payload", thousands(abi::MAX_OUTBOX_PER_TICK), mib(abi::MAX_OUTBOX_BYTES_PER_TICK)));
    assert_says(&doc, "fuel per tick", &format!("{} × `fuelPerCall`", abi::FUEL_CALL_BUDGETS_PER_TICK));
}

#[test]
fn the_capability_bits_in_security_md_are_the_abi_crates() {
    let doc = read("docs/SECURITY.md");
    let g = |bit: i32, name: &str| format!("{bit} {name}");
    let bits = [
        g(abi::grant::SEND_HOST, "send-to-host"),
        g(abi::grant::SEND_AGENTS, "send-to-agents"),
        g(abi::grant::INFER, "infer"),
        g(abi::grant::LOG, "log"),
        g(abi::grant::RANDOM, "random"),
        g(abi::grant::CLOCK, "clock"),
    ];
    assert_says(&doc, "granted bits", &format!("({})", bits.join(", ")));
}
