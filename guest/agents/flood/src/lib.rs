//! Benchmark agent for routing throughput. A kind-0 message from the host carries `fanout`
//! (u32); from then on every step sends `fanout` 64-byte messages to random peers.
use lockstep_sdk::{export_agent, random_below, send, Agent, Context, Message};

#[derive(Default)]
struct Flood {
    fanout: u32,
    received: u64,
}

impl Agent for Flood {
    fn step(&mut self, ctx: &Context) {
        let mut payload = [0u8; 64];
        payload[..8].copy_from_slice(&ctx.tick.to_le_bytes());
        for _ in 0..self.fanout {
            let _ = send(1 + random_below(ctx.max_agent_id), 1, &payload);
        }
    }

    fn receive(&mut self, msg: &Message<'_>) {
        if msg.kind == 0 && msg.payload.len() >= 4 {
            self.fanout = u32::from_le_bytes([msg.payload[0], msg.payload[1], msg.payload[2], msg.payload[3]]);
        } else {
            self.received += 1;
        }
    }
}

export_agent!(Flood);
