//! Time travel in the binding (docs/JOURNAL.md, "Time travel"): `NativeJournalCursor`, the
//! core's `JournalCursor` behind `openJournal()` in index.js, and `fork` into a runtime.

use std::path::Path;

use lockstep_core::{self as core, journal as j};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::convert::{self, id_arg, id_js, keys_arg, AgentInfo, AgentMessage, DeepHash, RuntimeOptions};
use crate::error::{invalid_arg, invalid_config, to_napi, Result};
use crate::interrupt_word::InterruptWord;
use crate::NativeRuntime;

/// Options of `openJournal(source, options)`; index.js checks them first.
#[napi(object)]
#[derive(Default)]
pub struct CursorOptions {
    pub workers: Option<f64>,
    /// Hex public keys the caller trusts (intersected with the session's).
    pub trusted_keys: Option<Vec<String>>,
    /// Admit unsigned modules, if the session was in devMode too.
    pub dev_mode: Option<bool>,
    /// Trust the session's own settings (its trusted keys and devMode) instead: only for
    /// journals this program wrote (the dashboard of a runtime over its own journal).
    pub trust_journal: Option<bool>,
    /// For a log that starts from a snapshot: that snapshot's bytes.
    pub snapshot: Option<Uint8Array>,
    /// Keep a snapshot in memory every this many ticks while replaying (0: never; 1000).
    pub snapshot_interval_ticks: Option<f64>,
}

/// Where a forked session comes from.
#[napi(object)]
pub struct LineageInfo {
    /// The parent journal's id (hex), null when the fork was made from a log or a snapshot.
    pub journal: Option<String>,
    pub tick: i64,
    pub hash: String,
}

/// What one `seek` did.
#[napi(object)]
pub struct SeekReport {
    pub tick: i64,
    pub ticks_replayed: i64,
    /// The snapshot it restored first (null: it went on from where it was).
    pub from_snapshot: Option<i64>,
}

/// What one agent received and sent in one tick.
#[napi(object)]
pub struct AgentTickMessages {
    pub agent: f64,
    pub received: Vec<AgentMessage>,
    pub sent: Vec<AgentMessage>,
}

fn hex16(id: [u8; 16]) -> String {
    core::security::hex(&id)
}

/// A read-only cursor over a recorded session.
#[napi]
pub struct NativeJournalCursor {
    /// `None` once closed: every method then throws E_CLOSED.
    inner: Option<j::JournalCursor>,
    /// The interrupt word `inner` reads. Declared after `inner`, so dropped after it.
    _interrupt: Option<InterruptWord>,
}

impl NativeJournalCursor {
    fn c(&self) -> Result<&j::JournalCursor> {
        self.inner.as_ref().ok_or_else(|| to_napi(core::LockstepError::Closed))
    }

    fn c_mut(&mut self) -> Result<&mut j::JournalCursor> {
        self.inner.as_mut().ok_or_else(|| to_napi(core::LockstepError::Closed))
    }
}

/// The core's options, reading `word` (to be kept as long as the cursor).
fn core_options(o: CursorOptions, word: Option<&InterruptWord>) -> Result<j::CursorOptions> {
    let d = j::CursorOptions::default();
    let uint = |name, v, min, max| convert::opt_uint(name, v, min, max).map_err(invalid_config);
    Ok(j::CursorOptions {
        workers: uint("workers", o.workers, 1, 256)?.map_or(d.workers, |w| w as usize),
        trust: match o.trust_journal {
            Some(true) => None,
            _ => Some(core::ReplayTrust {
                trusted_keys: keys_arg("options.trustedKeys", o.trusted_keys.as_deref().unwrap_or_default())?,
                dev_mode: o.dev_mode.unwrap_or(false),
            }),
        },
        snapshot: o.snapshot.map(|s| s.to_vec()),
        snapshot_interval_ticks: uint("snapshotIntervalTicks", o.snapshot_interval_ticks, 0, convert::MAX_SAFE)?.unwrap_or(d.snapshot_interval_ticks),
        interrupt: word.map(InterruptWord::interrupt),
    })
}

fn tick_arg(name: &str, t: f64) -> Result<u64> {
    convert::int_in(t, 0.0, convert::MAX_SAFE as f64)
        .map(|t| t as u64)
        .ok_or_else(|| invalid_arg(name, format!("a tick number (a non-negative integer), got {t}")))
}

#[napi]
impl NativeJournalCursor {
    /// A cursor over the journal in `dir` (read only; no lock taken). `interrupt`: while its
    /// first element is not 0, a seek stops between ticks with E_INTERRUPTED
    /// (crate::interrupt_word).
    #[napi(factory, catch_unwind)]
    pub fn open_dir(dir: String, options: Option<CursorOptions>, interrupt: Option<InterruptWord>) -> Result<Self> {
        let o = core_options(options.unwrap_or_default(), interrupt.as_ref())?;
        Ok(Self { inner: Some(j::JournalCursor::open_dir(Path::new(&dir), o).map_err(to_napi)?), _interrupt: interrupt })
    }

    /// A cursor over a replay log's bytes (`interrupt` as `openDir`'s).
    #[napi(factory, catch_unwind)]
    pub fn open_log(log: Uint8Array, options: Option<CursorOptions>, interrupt: Option<InterruptWord>) -> Result<Self> {
        let o = core_options(options.unwrap_or_default(), interrupt.as_ref())?;
        Ok(Self { inner: Some(j::JournalCursor::open_log(log.to_vec(), o).map_err(to_napi)?), _interrupt: interrupt })
    }

