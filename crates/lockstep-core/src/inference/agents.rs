//! Serving agents' inference requests: all requests for one model in one tick become one
//! batched ONNX Runtime call (when the model has a batch dimension), and each agent gets its
//! own result as a message at the next tick, in canonical order.
//!
//! Wire format (docs/ABI.md): a request is one sample — each model input's per-sample bytes,
//! in input order; a result payload is a u32 status followed by each output's per-sample bytes,
//! in output order.

use std::collections::BTreeMap;

use super::engine::{InferenceEngine, ModelInfo};
use super::tensor::{ElementType, Tensor};
use crate::abi;
use crate::bus::AgentId;
use crate::host::InferRequest;

/// What one request produced: status and output bytes.
pub struct Answer {
    pub agent: AgentId,
    pub tag: u32,
    pub payload: Vec<u8>,
}

/// How many ONNX Runtime calls and requests a tick's serving took.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServeStats {
    pub requests: u64,
    pub calls: u64,
}

fn status(code: u32, bytes: &[u8]) -> Vec<u8> {
    let mut p = code.to_le_bytes().to_vec();
    p.extend_from_slice(bytes);
    p
}

/// One model input as agents send it: name, element type, per-sample dims, per-sample bytes.
type InputLayout = (String, ElementType, Vec<i64>, usize);

/// Per-sample byte sizes of a model's inputs, when every input is [batch, static dims...].
fn sample_layout(info: &ModelInfo) -> Option<Vec<InputLayout>> {
    info.inputs
        .iter()
        .map(|i| {
            let dtype = ElementType::parse(&i.dtype).ok()?;
            let rest = i.shape.get(1..)?.to_vec();
            if rest.iter().any(|d| *d < 0) || i.shape.first().is_none_or(|d| *d > 1) {
                return None;
            }
            let bytes = rest.iter().product::<i64>() as usize * dtype.size_bytes();
            Some((i.name.clone(), dtype, rest, bytes))
        })
        .collect()
}

/// Serves `requests` (already in canonical order: agent id, then request order).
/// With `batch` false every request is its own call (the baseline batching is measured against).
pub fn serve(engine: Option<&InferenceEngine>, models: &[String], requests: Vec<(AgentId, InferRequest)>, batch: bool) -> (Vec<Answer>, ServeStats) {
    let mut stats = ServeStats { requests: requests.len() as u64, calls: 0 };
    let mut answers: Vec<Option<Answer>> = (0..requests.len()).map(|_| None).collect();
    let mut by_model: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, (_, r)) in requests.iter().enumerate() {
        by_model.entry(r.model).or_default().push(i);
    }
    for (model, idxs) in by_model {
        let fail = |answers: &mut Vec<Option<Answer>>, code: u32| {
            for &i in &idxs {
                let (agent, r) = &requests[i];
                answers[i] = Some(Answer { agent: *agent, tag: r.tag, payload: status(code, &[]) });
            }
        };
        let (Some(engine), Some(id)) = (engine, models.get(model as usize)) else {
            fail(&mut answers, abi::INFER_STATUS_NO_SUCH_MODEL);
            continue;
        };
        let Ok(info) = engine.info_shared(id) else {
            fail(&mut answers, abi::INFER_STATUS_NO_SUCH_MODEL);
            continue;
        };
        let Some(layout) = sample_layout(&info) else {
            fail(&mut answers, abi::INFER_STATUS_NO_SUCH_MODEL);
            continue;
        };
        let sample_bytes: usize = layout.iter().map(|l| l.3).sum();
        // Malformed requests are answered alone; the rest are batched.
        let (good, bad): (Vec<usize>, Vec<usize>) = idxs.iter().partition(|&&i| requests[i].1.input.len() == sample_bytes);
        for i in bad {
            let (agent, r) = &requests[i];
            answers[i] = Some(Answer { agent: *agent, tag: r.tag, payload: status(abi::INFER_STATUS_BAD_INPUT, &[]) });
        }
        if good.is_empty() {
            continue;
        }
        let batchable = info.batchable;
        let groups: Vec<Vec<usize>> = if batchable && batch { vec![good] } else { good.into_iter().map(|i| vec![i]).collect() };
        for group in groups {
            stats.calls += 1;
            let n = group.len();
            let mut offset = 0;
            let inputs: Vec<(String, Tensor)> = layout
                .iter()
                .map(|(name, dtype, rest, bytes)| {
                    let mut data = Vec::with_capacity(bytes * n);
                    for &i in &group {
                        data.extend_from_slice(&requests[i].1.input[offset..offset + bytes]);
                    }
                    offset += bytes;
                    let mut shape = vec![n as i64];
                    shape.extend_from_slice(rest);
                    (name.clone(), Tensor { dtype: *dtype, shape, data })
                })
                .collect();
            // A batched output must have one row per request: otherwise slicing it would hand
            // an agent bytes computed from other agents' inputs (answered "failed" instead).
            // One request gets the whole output, whatever its shape.
            let result = engine
                .run(id, &inputs)
                .ok()
                .filter(|outputs| n == 1 || outputs.iter().all(|(_, t)| t.shape.first() == Some(&(n as i64)) && t.data.len().is_multiple_of(n)));
            match result {
                Some(outputs) => {
                    for (k, &i) in group.iter().enumerate() {
                        let mut payload = abi::INFER_STATUS_OK.to_le_bytes().to_vec();
                        for (_, t) in &outputs {
                            let per = t.data.len() / n;
                            payload.extend_from_slice(&t.data[k * per..(k + 1) * per]);
                        }
                        let (agent, r) = &requests[i];
                        answers[i] = Some(Answer { agent: *agent, tag: r.tag, payload });
                    }
                }
                None => {
                    for &i in &group {
                        let (agent, r) = &requests[i];
                        answers[i] = Some(Answer { agent: *agent, tag: r.tag, payload: status(abi::INFER_STATUS_FAILED, &[]) });
                    }
                }
            }
        }
    }
    (answers.into_iter().flatten().collect(), stats)
}
