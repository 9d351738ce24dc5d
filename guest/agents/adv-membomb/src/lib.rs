//! Adversarial: grabs 1 MiB more memory every step and never lets go, until the cap.
use lockstep_sdk::{export_agent, Agent, Context};

#[derive(Default)]
struct MemBomb {
    hoard: Vec<Vec<u8>>,
}

impl Agent for MemBomb {
    fn step(&mut self, _ctx: &Context) {
        for _ in 0..4 {
            let block = vec![0xA5u8; 1 << 20];
            self.hoard.push(core::hint::black_box(block));
        }
    }
}

export_agent!(MemBomb);
