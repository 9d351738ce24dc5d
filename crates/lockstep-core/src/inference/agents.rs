//! Serving agents' inference requests: all requests for one model in one tick become one
//! batched ONNX Runtime call (when the model has a batch dimension), and each agent gets its
//! own result as a message at the next tick, in canonical order.
//!
//! Wire format (docs/ABI.md): a request is one sample — each model input's per-sample elements,
//! in input order; a result payload is a u32 status followed by each output's per-sample
//! elements, in output order; elements in the encoding of their type
//! (`lockstep_abi::tensor_type`: little-endian, sub-byte types packed per sample, strings as
//! length + UTF-8).

use std::collections::BTreeMap;

use super::engine::{InferenceEngine, ModelInfo};
use super::tensor::{join_samples, sample_is_valid, sample_len, split_samples, ElementType, Tensor};
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

/// One model input as agents send it: name, element type, per-sample dims, per-sample elements.
type InputLayout = (String, ElementType, Vec<i64>, usize);

/// The per-sample layout of a model's inputs, when every input is [batch, static dims...] and
/// every output a tensor (a sequence output has no place in an answer).
fn sample_layout(info: &ModelInfo) -> Option<Vec<InputLayout>> {
    if info.outputs.iter().any(|o| ElementType::parse(&o.dtype).is_err()) {
        return None;
    }
    info.inputs
        .iter()
        .map(|i| {
            let dtype = ElementType::parse(&i.dtype).ok()?;
            let rest = i.shape.get(1..)?.to_vec();
            if rest.iter().any(|d| *d < 0) || i.shape.first().is_none_or(|d| *d > 1) {
                return None;
            }
            let elements = rest.iter().product::<i64>() as usize;
            Some((i.name.clone(), dtype, rest, elements))
        })
        .collect()
}

/// A request (its index) and its sample cut into each input's bytes.
type Split<'a> = (usize, Vec<&'a [u8]>);

/// A request's sample cut into each input's bytes; `None` if it is not exactly one sample
/// (too short, bytes left over, a string element cut off, not UTF-8 or holding a NUL).
fn split_request<'a>(layout: &[InputLayout], mut input: &'a [u8]) -> Option<Vec<&'a [u8]>> {
    let mut parts = Vec::with_capacity(layout.len());
    for (_, dtype, _, elements) in layout {
        let len = sample_len(*dtype, input, *elements)?;
        // Checked here, so one agent's bad string fails its own request, not the batch's call.
        sample_is_valid(*dtype, &input[..len], *elements).then_some(())?;
        parts.push(&input[..len]);
        input = &input[len..];
    }
    input.is_empty().then_some(parts)
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
        // Malformed requests are answered alone; the rest are batched.
        let mut good: Vec<Split<'_>> = Vec::new();
        for &i in &idxs {
            let (agent, r) = &requests[i];
            match split_request(&layout, &r.input) {
                Some(parts) => good.push((i, parts)),
                None => answers[i] = Some(Answer { agent: *agent, tag: r.tag, payload: status(abi::INFER_STATUS_BAD_INPUT, &[]) }),
            }
        }
        if good.is_empty() {
            continue;
        }
        let batchable = info.batchable;
        let groups: Vec<Vec<Split<'_>>> = if batchable && batch { vec![good] } else { good.into_iter().map(|g| vec![g]).collect() };
        for group in groups {
            stats.calls += 1;
            let n = group.len();
            let inputs: Vec<(String, Tensor)> = layout
                .iter()
                .enumerate()
                .map(|(k, (name, dtype, rest, elements))| {
                    let data = join_samples(*dtype, *elements, group.iter().map(|(_, parts)| parts[k]));
                    let mut shape = vec![n as i64];
                    shape.extend_from_slice(rest);
                    (name.clone(), Tensor { dtype: *dtype, shape, data })
                })
                .collect();
            // A batched output must have one row per request: otherwise slicing it would hand
            // an agent bytes computed from other agents' inputs (answered "failed" instead).
            // One request gets the whole output, whatever its shape.
            let result = engine.run(id, &inputs).ok().and_then(|outputs| {
                outputs
                    .iter()
                    .map(|(_, t)| {
                        if n == 1 {
                            return Some(vec![t.data.clone()]);
                        }
                        let count = t.element_count();
                        (t.shape.first() == Some(&(n as i64)) && count.is_multiple_of(n)).then_some(())?;
                        split_samples(t.dtype, &t.data, n, count / n)
                    })
                    .collect::<Option<Vec<Vec<Vec<u8>>>>>()
            });
            match result {
                Some(per_output) => {
                    for (k, (i, _)) in group.iter().enumerate() {
                        let mut payload = abi::INFER_STATUS_OK.to_le_bytes().to_vec();
                        for samples in &per_output {
                            payload.extend_from_slice(&samples[k]);
                        }
                        let (agent, r) = &requests[*i];
                        answers[*i] = Some(Answer { agent: *agent, tag: r.tag, payload });
                    }
                }
                None => {
                    for (i, _) in &group {
                        let (agent, r) = &requests[*i];
                        answers[*i] = Some(Answer { agent: *agent, tag: r.tag, payload: status(abi::INFER_STATUS_FAILED, &[]) });
                    }
                }
            }
        }
    }
    (answers.into_iter().flatten().collect(), stats)
}
