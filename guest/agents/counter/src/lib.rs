//! Counts steps and received messages. A message of kind 1 from anyone is answered with
//! kind 2 carrying `steps` and `received` as two little-endian u64s.
use lockstep_sdk::{export_agent, send, Agent, Context, Message};

#[derive(Default)]
struct Counter {
    steps: u64,
    received: u64,
}

impl Agent for Counter {
    fn step(&mut self, _ctx: &Context) {
        self.steps += 1;
    }

    fn receive(&mut self, msg: &Message<'_>) {
        self.received += 1;
        if msg.kind == 1 {
            let mut reply = [0u8; 16];
            reply[..8].copy_from_slice(&self.steps.to_le_bytes());
            reply[8..].copy_from_slice(&self.received.to_le_bytes());
            let _ = send(msg.from, 2, &reply);
        }
    }
}

export_agent!(Counter);
