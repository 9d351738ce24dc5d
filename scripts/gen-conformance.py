#!/usr/bin/env python3
"""Samples ONNX's own node conformance tests (shipped inside the `onnx` pip package, 1.21.0)
into models/conformance/: each test's model plus its first data set as JSON. The Rust test
crates/lockstep-core/tests/conformance.rs and the JS test __test__/conformance.test.mjs run
them through our inference path (the JS test also through onnxruntime-node directly) and compare
with ONNX's expected outputs. Dev-time only; the outputs are checked in.

Needs `pip install onnx==1.21.0 numpy` (ml_dtypes comes with onnx).

Sample, in two parts (a test is "small" when its model is < 8 KiB and its data < 16 KiB):
1. the first small test per operator (by name) whose inputs and outputs are plain tensors of the
   seven types lockstep accepted first (float32, float64, int32, int64, uint8, int8, bool), up
   to 120 — the original sample, unchanged;
2. the first small test per (operator, set of other types) whose inputs or outputs use any other
   tensor type (float16, bfloat16, string, uint16, int16, uint32, uint64, the float8 kinds, the
   4- and 2-bit kinds) or are sequences or optionals.

`python3 scripts/gen-conformance.py --all DIR` writes every node test (data set 0, no size
limit, not copying the models: each JSON names its model's path) into DIR instead: the full
suite, for `node scripts/conformance.mjs DIR` (figures in docs/INFERENCE.md).

JSON per test: {"op", "model"?, "inputs": {name: value}, "outputs": {name: value}} where a value
is a tensor {"type", "dims", "b64"} (the little-endian bytes ONNX Runtime holds: sub-byte types
packed, element 0 in the low bits), a string tensor {"type": "string", "dims", "strings"}, a
sequence {"type": "sequence", "sequence": [tensors]} or an optional {"type": "optional",
"optional": tensor or null}.
"""
import base64
import json
import os
import pathlib
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

SRC = pathlib.Path(onnx.__file__).parent / "backend/test/data/node"
OUT = pathlib.Path(__file__).resolve().parent.parent / "models/conformance"
T = TensorProto
NAMES = {
    T.FLOAT: "float32", T.DOUBLE: "float64", T.INT32: "int32", T.INT64: "int64", T.UINT8: "uint8", T.INT8: "int8",
    T.BOOL: "bool", T.FLOAT16: "float16", T.BFLOAT16: "bfloat16", T.STRING: "string", T.UINT16: "uint16",
    T.INT16: "int16", T.UINT32: "uint32", T.UINT64: "uint64", T.FLOAT8E4M3FN: "float8e4m3fn",
    T.FLOAT8E4M3FNUZ: "float8e4m3fnuz", T.FLOAT8E5M2: "float8e5m2", T.FLOAT8E5M2FNUZ: "float8e5m2fnuz",
    T.FLOAT8E8M0: "float8e8m0", T.UINT4: "uint4", T.INT4: "int4", T.FLOAT4E2M1: "float4e2m1", T.UINT2: "uint2",
    T.INT2: "int2",
}
FIRST_TYPES = {"float32", "float64", "int32", "int64", "uint8", "int8", "bool"}
FIRST_LIMIT = 120
SECOND_LIMIT = 400


class Skip(Exception):
    pass


def packed(a, bits):
    """ONNX Runtime's layout of a sub-byte tensor: 8/bits elements per byte, element 0 lowest."""
    codes = np.ascontiguousarray(a).reshape(-1).view(np.uint8) & ((1 << bits) - 1)
    per = 8 // bits
    codes = np.concatenate([codes, np.zeros((-len(codes)) % per, np.uint8)]).reshape(-1, per)
    out = np.zeros(len(codes), np.uint8)
    for k in range(per):
        out |= codes[:, k] << (bits * k)
    return out.tobytes()


def tensor(t):
    if t.data_type not in NAMES:
        raise Skip(f"type {t.data_type}")
    name = NAMES[t.data_type]
    a = numpy_helper.to_array(t)
    dims = [int(d) for d in a.shape]
    if name == "string":
        try:
            return {"type": name, "dims": dims, "strings": [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in a.reshape(-1).tolist()]}
        except UnicodeDecodeError as e:
            raise Skip("non-UTF-8 string") from e
    if name in ("uint4", "int4", "float4e2m1"):
        raw = packed(a, 4)
    elif name in ("uint2", "int2"):
        raw = packed(a, 2)
    elif name == "bool":
        raw = a.astype(np.uint8).tobytes()
    else:
        a = np.ascontiguousarray(a)
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
    return {"type": name, "dims": dims, "b64": base64.b64encode(raw).decode()}


