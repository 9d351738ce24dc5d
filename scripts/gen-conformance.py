#!/usr/bin/env python3
"""Samples ONNX's own node conformance tests (shipped inside the `onnx` pip package, 1.21.0)
into models/conformance/: each test's model plus its first data set as JSON. The Rust test
crates/lockstep-core/tests/conformance.rs runs them through our inference path and compares
with ONNX's expected outputs. Dev-time only; the outputs are checked in.

Sample: every test whose inputs and outputs are plain tensors of types we support, that is
small (model < 8 KiB, data < 16 KiB), taking the first test per operator (by name prefix).
"""
import json
import os
import pathlib
import shutil

import numpy as np
import onnx
from onnx import numpy_helper

SRC = pathlib.Path(onnx.__file__).parent / "backend/test/data/node"
OUT = pathlib.Path(__file__).resolve().parent.parent / "models/conformance"
TYPES = {np.dtype("float32"): "float32", np.dtype("float64"): "float64", np.dtype("int32"): "int32",
         np.dtype("int64"): "int64", np.dtype("uint8"): "uint8", np.dtype("int8"): "int8", np.dtype("bool"): "bool"}
LIMIT = 120

if OUT.exists():
    shutil.rmtree(OUT)
OUT.mkdir(parents=True)
seen_ops = set()
kept = []
for name in sorted(os.listdir(SRC)):
    d = SRC / name
    data = d / "test_data_set_0"
    model_path = d / "model.onnx"
    if not data.is_dir() or not model_path.is_file() or model_path.stat().st_size > 8192:
        continue
    model = onnx.load(model_path)
    if len(model.graph.node) != 1:
        continue
    op = model.graph.node[0].op_type
    if op in seen_ops:
        continue
    def load(kind):
        out = []
        for f in sorted(data.glob(f"{kind}_*.pb"), key=lambda p: int(p.stem.split("_")[1])):
            t = onnx.TensorProto()
            try:
                t.ParseFromString(f.read_bytes())
                a = numpy_helper.to_array(t)
            except Exception:
                return None
            if a.dtype not in TYPES or t.name == "":
                return None
            out.append((t.name, a))
        return out
    inputs, outputs = load("input"), load("output")
    if not inputs or not outputs:
        continue
    graph_inputs = [i.name for i in model.graph.input if i.name not in {x.name for x in model.graph.initializer}]
    if [n for n, _ in inputs] != graph_inputs:
        continue
    size = sum(a.nbytes for _, a in inputs + outputs)
    if size > 16384:
        continue
    def num(x):
        # JSON has no NaN/Infinity: spell them as strings.
        if isinstance(x, float) and not np.isfinite(x):
            return "NaN" if np.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
        return x
    enc = lambda items: {n: {"type": TYPES[a.dtype], "dims": list(a.shape), "data": [num(x) for x in a.astype(np.float64 if a.dtype.kind == "f" else np.int64).flatten().tolist()]} for n, a in items}
    shutil.copy(model_path, OUT / f"{name}.onnx")
    (OUT / f"{name}.json").write_text(json.dumps({"op": op, "inputs": enc(inputs), "outputs": enc(outputs)}))
    seen_ops.add(op)
    kept.append(name)
    if len(kept) >= LIMIT:
        break
print(len(kept), "tests:", " ".join(kept))