    /// Frees the cursor's session state and snapshot cache now instead of at garbage
    /// collection (hundreds of MB for a large session). Idempotent; every other method then
    /// throws E_CLOSED.
    #[napi(catch_unwind)]
    pub fn close(&mut self) {
        self.inner = None;
    }

    #[napi(getter, catch_unwind)]
    pub fn closed(&self) -> bool {
        self.inner.is_none()
    }

    #[napi(getter, catch_unwind)]
    pub fn tick(&self) -> Result<i64> {
        Ok(self.c()?.tick() as i64)
    }

    #[napi(getter, catch_unwind)]
    pub fn first_tick(&self) -> Result<i64> {
        Ok(self.c()?.first_tick() as i64)
    }

    #[napi(getter, catch_unwind)]
    pub fn end_tick(&self) -> Result<i64> {
        Ok(self.c()?.end_tick() as i64)
    }

    #[napi(getter, catch_unwind)]
    pub fn id(&self) -> Result<Option<String>> {
        Ok(self.c()?.id().map(hex16))
    }

    #[napi(getter, catch_unwind)]
    pub fn lineage(&self) -> Result<Option<LineageInfo>> {
        Ok(self.c()?.lineage().map(|l| LineageInfo { journal: l.journal.map(hex16), tick: l.tick as i64, hash: l.hash.to_hex() }))
    }

    #[napi(catch_unwind)]
    pub fn snapshot_ticks(&self) -> Result<Vec<i64>> {
        Ok(self.c()?.snapshot_ticks().into_iter().map(|t| t as i64).collect())
    }

    #[napi(catch_unwind)]
    pub fn skipped_snapshots(&self) -> Result<Vec<crate::journal::SnapshotProblem>> {
        Ok(self
            .c()?
            .skipped_snapshots()
            .iter()
            .map(|s| crate::journal::SnapshotProblem { file: s.file.display().to_string(), tick: s.tick as i64, problem: Some(s.reason.clone()) })
            .collect())
    }

    #[napi(catch_unwind)]
    pub fn seek(&mut self, tick: f64) -> Result<SeekReport> {
        let tick = tick_arg("tick", tick)?;
        let r = self.c_mut()?.seek(tick).map_err(to_napi)?;
        Ok(SeekReport { tick: r.tick as i64, ticks_replayed: r.ticks_replayed as i64, from_snapshot: r.from_snapshot.map(|t| t as i64) })
    }

    #[napi(catch_unwind, js_name = "next")]
    pub fn next_tick(&mut self) -> Result<bool> {
        self.c_mut()?.next_tick().map_err(to_napi)
    }

    #[napi(catch_unwind, js_name = "prev")]
    pub fn prev_tick(&mut self) -> Result<bool> {
        self.c_mut()?.prev_tick().map_err(to_napi)
    }

    #[napi(catch_unwind)]
    pub fn inspect(&self, id: f64) -> Result<AgentInfo> {
        let id = id_arg("id", id)?;
        Ok(self.c()?.runtime().inspect(id).map_err(to_napi)?.into())
    }

    #[napi(catch_unwind)]
    pub fn agents(&self) -> Result<Vec<f64>> {
        Ok(self.c()?.runtime().agent_ids().into_iter().map(id_js).collect())
    }

    #[napi(catch_unwind)]
    pub fn state_hash(&self) -> Result<String> {
        Ok(self.c()?.runtime().state_hash().to_hex())
    }

    #[napi(catch_unwind)]
    pub fn deep_hash(&mut self) -> Result<DeepHash> {
        let d = self.c_mut()?.deep_hash().map_err(to_napi)?;
        Ok(DeepHash { tick: d.tick as i64, hash: d.hash.to_hex() })
    }

    #[napi(catch_unwind)]
    pub fn read_memory(&self, id: f64, offset: f64, length: f64) -> Result<Buffer> {
        let offset = tick_arg("offset", offset).map_err(|_| invalid_arg("offset", format!("a byte offset (a non-negative integer), got {offset}")))?;
        let length = tick_arg("length", length).map_err(|_| invalid_arg("length", format!("a byte count (a non-negative integer), got {length}")))?;
        let id = id_arg("id", id)?;
        Ok(self.c()?.read_memory(id, offset, length).map_err(to_napi)?.into())
    }

    #[napi(catch_unwind)]
    pub fn messages_at(&mut self, tick: f64) -> Result<Vec<AgentTickMessages>> {
        let tick = tick_arg("tick", tick)?;
        let agents = self.c_mut()?.messages_at(tick).map_err(to_napi)?;
        Ok(agents
            .into_iter()
            .map(|a| AgentTickMessages {
                agent: id_js(a.agent),
                received: a.received.into_iter().map(AgentMessage::from).collect(),
                sent: a.sent.into_iter().map(AgentMessage::from).collect(),
            })
            .collect())
    }

    /// A live runtime continuing from the cursor's tick (options as `Runtime.restore`'s,
    /// `journal` included: its Journal record names this session as the parent).
    #[napi(catch_unwind)]
    pub fn fork(&mut self, options: Option<RuntimeOptions>) -> Result<NativeRuntime> {
        let mut options = options.unwrap_or_default();
        let inference_options = options.inference.take().unwrap_or_default();
        convert::engine_options(&inference_options)?;
        let restore = convert::restore_options_from(options, None)?;
        let rt = self.c_mut()?.fork(restore).map_err(to_napi)?;
        Ok(NativeRuntime::wrap(rt, inference_options, None))
    }
}
