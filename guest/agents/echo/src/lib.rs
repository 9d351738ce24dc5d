//! Sends every message back to its sender with the same kind and payload.
use lockstep_sdk::{export_agent, send, Agent, Context, Message};

#[derive(Default)]
struct Echo;

impl Agent for Echo {
    fn step(&mut self, _ctx: &Context) {}

    fn receive(&mut self, msg: &Message<'_>) {
        let _ = send(msg.from, msg.kind, msg.payload);
    }
}

export_agent!(Echo);
