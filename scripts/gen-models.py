#!/usr/bin/env python3
"""Generates the small test models in models/ (dev-time; the outputs are checked in).

Needs `pip install onnx==1.21.0 numpy` (1.21 matches ONNX Runtime 1.30; newer versions stamp
models that 1.30 refuses). Reference outputs are computed with numpy, independently of ONNX
Runtime, and saved beside each model.
"""
import json
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = pathlib.Path(__file__).resolve().parent.parent / "models"
OUT.mkdir(exist_ok=True)
rng = np.random.default_rng(20261124)


def save(model, name):
    onnx.checker.check_model(model)
    onnx.save(model, OUT / f"{name}.onnx")


# 1. A small classifier with a batch dimension: x[N,4] -> probs[N,3], label[N].
w1 = rng.normal(size=(4, 8)).astype(np.float32)
b1 = rng.normal(size=(8,)).astype(np.float32)
w2 = rng.normal(size=(8, 3)).astype(np.float32)
b2 = rng.normal(size=(3,)).astype(np.float32)
nodes = [
    helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
    helper.make_node("Relu", ["h"], ["hr"]),
    helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"]),
    helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
]
graph = helper.make_graph(
    nodes,
    "mlp_classifier",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
    [
        helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3]),
        helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
    ],
    initializer=[numpy_helper.from_array(a, n) for a, n in [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2")]],
)
save(helper.make_model(graph, producer_name="lockstep-gen-models", opset_imports=[helper.make_opsetid("", 21)]), "mlp_classifier")
x = rng.normal(size=(8, 4)).astype(np.float32)
h = np.maximum(x @ w1 + b1, 0)
logits = h @ w2 + b2
e = np.exp(logits - logits.max(axis=1, keepdims=True))
probs = e / e.sum(axis=1, keepdims=True)
(OUT / "mlp_classifier.expected.json").write_text(json.dumps({
    "inputs": {"x": {"shape": [8, 4], "data": x.flatten().tolist()}},
    "outputs": {"probs": {"shape": [8, 3], "data": probs.flatten().tolist()},
                "label": {"shape": [8], "data": logits.argmax(axis=1).tolist()}},
}, indent=1))

# 2. Integer arithmetic without a batch dimension: c = a + b (int64[3]).
graph = helper.make_graph(
    [helper.make_node("Add", ["a", "b"], ["c"])],
    "add_int64",
    [helper.make_tensor_value_info("a", TensorProto.INT64, [3]), helper.make_tensor_value_info("b", TensorProto.INT64, [3])],
    [helper.make_tensor_value_info("c", TensorProto.INT64, [3])],
)
save(helper.make_model(graph, producer_name="lockstep-gen-models", opset_imports=[helper.make_opsetid("", 21)]), "add_int64")
print("wrote", sorted(p.name for p in OUT.iterdir()))
