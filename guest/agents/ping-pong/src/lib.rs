//! Kind 0 from the host, payload `peer: u64, rounds: u64`: start a rally with `peer`.
//! Kind 1 `n: u64`: a ball; returned with n - 1 until 0, then kind 9 `received: u64` goes
//! to the host.
use lockstep_sdk::{export_agent, send, Agent, Context, Message, HOST};

#[derive(Default)]
struct PingPong {
    received: u64,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8]))).unwrap_or(0)
}

impl Agent for PingPong {
    fn step(&mut self, _ctx: &Context) {}

    fn receive(&mut self, msg: &Message<'_>) {
        match msg.kind {
            0 => {
                let (peer, rounds) = (u64_at(msg.payload, 0), u64_at(msg.payload, 8));
                let _ = send(peer, 1, &rounds.to_le_bytes());
            }
            1 => {
                self.received += 1;
                let n = u64_at(msg.payload, 0);
                if n > 0 {
                    let _ = send(msg.from, 1, &(n - 1).to_le_bytes());
                } else {
                    let _ = send(HOST, 9, &self.received.to_le_bytes());
                }
            }
            _ => {}
        }
    }
}

export_agent!(PingPong);
