//! Adversarial: never returns from agent_step. Fuel metering must preempt it.
use lockstep_sdk::{export_agent, Agent, Context};

#[derive(Default)]
struct Spin {
    n: u64,
}

impl Agent for Spin {
    fn step(&mut self, _ctx: &Context) {
        loop {
            self.n = core::hint::black_box(self.n.wrapping_add(1));
        }
    }
}

export_agent!(Spin);
