//! Holds a sample of 4 features (from its seeded random stream), asks model slot 0 to
//! classify it, and reports each answer to the host: kind 3, payload `label: u64,
//! probability of that label: f32`. Then it draws the next sample. The model is the
//! project's `models/mlp_classifier.onnx`: x[N,4] float32 → probs[N,3], label[N] int64.
use lockstep_sdk::{export_agent, infer, random_u64, send, Agent, Context, InferResult, Message, HOST};

#[derive(Default)]
struct Classifier {
    sample: [f32; 4],
    waiting: bool,
    answered: u64,
}

impl Classifier {
    fn draw(&mut self) {
        for f in self.sample.iter_mut() {
            // Uniform in [-3, 3): deterministic, from the agent's own random stream.
            *f = (random_u64() >> 40) as f32 / (1u64 << 24) as f32 * 6.0 - 3.0;
        }
    }
}

impl Agent for Classifier {
    fn init(&mut self) {
        self.draw();
    }

    fn step(&mut self, _ctx: &Context) {
        if !self.waiting {
            let mut bytes = [0u8; 16];
            for (i, f) in self.sample.iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&f.to_le_bytes());
            }
            self.waiting = infer(0, 1, &bytes).is_ok();
        }
    }

    fn receive(&mut self, msg: &Message<'_>) {
        let Some(result) = InferResult::parse(msg) else { return };
        self.waiting = false;
        self.answered += 1;
        // outputs: probs (3 × f32 = 12 bytes), then label (i64 = 8 bytes).
        if result.status == 0 && result.outputs.len() == 20 {
            let label = u64::from_le_bytes(result.outputs[12..20].try_into().unwrap_or([0; 8]));
            let p = result.outputs.get(label as usize * 4..label as usize * 4 + 4).unwrap_or(&[0; 4]);
            let mut report = [0u8; 12];
            report[..8].copy_from_slice(&label.to_le_bytes());
            report[8..].copy_from_slice(p);
            let _ = send(HOST, 3, &report);
        } else {
            let _ = send(HOST, 4, &result.status.to_le_bytes());
        }
        self.draw();
    }
}

export_agent!(Classifier);
