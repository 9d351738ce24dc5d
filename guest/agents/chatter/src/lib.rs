//! Talks with another agent through a language model (slot 0).
//!
//! - From the host, kind 1: `partner: u64` then a line of text. The agent answers that line.
//! - From another agent, kind 2: a line. The agent answers it (at most `MAX_TURNS` times).
//! - From the host, kind 4 (benchmarks): `max_tokens: u32` then a prompt. The agent generates
//!   exactly that (greedy, no stop) and reports to the host, kind 5: `tokens: u32`.
//!
//! To answer, it asks the model to continue the line (sampled at temperature 0.8 from its
//! seeded stream, at most 40 tokens, ending at a full stop or a new line) and collects the
//! tokens as they arrive, tick after tick. When the generation ends it sends the answer to its
//! partner (kind 2) and to the host (kind 3: `turn: u32` then the text).
extern crate alloc;

use alloc::vec::Vec;

use lockstep_sdk::generate::{Options, Prompt};
use lockstep_sdk::{export_agent, generate, send, Agent, Context, Generated, Message, HOST};

const MAX_TURNS: u32 = 4;
const ANSWER: u32 = 7;
const BENCH: u32 = 8;

#[derive(Default)]
struct Chatter {
    partner: u64,
    turns: u32,
    /// The line to answer at the next step, if any.
    pending: Option<Vec<u8>>,
    answer: Vec<u8>,
    busy: bool,
    bench_tokens: u32,
}

impl Agent for Chatter {
    fn step(&mut self, _ctx: &Context) {
        if self.busy || self.turns >= MAX_TURNS {
            return;
        }
        let Some(line) = self.pending.take() else { return };
        let prompt = core::str::from_utf8(&line).unwrap_or("Hello");
        let options = Options { max_tokens: 40, temperature: 0.8, top_k: 40, top_p: 0.95, stop: &[b".", b"\n"], seed: 0 };
        self.busy = generate(0, ANSWER, Prompt::Text(prompt), &options).is_ok();
        self.answer.clear();
    }

    fn receive(&mut self, msg: &Message<'_>) {
        if let Some(g) = Generated::parse(msg).filter(|g| g.tag == BENCH) {
            self.bench_tokens += g.len() as u32;
            if g.is_final() {
                let _ = send(HOST, 5, &self.bench_tokens.to_le_bytes());
                self.bench_tokens = 0;
            }
            return;
        }
        if let Some(g) = Generated::parse(msg) {
            self.answer.extend_from_slice(g.text);
            if g.is_final() {
                self.busy = false;
                self.turns += 1;
                let _ = send(self.partner, 2, &self.answer);
                let mut report = self.turns.to_le_bytes().to_vec();
                report.extend_from_slice(&self.answer);
                let _ = send(HOST, 3, &report);
            }
            return;
        }
        match msg.kind {
            1 if msg.from == HOST && msg.payload.len() >= 8 => {
                self.partner = u64::from_le_bytes(msg.payload[..8].try_into().unwrap_or([0; 8]));
                self.pending = Some(msg.payload[8..].to_vec());
            }
            2 if msg.from == self.partner => self.pending = Some(msg.payload.to_vec()),
            4 if msg.from == HOST && msg.payload.len() >= 4 => {
                let max_tokens = u32::from_le_bytes(msg.payload[..4].try_into().unwrap_or([0; 4]));
                let prompt = core::str::from_utf8(&msg.payload[4..]).unwrap_or("Hello");
                let _ = generate(0, BENCH, Prompt::Text(prompt), &Options { max_tokens, ..Options::default() });
            }
            _ => {}
        }
    }
}

export_agent!(Chatter);
