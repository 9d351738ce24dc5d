//! Every tensor element type ONNX Runtime carries, through the engine and through agents'
//! `infer` import (batched across agents, answered, recorded and replayed exactly); sequence
//! outputs; what loadModel refuses, and with which code. Models: models/*.onnx from
//! scripts/gen-models.py.

mod common;
use std::path::PathBuf;
use std::sync::Arc;

use common::wat;
use lockstep_abi::tensor_type;
use lockstep_core::inference::{encode_strings, ElementType, EngineOptions, InferenceEngine, Output, Tensor};
use lockstep_core::{abi, replay, Runtime, RuntimeConfig};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn engine() -> Arc<InferenceEngine> {
    Arc::new(
        InferenceEngine::new(EngineOptions { search_roots: vec![root()], providers: common::test_providers(), ..Default::default() })
            .expect("run `npm install` first"),
    )
}

fn model(name: &str) -> Vec<u8> {
    std::fs::read(root().join(format!("models/{name}.onnx"))).unwrap()
}

/// Per-sample data of 3 elements of `t`, different for each `seed`, in the wire encoding.
fn sample(t: ElementType, seed: u8) -> Vec<u8> {
    if t == ElementType::String {
        return encode_strings([format!("s{seed}"), "ünïcödé ✓".to_string(), String::new()]);
    }
    let len = t.byte_len(3).unwrap();
    // Bytes that are valid for every type (bool: 0 or 1; sub-byte: every bit pattern is valid).
    let mut data: Vec<u8> =
        (0..len).map(|i| if t == ElementType::Bool { (seed as usize + i) as u8 % 2 } else { seed.wrapping_mul(37).wrapping_add(i as u8 * 11) }).collect();
    if let Some(bits) = t.bits().filter(|b| *b < 8) {
        // The bits after the third element are padding, not data: zero, as ONNX Runtime packs.
        let used = 3 * bits % 8;
        if used != 0 {
            *data.last_mut().unwrap() &= (1u8 << used) - 1;
        }
    }
    data
}

#[test]
fn every_element_type_round_trips_through_the_engine_bit_exactly() {
    let e = engine();
    let info = e.load(model("every_type")).unwrap();
    // ModelInfo spells every type in the one lower-case vocabulary, in ElementType::ALL order.
    let names: Vec<&str> = info.inputs.iter().map(|i| i.dtype.as_str()).collect();
    assert_eq!(names, ElementType::ALL.iter().map(|t| t.name()).collect::<Vec<_>>());
    assert!(info.outputs.iter().all(|o| o.dtype == o.name[2..]), "{:?}", info.outputs);
    assert!(info.batchable, "Identity rows are independent, for every type");
    for n in [1usize, 2, 3] {
        let inputs: Vec<(String, Tensor)> = ElementType::ALL
            .iter()
            .map(|t| {
                let parts: Vec<Vec<u8>> = (0..n).map(|k| sample(*t, k as u8 + 1)).collect();
                let data = if t.is_sub_byte() {
                    // Whole-batch packing: n samples of 3 elements, not n packed samples.
                    let codes: Vec<u8> = parts.iter().flat_map(|p| unpack(p, t.bits().unwrap(), 3)).collect();
                    pack(&codes, t.bits().unwrap())
                } else {
                    parts.concat()
                };
                (format!("x_{}", t.name()), Tensor { dtype: *t, shape: vec![n as i64, 3], data })
            })
            .collect();
        let out = e.run(&info.id, &inputs).unwrap();
        for ((_, x), (name, y)) in inputs.iter().zip(&out) {
            assert_eq!(y, x, "{name}: identity returns the same bytes, for a batch of {n}");
        }
    }
}

fn unpack(data: &[u8], bits: usize, count: usize) -> Vec<u8> {
    (0..count).map(|i| (data[i * bits / 8] >> (i * bits % 8)) & ((1 << bits) - 1)).collect()
}

