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

# 3. Every tensor element type, round trip: x_<type>[N, 3] -> y_<type>, for the 24 types lockstep
# carries (docs/INFERENCE.md). Three elements per sample, so 4-bit samples end mid-byte and
# batching agents' requests repacks them. Identity where ONNX Runtime 1.30 has a kernel for the
# type; a lossless Cast to float32 and back for the 4- and 2-bit integers and float8e8m0 (its
# Identity has none for them); float4e2m1, for which it has no kernel at all, is the input itself
# as an output (so that output is named x_float4e2m1).
EVERY_TYPE = [
    ("float32", TensorProto.FLOAT), ("float64", TensorProto.DOUBLE), ("int32", TensorProto.INT32),
    ("int64", TensorProto.INT64), ("uint8", TensorProto.UINT8), ("int8", TensorProto.INT8), ("bool", TensorProto.BOOL),
    ("float16", TensorProto.FLOAT16), ("bfloat16", TensorProto.BFLOAT16), ("uint16", TensorProto.UINT16),
    ("int16", TensorProto.INT16), ("uint32", TensorProto.UINT32), ("uint64", TensorProto.UINT64),
    ("string", TensorProto.STRING), ("float8e4m3fn", TensorProto.FLOAT8E4M3FN),
    ("float8e4m3fnuz", TensorProto.FLOAT8E4M3FNUZ), ("float8e5m2", TensorProto.FLOAT8E5M2),
    ("float8e5m2fnuz", TensorProto.FLOAT8E5M2FNUZ), ("float8e8m0", TensorProto.FLOAT8E8M0), ("uint4", TensorProto.UINT4),
    ("int4", TensorProto.INT4), ("float4e2m1", TensorProto.FLOAT4E2M1), ("uint2", TensorProto.UINT2), ("int2", TensorProto.INT2),
]
VIA_CAST = {"uint4", "int4", "uint2", "int2", "float8e8m0"}
PASS_THROUGH = {"float4e2m1"}
nodes = []
for n, t in EVERY_TYPE:
    if n in VIA_CAST:
        nodes += [helper.make_node("Cast", [f"x_{n}"], [f"f_{n}"], to=TensorProto.FLOAT), helper.make_node("Cast", [f"f_{n}"], [f"y_{n}"], to=t)]
    elif n not in PASS_THROUGH:
        nodes.append(helper.make_node("Identity", [f"x_{n}"], [f"y_{n}"]))
graph = helper.make_graph(
    nodes,
    "every_type",
    [helper.make_tensor_value_info(f"x_{n}", t, ["N", 3]) for n, t in EVERY_TYPE],
    [helper.make_tensor_value_info(f"{'x' if n in PASS_THROUGH else 'y'}_{n}", t, ["N", 3]) for n, t in EVERY_TYPE],
)
save(helper.make_model(graph, producer_name="lockstep-gen-models", opset_imports=[helper.make_opsetid("", 25)]), "every_type")

# 4. Arithmetic in float16: c = a + b (float16[N, 2]).
graph = helper.make_graph(
    [helper.make_node("Add", ["a", "b"], ["c"])],
    "add_float16",
    [helper.make_tensor_value_info("a", TensorProto.FLOAT16, ["N", 2]), helper.make_tensor_value_info("b", TensorProto.FLOAT16, ["N", 2])],
    [helper.make_tensor_value_info("c", TensorProto.FLOAT16, ["N", 2])],
)
save(helper.make_model(graph, producer_name="lockstep-gen-models", opset_imports=[helper.make_opsetid("", 21)]), "add_float16")

# 5. A sequence output: x[L] split into chunks of 2 -> parts: seq(tensor(float)); also n = len.
graph = helper.make_graph(
    [helper.make_node("SplitToSequence", ["x", "two"], ["parts"]), helper.make_node("SequenceLength", ["parts"], ["n"])],
    "split_sequence",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["L"])],
    [helper.make_tensor_sequence_value_info("parts", TensorProto.FLOAT, None), helper.make_tensor_value_info("n", TensorProto.INT64, [])],
    initializer=[numpy_helper.from_array(np.array(2, np.int64), "two")],
)
save(helper.make_model(graph, producer_name="lockstep-gen-models", opset_imports=[helper.make_opsetid("", 21)]), "split_sequence")

# 6. An optional output (refused at load: lockstep returns tensors and sequences of tensors).
graph = helper.make_graph(
    [helper.make_node("Optional", ["x"], ["maybe"])],
    "optional_output",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
    [helper.make_value_info("maybe", helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2])))],
)
save(helper.make_model(graph, producer_name="lockstep-gen-models", opset_imports=[helper.make_opsetid("", 21)]), "optional_output")

# 7. A valid model with an operator ONNX Runtime 1.30's CPU build has no kernel for: Max of int16.
graph = helper.make_graph(
    [helper.make_node("Max", ["a", "b"], ["c"])],
    "max_int16",
    [helper.make_tensor_value_info("a", TensorProto.INT16, [2]), helper.make_tensor_value_info("b", TensorProto.INT16, [2])],
    [helper.make_tensor_value_info("c", TensorProto.INT16, [2])],
)
save(helper.make_model(graph, producer_name="lockstep-gen-models", opset_imports=[helper.make_opsetid("", 13)]), "max_int16")

# 8. A model stamped with an opset newer than ONNX Runtime 1.30 supports (not checked: the
# checker of onnx 1.21 does not know opset 30 either).
graph = helper.make_graph(
    [helper.make_node("Relu", ["x"], ["y"])],
    "opset_30",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
)
onnx.save(helper.make_model(graph, producer_name="lockstep-gen-models", opset_imports=[helper.make_opsetid("", 30)]), OUT / "opset_30.onnx")
# 9. Gathers whose indices another thread may rewrite while ONNX Runtime runs (a SharedArrayBuffer
# input): ONNX Runtime's Gather checks each index, then reads it again to copy, so an index
# changed in between reads out of bounds. gather_rows: data[R,16] and indices[N] both inputs
# (several inputs); gather_fixed: indices[N] alone, data a 16x4 initializer (one input).
graph = helper.make_graph(
    [helper.make_node("Gather", ["data", "indices"], ["rows"], axis=0)],
    "gather_rows",
    [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["R", 16]), helper.make_tensor_value_info("indices", TensorProto.INT64, ["N"])],
    [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["N", 16])],
)
save(helper.make_model(graph, producer_name="lockstep-gen-models", ir_version=10, opset_imports=[helper.make_opsetid("", 21)]), "gather_rows")
table = numpy_helper.from_array(np.arange(64, dtype=np.float32).reshape(16, 4), name="table")
graph = helper.make_graph(
    [helper.make_node("Gather", ["table", "indices"], ["rows"], axis=0)],
    "gather_fixed",
    [helper.make_tensor_value_info("indices", TensorProto.INT64, ["N"])],
    [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["N", 4])],
    initializer=[table],
)
save(helper.make_model(graph, producer_name="lockstep-gen-models", ir_version=10, opset_imports=[helper.make_opsetid("", 21)]), "gather_fixed")

print("wrote", sorted(p.name for p in OUT.iterdir()))
