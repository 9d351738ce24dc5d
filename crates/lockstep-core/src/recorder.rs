//! The recorder: the only writer of the replay log (docs/REPLAY.md). Records are encoded by
//! `replay_log` and written through a [`LogSink`]: memory today ([`MemorySink`]); the on-disk
//! journal of durable sessions is the next sink. The runtime never touches log bytes itself.

use std::collections::BTreeSet;

use crate::bus::AgentId;
use crate::error::Digest;
use crate::replay_log::{self, Record, SessionConfig};

/// Where the recorder's bytes go: an append-only byte stream of whole records.
pub(crate) trait LogSink: Send {
    /// Appends what `write` writes (whole framed records) at the end. The sink lends its own
    /// buffer, so a record is encoded once, in place (a busy session records every message).
    fn append(&mut self, write: &mut dyn FnMut(&mut Vec<u8>)) -> Appended;
    /// A complete tick (its TickEnd, and its checkpoint if any) ends at the current length:
    /// the point a sink may cut back to, or sync up to.
    fn tick_complete(&mut self);
    /// A copy of every byte written so far.
    fn to_vec(&self) -> Vec<u8>;
    /// Every byte written so far, the sink consumed.
    fn into_vec(self: Box<Self>) -> Vec<u8>;
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Appended {
    /// Written.
    Written,
    /// The sink refused to grow: it cut itself back to the end of the last complete tick, and
    /// takes no more (the log replays as a prefix). Reported once, by the append that cut.
    Cut,
}

/// The in-memory log, bounded by `max_log_bytes`: past it, the log is cut back to the end of
/// the last complete tick, so what is kept is a clean, replayable prefix.
pub(crate) struct MemorySink {
    log: Vec<u8>,
    limit_bytes: usize,
    last_tick_end: usize,
    cut: bool,
}

impl MemorySink {
    pub(crate) fn new(limit_bytes: usize) -> Self {
        Self { log: Vec::new(), limit_bytes, last_tick_end: 0, cut: false }
    }
}

impl LogSink for MemorySink {
    fn append(&mut self, write: &mut dyn FnMut(&mut Vec<u8>)) -> Appended {
        if self.cut {
            return Appended::Written;
        }
        write(&mut self.log);
        if self.log.len() <= self.limit_bytes {
            return Appended::Written;
        }
        self.log.truncate(self.last_tick_end);
        self.log.shrink_to_fit();
        self.cut = true;
        Appended::Cut
    }

    fn tick_complete(&mut self) {
        if !self.cut {
            self.last_tick_end = self.log.len();
        }
    }

    fn to_vec(&self) -> Vec<u8> {
        let mut copy = Vec::with_capacity(self.log.len() + replay_log::END_RECORD_BYTES);
        copy.extend_from_slice(&self.log);
        copy
    }

    fn into_vec(self: Box<Self>) -> Vec<u8> {
        self.log
    }
}

/// Writes the session's records into a sink, in the order they happen.
pub(crate) struct Recorder {
    sink: Box<dyn LogSink>,
    /// Modules already in the log (each is written once, before its first spawn).
    modules_written: BTreeSet<Digest>,
    /// The sink cut the log: nothing more is written, and no End record seals it.
    cut: bool,
}

impl Recorder {
    /// Starts a log in `sink`: the header and the session's Config record, which count as a
    /// complete (empty) prefix.
    pub(crate) fn start(session: SessionConfig, mut sink: Box<dyn LogSink>) -> Self {
        let config = Record::Config(session);
        let appended = sink.append(&mut |log| {
            replay_log::write_header(log);
            config.encode(log);
        });
        sink.tick_complete();
        Self { sink, modules_written: BTreeSet::new(), cut: appended == Appended::Cut }
    }

    /// Appends one record. Returns `Cut` when this write made the sink cut the log.
    pub(crate) fn record(&mut self, record: &Record) -> Appended {
        self.append(&mut |log| record.encode(log))
    }

    /// A Send record from borrowed parts (the runtime keeps the payload for delivery).
    pub(crate) fn send(&mut self, tick: u64, to: AgentId, kind: u32, priority: i32, payload: &[u8]) -> Appended {
        self.append(&mut |log| replay_log::encode_send(log, tick, to, kind, priority, payload))
    }

    /// The Module record for `hash`, unless the log already has it.
    pub(crate) fn module_once(&mut self, hash: Digest, bytes: &[u8]) -> Appended {
        if !self.modules_written.insert(hash) {
            return Appended::Written;
        }
        self.append(&mut |log| replay_log::encode_module(log, &hash, bytes))
    }

    fn append(&mut self, write: &mut dyn FnMut(&mut Vec<u8>)) -> Appended {
        if self.cut {
            return Appended::Written;
        }
        let appended = self.sink.append(write);
        self.cut |= appended == Appended::Cut;
        appended
    }

    /// The current tick is complete in the log (after its TickEnd and any checkpoint).
    pub(crate) fn tick_complete(&mut self) {
        if !self.cut {
            self.sink.tick_complete();
        }
    }

    /// A copy of the log so far, sealed with an End record as if recording stopped after
    /// `ticks` ticks with state hash `hash`; a cut log comes back as the prefix it is.
    pub(crate) fn sealed_copy(&self, ticks: u64, hash: Digest) -> Vec<u8> {
        let mut log = self.sink.to_vec();
        if !self.cut {
            replay_log::seal(&mut log, ticks, hash);
        }
        log
    }

    /// Stops recording: the whole log, sealed like `sealed_copy`.
    pub(crate) fn finish(self, ticks: u64, hash: Digest) -> Vec<u8> {
        let mut log = self.sink.into_vec();
        if !self.cut {
            replay_log::seal(&mut log, ticks, hash);
        }
        log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SessionConfig {
        SessionConfig {
            seed: 1,
            fuel_per_call: 0,
            memory_limit_bytes: 1 << 16,
            max_agents: 1,
            deadline_ms: 1,
            checkpoint_interval_ticks: 0,
            trusted_keys: Vec::new(),
            dev_mode: true,
            policy_json: String::new(),
            resource_clamp: true,
        }
    }

    #[test]
    fn memory_sink_cuts_back_to_the_last_complete_tick_once() {
        let mut r = Recorder::start(session(), Box::new(MemorySink::new(200)));
        let prefix = r.sink.to_vec();
        r.record(&Record::TickEnd { tick: 0, hash: Digest::default(), agents: Vec::new() });
        r.tick_complete();
        let one_tick = r.sink.to_vec();
        assert!(one_tick.len() > prefix.len() && one_tick.len() <= 200);
        assert_eq!(r.send(1, 1, 0, 0, &[0; 300]), Appended::Cut, "the write past the limit cuts");
        assert_eq!(r.sink.to_vec(), one_tick, "cut back to the end of tick 0");
        assert_eq!(r.send(1, 1, 0, 0, &[0; 1]), Appended::Written, "reported once; nothing more is written");
        assert_eq!(r.finish(2, Digest::default()), one_tick, "a cut log is not sealed");
    }

    #[test]
    fn modules_are_written_once() {
        let mut r = Recorder::start(session(), Box::new(MemorySink::new(1 << 20)));
        let before = r.sink.to_vec().len();
        r.module_once(Digest([1; 32]), b"abc");
        let once = r.sink.to_vec().len();
        r.module_once(Digest([1; 32]), b"abc");
        assert!(once > before);
        assert_eq!(r.sink.to_vec().len(), once);
    }
}
