//! Adversarial: panics in agent_init, before it ever steps.
use lockstep_sdk::{export_agent, Agent, Context};

#[derive(Default)]
struct PanicInit;

impl Agent for PanicInit {
    fn init(&mut self) {
        panic!("refusing to start");
    }

    fn step(&mut self, _ctx: &Context) {}
}

export_agent!(PanicInit);
