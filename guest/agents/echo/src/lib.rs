//! Sends every message back to its sender with the same kind and payload; answers a request
//! from the host (`rt.request(echo, payload)`) with its body.
use lockstep_sdk::{export_agent, reply, send, Agent, Context, Message};

#[derive(Default)]
struct Echo;

impl Agent for Echo {
    fn step(&mut self, _ctx: &Context) {}

    fn receive(&mut self, msg: &Message<'_>) {
        match msg.request() {
            Some(request) => {
                let _ = reply(msg, request.body);
            }
            None => {
                let _ = send(msg.from, msg.kind, msg.payload);
            }
        }
    }
}

export_agent!(Echo);