fn pack(codes: &[u8], bits: usize) -> Vec<u8> {
    let mut out = vec![0u8; (codes.len() * bits).div_ceil(8)];
    for (i, c) in codes.iter().enumerate() {
        out[i * bits / 8] |= c << (i * bits % 8);
    }
    out
}

#[test]
fn float16_arithmetic_gives_the_right_bits() {
    let e = engine();
    let id = e.load(model("add_float16")).unwrap().id;
    let half = |v: &[f32]| Tensor { dtype: ElementType::F16, shape: vec![1, 2], data: v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect() };
    let out = e.run(&id, &[("a".into(), half(&[1.5, -2.0])), ("b".into(), half(&[0.25, 65504.0]))]).unwrap();
    assert_eq!(out[0].1, half(&[1.75, 65502.0]));
    assert_eq!(e.info(&id).unwrap().outputs[0].dtype, "float16");
}

#[test]
fn a_sequence_output_is_returned_as_its_tensors() {
    let e = engine();
    let info = e.load(model("split_sequence")).unwrap();
    assert_eq!(info.outputs[0].dtype, "sequence<float32>");
    assert!(!info.batchable);
    let x = Tensor { dtype: ElementType::F32, shape: vec![5], data: [1f32, 2., 3., 4., 5.].iter().flat_map(|v| v.to_le_bytes()).collect() };
    let out = e.run_outputs(&info.id, &[("x".into(), x.clone())]).unwrap();
    let Output::Sequence(parts) = &out[0].1 else { panic!("{:?}", out[0]) };
    assert_eq!(parts.iter().map(|t| t.shape.clone()).collect::<Vec<_>>(), vec![vec![2], vec![2], vec![1]]);
    assert_eq!(parts.iter().flat_map(|t| t.data.clone()).collect::<Vec<_>>(), x.data);
    assert_eq!(out[1].1, Output::Tensor(Tensor { dtype: ElementType::I64, shape: vec![], data: 3i64.to_le_bytes().to_vec() }));
    // run() returns tensors only: it refuses before running, never after.
    let err = e.run(&info.id, &[("x".into(), x)]).unwrap_err();
    assert_eq!(err.code(), "E_UNSUPPORTED_TYPE");
    assert!(err.to_string().contains("output `parts` is sequence<float32>"), "{err}");
}

#[test]
fn load_refusals_name_the_true_cause() {
    let e = engine();
    let err = e.load(model("optional_output")).unwrap_err();
    assert_eq!(err.code(), "E_UNSUPPORTED_TYPE");
    assert!(err.to_string().contains("output `maybe` is optional<float32>"), "{err}");
    let err = e.load(model("max_int16")).unwrap_err();
    assert_eq!(err.code(), "E_MODEL_UNSUPPORTED_OPERATOR");
    assert!(err.to_string().contains("the model is valid ONNX") && err.to_string().contains("Max(13)"), "{err}");
    let err = e.load(model("opset_30")).unwrap_err();
    assert_eq!(err.code(), "E_MODEL_UNSUPPORTED_VERSION", "{err}");
    assert_eq!(e.load(b"not a model".to_vec()).unwrap_err().code(), "E_INVALID_MODEL");
    assert!(e.list().is_empty(), "nothing refused is kept");
}

#[test]
fn string_inputs_are_checked_before_onnx_runtime_sees_them() {
    let e = engine();
    let id = e.load(model("every_type")).unwrap().id;
    let mut inputs: Vec<(String, Tensor)> =
        ElementType::ALL.iter().map(|t| (format!("x_{}", t.name()), Tensor { dtype: *t, shape: vec![1, 3], data: sample(*t, 1) })).collect();
    let s = inputs.iter().position(|(n, _)| n == "x_string").unwrap();
    inputs[s].1 = Tensor::from_strings(vec![1, 3], ["a", "b\0c", "d"]);
    let err = e.run(&id, &inputs).unwrap_err();
    assert_eq!(err.code(), "E_BAD_INPUT_VALUE");
    assert!(err.to_string().contains("x_string") && err.to_string().contains("NUL"), "{err}");
    inputs[s].1 = Tensor::from_strings(vec![1, 3], ["a", "b"]);
    assert_eq!(e.run(&id, &inputs).unwrap_err().code(), "E_BAD_INPUT_VALUE", "two strings for three elements");
}

