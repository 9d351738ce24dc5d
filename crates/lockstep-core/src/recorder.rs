//! The recorder: the only writer of the replay log (docs/REPLAY.md). Records are encoded by
//! `replay_log` and written through [`LogSink`]s: memory ([`MemorySink`], `record: true`) and
//! the on-disk journal ([`JournalSink`], docs/JOURNAL.md), either or both. A record is encoded
//! once, into the first sink's buffer, and copied to the other. The runtime never touches log
//! bytes itself.

use std::collections::BTreeSet;

use crate::bus::AgentId;
use crate::error::{Digest, Result};
use crate::journal::JournalSink;
use crate::replay_log::{self, Record, SessionConfig};

/// Where the recorder's bytes go: an append-only byte stream of whole records.
pub(crate) trait LogSink: Send {
    /// Appends what `write` writes (whole framed records) at the end. The sink lends its own
    /// buffer, so a record is encoded once, in place (a busy session records every message).
    /// A sink that keeps nothing more (a cut memory log) may skip `write`; the journal, whose
    /// buffer the memory log is fed from, always calls it, failed or not.
    fn append(&mut self, write: &mut dyn FnMut(&mut Vec<u8>)) -> Appended;
    /// Tick `tick` is complete (its TickEnd, and its checkpoint if any, end at the current
    /// length; `hash` is its tick hash): the point a sink may cut back to, or sync up to.
    /// Returns the last tick known to be on stable storage (`None`: none, or not a disk sink);
    /// an error if the sink can no longer keep what it is given.
    fn tick_complete(&mut self, tick: u64, hash: Digest) -> Result<Option<u64>>;
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

    /// A copy of every byte written so far.
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut copy = Vec::with_capacity(self.log.len() + replay_log::END_RECORD_BYTES);
        copy.extend_from_slice(&self.log);
        copy
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

    fn tick_complete(&mut self, _tick: u64, _hash: Digest) -> Result<Option<u64>> {
        if !self.cut {
            self.last_tick_end = self.log.len();
        }
        Ok(None)
    }
}

/// Writes the session's records into its sinks, in the order they happen.
pub(crate) struct Recorder {
    /// The in-memory log (`record: true`), until `stop_recording` takes it.
    memory: Option<MemorySink>,
    /// The on-disk journal, for the runtime's life.
    journal: Option<JournalSink>,
    /// Modules already in the log (each is written once, before its first spawn).
    modules_written: BTreeSet<Digest>,
}

/// Appends one record to whichever sinks there are, encoding it once. Returns the memory
/// sink's verdict (a journal never cuts: its failures are sticky, see `JournalSink`).
fn append_to(memory: Option<&mut MemorySink>, journal: Option<&mut JournalSink>, write: &mut dyn FnMut(&mut Vec<u8>)) -> Appended {
    match (memory, journal) {
        (Some(m), None) => m.append(write),
        (None, Some(j)) => j.append(write),
        (Some(m), Some(j)) => {
            let mut appended = Appended::Written;
            j.append(&mut |buf| {
                let start = buf.len();
                write(buf);
                appended = m.append(&mut |log| log.extend_from_slice(&buf[start..]));
            });
            appended
        }
        (None, None) => Appended::Written,
    }
}

impl Recorder {
    /// A recorder with no sink yet.
    pub(crate) fn new() -> Self {
        Self { memory: None, journal: None, modules_written: BTreeSet::new() }
    }

    /// Starts the in-memory log: the header and the session's Config record, which count as a
    /// complete (empty) prefix. Returns `Cut` if even they do not fit.
    pub(crate) fn start_memory(&mut self, session: SessionConfig, limit_bytes: usize) -> Appended {
        let mut sink = MemorySink::new(limit_bytes);
        let config = Record::Config(session);
        let appended = sink.append(&mut |log| {
            replay_log::write_header(log);
            config.encode(log);
        });
        let _ = sink.tick_complete(0, Digest::default());
        self.memory = Some(sink);
        appended
    }

    /// The in-memory log of a session recovered from a journal: the journal's records so far
    /// (a valid log prefix ending at a complete tick), bounded like any memory log.
    pub(crate) fn start_memory_from(&mut self, prefix: Vec<u8>, limit_bytes: usize) -> Appended {
        let mut sink = MemorySink::new(limit_bytes);
        let mut prefix = Some(prefix);
        let appended = sink.append(&mut |log| {
            if let Some(p) = prefix.take() {
                *log = p;
            }
        });
        let _ = sink.tick_complete(0, Digest::default());
        self.memory = Some(sink);
        appended
    }

    /// Adds the on-disk journal (its header and Config record are already on disk).
    pub(crate) fn attach_journal(&mut self, journal: JournalSink) {
        self.journal = Some(journal);
    }

