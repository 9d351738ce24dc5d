//! Adversarial: misbehaves where a message tells it to.
//! kind 1: panic in agent_receive        kind 2: panic in the next agent_step
//! kind 3: panic in agent_shutdown       kind 4: raw `unreachable` trap in agent_receive
//! kind 5: pass the host an out-of-bounds pointer (send)
//! kind 6: out-of-bounds memory read in the next agent_step (a trap without a panic message)
use lockstep_sdk::{export_agent, raw, Agent, Context, Message};

#[derive(Default)]
struct Trap {
    panic_in_step: bool,
    panic_in_shutdown: bool,
    div_in_step: bool,
}

impl Agent for Trap {
    fn step(&mut self, ctx: &Context) {
        if self.panic_in_step {
            panic!("asked to panic in step at tick {}", ctx.tick);
        }
        if self.div_in_step {
            let wild = core::hint::black_box(0xFFFF_FFF0usize) as *const u64;
            // SAFETY: none, on purpose: this adversarial agent reads past its memory to make
            // the runtime fault it. wasm defines the out-of-bounds load as a trap, so the
            // agent stops here and nothing reads the value.
            core::hint::black_box(unsafe { core::ptr::read_volatile(wild) });
        }
    }

    fn receive(&mut self, msg: &Message<'_>) {
        match msg.kind {
            1 => panic!("asked to panic in receive"),
            2 => self.panic_in_step = true,
            3 => self.panic_in_shutdown = true,
            4 => core::arch::wasm32::unreachable(),
            // SAFETY: the host bounds-checks the out-of-bounds pointer (the point of this
            // case) and faults the agent; it never reads or writes past the agent's memory.
            5 => unsafe {
                raw::send(0, 0, 0, 0x7fff_fff0, 4096);
            },
            6 => self.div_in_step = true,
            _ => {}
        }
    }

    fn shutdown(&mut self) {
        if self.panic_in_shutdown {
            panic!("asked to panic in shutdown");
        }
    }
}

export_agent!(Trap);