/// An agent that relays: a message from the host becomes an `infer` request on model slot 0
/// (tag = the message's kind, sample = its payload); an answer from the inference service is
/// sent to the host as it came (kind = tag, payload = status + outputs).
fn relay_agent() -> Vec<u8> {
    wat(r#"(module
        (import "lockstep" "send" (func $send (param i64 i32 i32 i32 i32) (result i32)))
        (import "lockstep" "infer" (func $infer (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 2)
        (func (export "lockstep_abi_version") (result i32) i32.const 1)
        (func (export "lockstep_io_buffer") (result i32) i32.const 1024)
        (func (export "agent_init") (result i32) i32.const 0)
        (func (export "agent_step") (param i32) (result i32) i32.const 0)
        (func (export "agent_shutdown") (result i32) i32.const 0)
        (func (export "agent_receive") (param $m i32) (result i32)
            (if (i64.eqz (i64.load (local.get $m)))
                (then (drop (call $infer (i32.const 0) (i32.load offset=24 (local.get $m))
                    (i32.add (local.get $m) (i32.const 40)) (i32.load offset=32 (local.get $m)))))
                (else (drop (call $send (i64.const 0) (i32.load offset=24 (local.get $m)) (i32.const 0)
                    (i32.add (local.get $m) (i32.const 40)) (i32.load offset=32 (local.get $m))))))
            i32.const 0))"#)
}

/// One agent's sample for every_type: each type's 3 elements, in input order.
fn agent_sample(seed: u8) -> Vec<u8> {
    ElementType::ALL.iter().flat_map(|t| sample(*t, seed)).collect()
}

/// Three relay agents ask every_type, one tick, with distinct samples (and two malformed
/// requests); returns the runtime, each agent's answer, and the tick's (requests, calls).
/// Each answer the host got: (agent, kind, payload).
type Answers = Vec<(u64, u32, Vec<u8>)>;

fn ask_every_type(batching: bool) -> (Runtime, Answers, (u64, u64)) {
    let mut rt = Runtime::new(RuntimeConfig { workers: 2, seed: 5, inference_batching: batching, max_agents: 8, ..RuntimeConfig::development() }).unwrap();
    let e = engine();
    let id = e.load(model("every_type")).unwrap().id;
    rt.set_inference_engine(e);
    assert_eq!(rt.register_agent_model(&id).unwrap(), 0);
    let m = rt.load_module(relay_agent()).unwrap();
    let agents: Vec<u64> = (0..3).map(|_| rt.spawn(m).unwrap()).collect();
    for (k, a) in agents.iter().enumerate() {
        rt.send(*a, 7, 0, agent_sample(k as u8 + 1)).unwrap();
    }
    // A string element cut short, and a string holding a NUL: malformed samples, answered
    // alone (status 2), while the others' batch runs.
    let mut short = agent_sample(9);
    short.pop();
    let nul: Vec<u8> =
        ElementType::ALL.iter().flat_map(|t| if *t == ElementType::String { encode_strings(["a", "b\0c", "d"]) } else { sample(*t, 9) }).collect();
    for bad in [short, nul] {
        let spoiler = rt.spawn(m).unwrap();
        rt.send(spoiler, 8, 0, bad).unwrap();
    }
    // Tick 0: the agents receive and ask; the requests are served at its end. Tick 1: the
    // answers arrive and are relayed. Tick 2: the host has them.
    let reports: Vec<_> = (0..3).map(|_| rt.tick().unwrap()).collect();
    let served: Vec<(u64, u64)> = reports.iter().map(|r| (r.inference_requests, r.inference_calls)).collect();
    assert_eq!(served[1..], [(0, 0), (0, 0)], "all served in the first tick");
    let answers = rt.drain_host_messages().into_iter().map(|m| (m.from, m.kind, m.payload)).collect();
    (rt, answers, served[0])
}

#[test]
fn agents_get_every_type_through_infer_batched_and_replayed_exactly() {
    let (mut rt, answers, (requests, calls)) = ask_every_type(true);
    assert_eq!((requests, calls), (5, 1), "five requests, the three good ones one ONNX Runtime call");
    assert_eq!(answers.len(), 5, "{answers:?}");
    for (k, (from, kind, payload)) in answers.iter().take(3).enumerate() {
        assert_eq!(*kind, 7);
        assert_eq!(u32::from_le_bytes(payload[..4].try_into().unwrap()), abi::INFER_STATUS_OK, "agent {from}");
        // Identity: each agent gets its own sample back — int4's 12 bits per sample repacked
        // out of the batch, strings cut at their element boundaries.
        assert_eq!(&payload[4..], &agent_sample(k as u8 + 1)[..], "agent {from}");
    }
    for (_, kind, payload) in &answers[3..] {
        assert_eq!((*kind, u32::from_le_bytes(payload[..4].try_into().unwrap())), (8, abi::INFER_STATUS_BAD_INPUT));
    }
    // Batched or one call per request: the same bytes.
    let (_, single, (_, single_calls)) = ask_every_type(false);
    assert_eq!(single_calls, 3);
    assert_eq!(single, answers);
    // The answers are in the log: the replay needs no model and ends in the same state.
    let last = rt.state_hash();
    let log = rt.stop_recording().unwrap();
    let report = replay(&log, 1, |_| {}).unwrap();
    assert_eq!(report.divergence, None);
    assert_eq!(report.final_hash, last);
}

#[test]
fn the_abi_ids_are_the_engines_types() {
    assert_eq!(tensor_type::ALL.len(), ElementType::ALL.len());
    for id in tensor_type::ALL {
        let t = ElementType::from_abi_id(id).unwrap();
        assert_eq!(t.abi_id(), id);
        assert_eq!(t.bits().unwrap_or(0), tensor_type::bits(id).unwrap() as usize);
    }
    assert_eq!(ElementType::F16.abi_id(), tensor_type::FLOAT16);
    assert_eq!(ElementType::String.abi_id(), tensor_type::STRING);
}

/// docs/INFERENCE.md's type table: one row per element type, with its ABI id; docs/ABI.md's
/// encoding table names every id.
#[test]
fn the_docs_type_tables_are_the_engines() {
    let doc = std::fs::read_to_string(root().join("docs/INFERENCE.md")).unwrap();
    let rows: Vec<Vec<&str>> = doc
        .lines()
        .filter(|l| l.starts_with("| ") && l.matches('|').count() == 6)
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|cols| cols[2].starts_with('`') && cols[2] != "`type`")
        .collect();
    assert_eq!(rows.len(), ElementType::ALL.len(), "one row per type");
    for (row, t) in rows.iter().zip(ElementType::ALL) {
        assert_eq!(row[2], format!("`{}`", t.name()));
        assert_eq!(row[4], t.abi_id().to_string(), "{}", t.name());
    }
    let abi = std::fs::read_to_string(root().join("docs/ABI.md")).unwrap();
    let section = &abi[abi.find("### Inference samples and answers").unwrap()..];
    let mut listed = Vec::new();
    for line in section.lines().skip_while(|l| !l.starts_with("| id")).skip(2).take_while(|l| l.starts_with('|')) {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        let ids: Vec<u32> = cols[1].split(',').map(|i| i.trim().parse().unwrap()).collect();
        let names: Vec<&str> = cols[2].split(',').map(|n| n.trim().split(' ').next().unwrap().trim_matches('`')).collect();
        for (id, name) in ids.iter().zip(&names) {
            assert_eq!(ElementType::from_abi_id(*id).map(|t| t.name()), Some(*name), "docs/ABI.md: id {id}");
        }
        listed.extend(ids);
    }
    listed.sort();
    assert_eq!(listed, tensor_type::ALL.to_vec());
}