    /// Marks modules as already in the log (a recovered session's journal holds them).
    pub(crate) fn modules_already_written(&mut self, modules: impl IntoIterator<Item = Digest>) {
        self.modules_written.extend(modules);
    }

    /// Whether the in-memory log is being recorded.
    pub(crate) fn has_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// Whether no sink is left (the memory log was taken and there is no journal).
    pub(crate) fn is_empty(&self) -> bool {
        self.memory.is_none() && self.journal.is_none()
    }

    /// Why the journal cannot keep records any more, if it cannot (sticky).
    pub(crate) fn journal_error(&self) -> Option<crate::LockstepError> {
        self.journal.as_ref().and_then(|j| j.error())
    }

    /// Appends one record. Returns `Cut` when this write made the memory log cut itself.
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
        append_to(self.memory.as_mut(), self.journal.as_mut(), write)
    }

    /// Tick `tick` (hash `hash`) is complete in the log (after its TickEnd and any
    /// checkpoint). Returns the journal's durable tick; an error if the journal failed.
    pub(crate) fn tick_complete(&mut self, tick: u64, hash: Digest) -> Result<Option<u64>> {
        if let Some(m) = self.memory.as_mut() {
            m.tick_complete(tick, hash)?;
        }
        match self.journal.as_mut() {
            Some(j) => j.tick_complete(tick, hash),
            None => Ok(None),
        }
    }

    /// The journal's id, if there is a journal.
    pub(crate) fn journal_id(&self) -> Option<[u8; 16]> {
        self.journal.as_ref().map(JournalSink::id)
    }

    /// The journal, if there is one (its automatic snapshots).
    pub(crate) fn journal_mut(&mut self) -> Option<&mut JournalSink> {
        self.journal.as_mut()
    }

    /// Writes and syncs everything the journal holds up to the last complete tick; returns
    /// the durable tick (`None` without a journal, or before any tick).
    pub(crate) fn sync_journal(&mut self) -> Result<Option<u64>> {
        match self.journal.as_mut() {
            Some(j) => j.sync(),
            None => Ok(None),
        }
    }

    /// The journal's durable tick as last known, without syncing.
    pub(crate) fn durable_tick(&self) -> Option<u64> {
        self.journal.as_ref().and_then(|j| j.durable_tick())
    }

    /// A copy of the memory log so far, sealed with an End record as if recording stopped
    /// after `ticks` ticks with state hash `hash`; a cut log comes back as the prefix it is.
    /// `None` without a memory log.
    pub(crate) fn sealed_copy(&self, ticks: u64, hash: Digest) -> Option<Vec<u8>> {
        let m = self.memory.as_ref()?;
        let mut log = m.to_vec();
        if !m.cut {
            replay_log::seal(&mut log, ticks, hash);
        }
        Some(log)
    }

    /// Stops the in-memory recording: the whole memory log, sealed like `sealed_copy`. The
    /// journal, if any, goes on. `None` without a memory log.
    pub(crate) fn finish_memory(&mut self, ticks: u64, hash: Digest) -> Option<Vec<u8>> {
        let m = self.memory.take()?;
        let mut log = m.log;
        if !m.cut {
            replay_log::seal(&mut log, ticks, hash);
        }
        Some(log)
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

    fn mem(r: &Recorder) -> Vec<u8> {
        r.memory.as_ref().unwrap().to_vec()
    }

    #[test]
    fn memory_sink_cuts_back_to_the_last_complete_tick_once() {
        let mut r = Recorder::new();
        r.start_memory(session(), 200);
        let prefix = mem(&r);
        r.record(&Record::TickEnd { tick: 0, hash: Digest::default(), agents: Vec::new() });
        r.tick_complete(0, Digest::default()).unwrap();
        let one_tick = mem(&r);
        assert!(one_tick.len() > prefix.len() && one_tick.len() <= 200);
        assert_eq!(r.send(1, 1, 0, 0, &[0; 300]), Appended::Cut, "the write past the limit cuts");
        assert_eq!(mem(&r), one_tick, "cut back to the end of tick 0");
        assert_eq!(r.send(1, 1, 0, 0, &[0; 1]), Appended::Written, "reported once; nothing more is written");
        assert_eq!(r.finish_memory(2, Digest::default()), Some(one_tick), "a cut log is not sealed");
    }

    #[test]
    fn modules_are_written_once() {
        let mut r = Recorder::new();
        r.start_memory(session(), 1 << 20);
        let before = mem(&r).len();
        r.module_once(Digest([1; 32]), b"abc");
        let once = mem(&r).len();
        r.module_once(Digest([1; 32]), b"abc");
        assert!(once > before);
        assert_eq!(mem(&r).len(), once);
    }
}