def value(type_proto, data):
    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type":
        t = TensorProto()
        t.ParseFromString(data)
        return tensor(t)
    if kind == "sequence_type":
        s = onnx.SequenceProto()
        s.ParseFromString(data)
        if s.elem_type != onnx.SequenceProto.TENSOR:
            raise Skip("sequence of non-tensors")
        return {"type": "sequence", "sequence": [tensor(t) for t in s.tensor_values]}
    if kind == "optional_type":
        o = onnx.OptionalProto()
        o.ParseFromString(data)
        if o.elem_type == onnx.OptionalProto.UNDEFINED:
            return {"type": "optional", "optional": None}
        if o.elem_type != onnx.OptionalProto.TENSOR:
            raise Skip("optional of a non-tensor")
        return {"type": "optional", "optional": tensor(o.tensor_value)}
    raise Skip(f"{kind} value")


def nbytes(v):
    """Bytes of a value's data (as the original sample measured it: array bytes, not file bytes)."""
    if v is None:
        return 0
    if v["type"] == "sequence":
        return sum(nbytes(t) for t in v["sequence"])
    if v["type"] == "optional":
        return nbytes(v["optional"])
    if v["type"] == "string":
        return sum(len(s.encode()) for s in v["strings"])
    return len(base64.b64decode(v["b64"]))


def load_case(d):
    """(op, inputs, outputs, data bytes) of test directory d's first data set; Skip if unusable."""
    data = d / "test_data_set_0"
    model = onnx.load(d / "model.onnx", load_external_data=False)
    graph_inputs = [i for i in model.graph.input if i.name not in {x.name for x in model.graph.initializer}]

    def load(kind, infos):
        files = sorted(data.glob(f"{kind}_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
        if len(files) > len(infos):
            raise Skip("more data than graph values")
        if kind == "input" and len(files) < len(infos):
            raise Skip("optional inputs omitted")
        # ONNX names the values in the files; match them to the graph by position.
        values = {info.name: value(info.type, f.read_bytes()) for info, f in zip(infos, files)}
        return values, sum(nbytes(v) for v in values.values())

    inputs, n_in = load("input", graph_inputs)
    outputs, n_out = load("output", list(model.graph.output))
    if not outputs:
        raise Skip("no outputs")
    op = model.graph.node[0].op_type if len(model.graph.node) == 1 else "+".join(sorted({n.op_type for n in model.graph.node}))
    return model, op, inputs, outputs, n_in + n_out


def types_of(values):
    out = set()
    for v in values.values():
        if v["type"] == "sequence":
            out.add("sequence")
            out |= {t["type"] for t in v["sequence"]}
        elif v["type"] == "optional":
            out.add("optional")
            if v["optional"]:
                out.add(v["optional"]["type"])
        else:
            out.add(v["type"])
    return out


def full(dest):
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = skipped = 0
    for d in sorted(SRC.iterdir()):
        if not (d / "test_data_set_0").is_dir():
            continue
        try:
            _, op, inputs, outputs, _ = load_case(d)
        except (Skip, Exception) as e:  # noqa: BLE001 - a case the harness cannot express is reported, not fatal
            skipped += 1
            print(f"skip {d.name}: {e}", file=sys.stderr)
            continue
        (dest / f"{d.name}.json").write_text(json.dumps({"op": op, "model": str(d / "model.onnx"), "inputs": inputs, "outputs": outputs}))
        written += 1
    print(written, "cases written,", skipped, "skipped")


def sample():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    first_ops, second_keys = set(), set()
    first, second = [], []
    for d in sorted(SRC.iterdir()):
        model_path = d / "model.onnx"
        if not (d / "test_data_set_0").is_dir() or not model_path.is_file() or model_path.stat().st_size > 8192:
            continue
        try:
            model, op, inputs, outputs, size = load_case(d)
        except Skip:
            continue
        if len(model.graph.node) != 1 or size > 16384 or not inputs:
            continue
        types = types_of(inputs) | types_of(outputs)
        if types <= FIRST_TYPES:
            if op in first_ops or len(first) >= FIRST_LIMIT:
                continue
            first_ops.add(op)
            first.append(d.name)
        else:
            key = (op, frozenset(types - FIRST_TYPES))
            if key in second_keys or len(second) >= SECOND_LIMIT:
                continue
            second_keys.add(key)
            second.append(d.name)
        shutil.copy(model_path, OUT / f"{d.name}.onnx")
        (OUT / f"{d.name}.json").write_text(json.dumps({"op": op, "inputs": inputs, "outputs": outputs}))
    print(len(first), "tests of the first seven types,", len(second), "of the others:", " ".join(second))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--all":
        full(sys.argv[2])
    else:
        sample()
