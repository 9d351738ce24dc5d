//! Gossip: every agent starts with a random value and, each tick, tells `FANOUT` random peers
//! the largest value it knows. When its knowledge changes it tells the host (kind 2, u64).
//! All agents converge on the global maximum in O(log n) ticks.
use lockstep_sdk::{export_agent, random_below, random_u64, send, Agent, Context, Message, HOST};

const FANOUT: u64 = 2;

#[derive(Default)]
struct Gossip {
    best: u64,
    reported: u64,
    heard: u64,
}

impl Agent for Gossip {
    fn init(&mut self) {
        self.best = random_u64() >> 1;
    }

    fn step(&mut self, ctx: &Context) {
        if self.best != self.reported {
            self.reported = self.best;
            let _ = send(HOST, 2, &self.best.to_le_bytes());
        }
        if ctx.max_agent_id < 2 {
            return;
        }
        for _ in 0..FANOUT {
            let peer = 1 + random_below(ctx.max_agent_id);
            if peer != ctx.agent_id {
                let _ = send(peer, 1, &self.best.to_le_bytes());
            }
        }
    }

    fn receive(&mut self, msg: &Message<'_>) {
        if msg.kind == 1 && msg.payload.len() == 8 {
            self.heard += 1;
            let v = u64::from_le_bytes(msg.payload.try_into().unwrap_or([0; 8]));
            self.best = self.best.max(v);
        }
    }
}

export_agent!(Gossip);
