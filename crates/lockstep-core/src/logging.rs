//! Runtime logs through `tracing`, collected for the embedder.
//!
//! The engine logs with `tracing` (targets `lockstep::runtime`, `lockstep::agent`,
//! `lockstep::inference`, `lockstep::security`). `install()` adds a layer that keeps records at
//! or above a level (changeable at any time) in a bounded process-wide queue, which the JS side
//! drains into the sink the user configured (`setLogger`). A queue, not a callback: records can
//! come from worker threads, and JS functions may only run on their own thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, Once};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Most records kept between drains; older ones are dropped and counted.
pub const MAX_QUEUED_RECORDS: usize = 10_000;
/// Most bytes of messages kept between drains (older records are dropped and counted): a record
/// count alone let 10,000 ONNX Runtime errors quoting a model's 256 KiB node name hold 10 GB.
pub const MAX_QUEUED_BYTES: usize = 8 << 20;
/// A record's message is cut to this many bytes (at a character boundary), saying how much went.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// One `tracing` record kept for the embedder (see [`drain`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// 1 error, 2 warn, 3 info, 4 debug, 5 trace.
    pub level: u8,
    /// The `tracing` target, e.g. `lockstep::runtime`.
    pub target: String,
    /// The message, followed by the record's other fields as ` name=value` (all but `agent`
    /// and `tick`, which have fields of their own).
    pub message: String,
    /// The agent the record is about, when it names one (its `agent` field).
    pub agent: Option<u64>,
    /// The tick it happened in, when it says (its `tick` field).
    pub tick: Option<u64>,
}

/// The records and the bytes of their messages.
static QUEUE: Mutex<(VecDeque<LogRecord>, usize)> = Mutex::new((VecDeque::new(), 0));
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// 0 = off.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(0);
static INSTALL: Once = Once::new();

fn level_number(l: &Level) -> u8 {
    match *l {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// A level name (`off`, `error`, `warn`, `info`, `debug`, `trace`) as the number [`install`]
/// takes (0 = off, 1 error ... 5 trace); `None` for any other name.
pub fn parse_level(name: &str) -> Option<u8> {
    Some(match name {
        "off" => 0,
        "error" => 1,
        "warn" => 2,
        "info" => 3,
        "debug" => 4,
        "trace" => 5,
        _ => return None,
    })
}

#[derive(Default)]
struct MessageVisitor {
    message: String,
    agent: Option<u64>,
    tick: Option<u64>,
}

impl MessageVisitor {
    /// `agent` and `tick` given as integers become fields of the record.
    fn id_field(&mut self, field: &Field, value: u64) -> bool {
        match field.name() {
            "agent" => self.agent = Some(value),
            "tick" => self.tick = Some(value),
            _ => return false,
        }
        true
    }
}

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.message.push_str(&format!(" {}={value:?}", field.name()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.message.push_str(&format!(" {}={value}", field.name()));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if !self.id_field(field, value) {
            self.record_debug(field, &value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if value < 0 || !self.id_field(field, value as u64) {
            self.record_debug(field, &value);
        }
    }
}

struct QueueLayer;

impl<S: Subscriber> Layer<S> for QueueLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = level_number(event.metadata().level());
        if level > MAX_LEVEL.load(Ordering::Relaxed) || !event.metadata().target().starts_with("lockstep") {
            return;
        }
        let mut v = MessageVisitor::default();
        event.record(&mut v);
        let message = cut(v.message);
        let mut q = QUEUE.lock().unwrap_or_else(|p| p.into_inner());
        let (records, bytes) = &mut *q;
        while !records.is_empty() && (records.len() >= MAX_QUEUED_RECORDS || *bytes + message.len() > MAX_QUEUED_BYTES) {
            if let Some(old) = records.pop_front() {
                *bytes -= old.message.len();
            }
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        *bytes += message.len();
        records.push_back(LogRecord { level, target: event.metadata().target().to_string(), message, agent: v.agent, tick: v.tick });
    }
}

/// `message`, cut to `MAX_MESSAGE_BYTES` at a character boundary, saying how many bytes went.
fn cut(mut message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let gone = message.len() - end;
    message.truncate(end);
    message.push_str(&format!("… ({gone} more bytes cut)"));
    message
}

/// Installs the collecting subscriber (once per process; if the host already installed a
/// global subscriber, ours is not installed and `install` returns false) and sets the level.
pub fn install(max_level: u8) -> bool {
    MAX_LEVEL.store(max_level, Ordering::Relaxed);
    let mut installed = true;
    INSTALL.call_once(|| {
        installed = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(QueueLayer)).is_ok();
    });
    installed
}

/// Takes the queued records, oldest first, and how many were dropped since the last drain.
pub fn drain() -> (Vec<LogRecord>, u64) {
    let mut q = QUEUE.lock().unwrap_or_else(|p| p.into_inner());
    q.1 = 0;
    let records = q.0.drain(..).collect();
    (records, DROPPED.swap(0, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue and the level are the process's: the tests take turns.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn records_at_or_above_the_level_are_queued() {
        let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        install(2);
        tracing::warn!(target: "lockstep::runtime", agent = 7, tick = 3u64, kind = "odd", "something odd");
        tracing::info!(target: "lockstep::runtime", "too chatty for warn");
        tracing::error!(target: "elsewhere", "not ours");
        let (records, _) = drain();
        let ours: Vec<_> = records.iter().filter(|r| r.message.contains("odd") || r.message.contains("chatty")).collect();
        assert_eq!(ours.len(), 1);
        assert_eq!(ours[0].level, 2);
        assert_eq!(ours[0].message, "something odd kind=odd");
        assert_eq!((ours[0].agent, ours[0].tick), (Some(7), Some(3)));
        install(0);
    }

    #[test]
    fn long_messages_are_cut_and_the_queue_holds_a_bounded_number_of_bytes() {
        let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        install(1);
        let _ = drain();
        let long = "é".repeat(100_000); // 200,000 bytes, two per character
        tracing::error!(target: "lockstep::inference", "{long}");
        let (records, _) = drain();
        let mine = records.iter().find(|r| r.message.starts_with('é')).expect("queued");
        assert!(mine.message.len() <= MAX_MESSAGE_BYTES + 40, "{}", mine.message.len());
        assert!(mine.message.ends_with("more bytes cut)"), "{}", &mine.message[mine.message.len() - 40..]);
        // 5,000 records of ~4 KiB: the bytes bound (8 MiB) comes before the count (10,000).
        for _ in 0..5_000 {
            tracing::error!(target: "lockstep::inference", "{long}");
        }
        let (records, dropped) = drain();
        let bytes: usize = records.iter().map(|r| r.message.len()).sum();
        assert!(bytes <= MAX_QUEUED_BYTES, "{bytes}");
        assert!(dropped > 0 && records.len() < 5_000, "{} kept, {dropped} dropped", records.len());
        install(0);
    }
}
