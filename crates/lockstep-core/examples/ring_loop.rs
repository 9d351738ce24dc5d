//! Raw ring transport: push and drain records through a 1 MiB ring on one thread (`ring_loop [PAYLOAD_BYTES]`).
use lockstep_core::ring::{self, Consumer, OwnedRegion, Producer};
use std::ops::ControlFlow;
fn main() {
    let size: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let cap = 1 << 20;
    let region = OwnedRegion::new(cap);
    ring::init(&region.memory(), cap).unwrap();
    let mut p = Producer::new(region.memory()).unwrap();
    let mut c = Consumer::new(region.memory(), 1 << 16).unwrap();
    let payload = vec![7u8; size];
    let total = 20_000_000usize / (size / 64).max(1);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let (mut pushed, mut got) = (0, 0usize);
        while got < total {
            while pushed < total && p.try_push(ring::TYPE_MESSAGE, 1, 0, 1, &payload).is_ok() {
                pushed += 1;
            }
            c.drain(usize::MAX, |r| {
                got += r.payload.len() / size;
                ControlFlow::Continue(())
            })
            .unwrap();
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{size} B: {:.1} M records/s (best of 5)", total as f64 / best / 1e6);
}
