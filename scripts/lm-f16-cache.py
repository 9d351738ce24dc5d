"""A language model in the in-place layout (GroupQueryAttention) made to keep a float16 KV cache:
each attention's query, key and value are cast to float16 before it and its output back to
float32 after; past_key_values.* and present.* become float16; everything else is unchanged.
GroupQueryAttention's CUDA kernels take float16 (or bfloat16) only, so this is the variant whose
cache lives in GPU memory under CUDA (docs/INFERENCE.md, "GPU"); scripts/gpu-check.sh makes one
from models/tiny_lm_gqa and from the benchmark's small_lm_gqa.

    python3 scripts/lm-f16-cache.py IN_DIR OUT_DIR   (needs onnx)
"""
import pathlib
import shutil
import sys

import onnx
from onnx import TensorProto, helper

src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
m = onnx.load(src / "model.onnx")
g = m.graph
nodes = []
for n in g.node:
    if n.op_type != "GroupQueryAttention":
        nodes.append(n)
        continue
    for i in range(3):  # query, key, value
        half = f"{n.input[i]}_f16"
        nodes.append(helper.make_node("Cast", [n.input[i]], [half], to=TensorProto.FLOAT16))
        n.input[i] = half
    wide = n.output[0]
    n.output[0] = f"{wide}_f16"
    nodes.append(n)
    nodes.append(helper.make_node("Cast", [n.output[0]], [wide], to=TensorProto.FLOAT))
del g.node[:]
g.node.extend(nodes)
for v in list(g.input) + list(g.output):
    if v.name.startswith(("past_key_values.", "present.")):
        v.type.tensor_type.elem_type = TensorProto.FLOAT16
onnx.checker.check_model(m)
out.mkdir(parents=True, exist_ok=True)
onnx.save(m, out / "model.onnx")
if (src / "config.json").exists():
    shutil.copy(src / "config.json", out / "config.json")
print(f"{out / 'model.onnx'}: float16 KV cache")
