"""Silero VAD and the tiny language model's decode step through ONNX Runtime's own Python
binding, on CUDA and on CPU, with the session options lockstep uses (one thread, sequential,
deterministic compute) and with ONNX Runtime's defaults: the baseline for lockstep's GPU figures
(BENCHMARKS.md). Also where the CUDA session put each node and which nodes took the time.

    python3 benches/ort-python-cuda.py SILERO_ONNX TINY_LM_ONNX   (needs onnxruntime-gpu)
"""
import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort

silero, tiny_lm = sys.argv[1], sys.argv[2]


def options(lockstep):
    o = ort.SessionOptions()
    if lockstep:
        o.intra_op_num_threads = 1
        o.inter_op_num_threads = 1
        o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        o.add_session_config_entry("session.intra_op.allow_spinning", "0")
        o.use_deterministic_compute = True
    return o


CUDA = [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "DEFAULT", "use_tf32": "0"})]


def timed(sess, feeds, n=200):
    for _ in range(20):
        sess.run(None, feeds)
    t = []
    for _ in range(n):
        s = time.perf_counter()
        sess.run(None, feeds)
        t.append((time.perf_counter() - s) * 1e6)
    return statistics.median(t)


for b in (1, 32):
    x = (0.5 * np.sin(2 * np.pi * 440 * (np.arange(1536) % 1536) / 16000)).astype(np.float32)
    feeds = {"input": np.tile(x, (b, 1)), "sr": np.array(16000, np.int64), "h": np.zeros((2, b, 64), np.float32),
             "c": np.zeros((2, b, 64), np.float32)}
    row = {"silero_batch": b}
    for name, prov, lockstep in (("cuda_lockstep_options", CUDA, True), ("cuda_defaults", ["CUDAExecutionProvider"], False),
                                 ("cpu_lockstep_options", ["CPUExecutionProvider"], True)):
        row[name + "_us"] = round(timed(ort.InferenceSession(silero, options(lockstep), providers=prov), feeds), 1)
    print(json.dumps(row), flush=True)

# Where the time goes on CUDA: ONNX Runtime's profiler, batch 32.
o = options(True)
o.enable_profiling = True
o.profile_file_prefix = "/tmp/silero_profile"
s = ort.InferenceSession(silero, o, providers=CUDA)
for _ in range(30):
    s.run(None, feeds)
prof = json.load(open(s.end_profiling()))
nodes = {}
for e in prof:
    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
        k = (e["args"].get("op_name"), e["args"].get("provider"))
        nodes[k] = nodes.get(k, 0) + e["dur"]
total = sum(nodes.values())
print(json.dumps({"silero_cuda_profile_top": [[op, p, round(d / 30)] for (op, p), d in sorted(nodes.items(), key=lambda kv: -kv[1])[:12]],
                  "node_us_per_run_if_counts_its_subgraph_too": round(total / 30)}), flush=True)

# The tiny model's decode step (batch 1, 16 cached tokens), lockstep's options.
L, H, D = 2, 4, 16
feeds = {"input_ids": np.array([[65]], np.int64), "attention_mask": np.ones((1, 17), np.int64),
         "position_ids": np.array([[16]], np.int64)}
for l in range(L):
    for kv in ("key", "value"):
        feeds[f"past_key_values.{l}.{kv}"] = np.zeros((1, H, 16, D), np.float32)
row = {"tiny_lm_decode_step": 1}
for name, prov in (("cuda", CUDA), ("cpu", ["CPUExecutionProvider"])):
    row[name + "_us"] = round(timed(ort.InferenceSession(tiny_lm, options(True), providers=prov), feeds), 1)
print(json.dumps(row), flush=True)
