#!/usr/bin/env python3
"""Generates models/tiny_lm/: a tiny decoder-only language model in the layout Hugging Face
Optimum and onnxruntime-genai export (dev-time; the outputs are checked in).

    inputs   input_ids int64[batch, seq], attention_mask int64[batch, past + seq],
             position_ids int64[batch, seq], past_key_values.{0,1}.{key,value}
             float32[batch, 4, past, 16]
    outputs  logits float32[batch, seq, 260], present.{0,1}.{key,value} float32[batch, 4, past + seq, 16]

2 layers, 4 heads of 16, hidden 64, a byte vocabulary: ids 0..255 are the bytes, 256 <bos>,
257 <eos>, 258 <pad>, 259 unused. No real weights can be downloaded where this project is
built, so the weights are made here, deterministically: the embedding and the output
projection are a rank-64 factorisation (SVD) of the log bigram probabilities of the small
English text below (so greedy and sampled text looks like text, not noise), and the two
attention+MLP layers have random weights scaled so that what came before changes the next
token (a wrong KV cache changes the output). Left padding works: padded keys are masked, and
positions come from `position_ids`.

Reference outputs (models/tiny_lm/reference.json) are computed with ONNX Runtime in Python:
greedy tokens for a few prompts, decoded step by step with the KV cache, and checked against
a numpy forward pass that recomputes the whole sequence without a cache. The smallest gap
between the best and second-best logit over those steps is recorded: a sum in another order
cannot flip those tokens.

Needs `pip install onnx==1.21.0 numpy onnxruntime`.

The benchmark's larger model (benches/language-model.mjs, "small_lm") comes from the same
script with its size from the environment: LM_OUT (a directory), LM_HIDDEN, LM_HEADS, LM_LAYERS,
LM_FF, and LM_BENCH_ONLY=1 (write model.onnx and config.json only: no reference outputs). With
none of them set it writes models/tiny_lm/ exactly as committed.

LM_LAYOUT=gqa writes the same model (the same weights: the random draws do not depend on the
layout) with each attention as ONNX Runtime's com.microsoft GroupQueryAttention, the layout
onnxruntime-genai exports, whose KV cache can be one buffer bound as both past and present and
updated in place (docs/INFERENCE.md, "KV-cache layouts"): the same inputs and outputs by name,
past_key_values.* being a buffer of some capacity with each row's tokens at its start (right
padding), and attention_mask giving each row's length (GroupQueryAttention's seqlens_k and
total_sequence_length are computed from it in the graph). By default into models/tiny_lm_gqa/
(committed; its greedy tokens are tiny_lm's, checked here against the numpy forward pass too).
"""
import json
import os
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = pathlib.Path(os.environ.get("LM_OUT") or pathlib.Path(__file__).resolve().parent.parent / "models" / (
    "tiny_lm_gqa" if os.environ.get("LM_LAYOUT") == "gqa" else "tiny_lm"))
OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(20261126)

V = 260
D = int(os.environ.get("LM_HIDDEN", 64))
H = int(os.environ.get("LM_HEADS", 4))
LAYERS = int(os.environ.get("LM_LAYERS", 2))
FF = int(os.environ.get("LM_FF", 128))
BENCH_ONLY = os.environ.get("LM_BENCH_ONLY") == "1"
# "optimum" (default): attention from plain ops, present.* = Concat(past, new) (Hugging Face Optimum's
# layout). "gqa": the same weights with each attention as ONNX Runtime's com.microsoft
# GroupQueryAttention (onnxruntime-genai's layout), whose cache can be one buffer updated in place.
LAYOUT = os.environ.get("LM_LAYOUT", "optimum")
assert LAYOUT in ("optimum", "gqa"), "LM_LAYOUT is optimum or gqa"
DH = D // H
assert D <= V and D % H == 0 and DH % 2 == 0, "hidden must be at most 260 and split into heads of an even size"
BOS, EOS, PAD = 256, 257, 258

CORPUS = """
The agents meet at the market every morning. One of them sells bread and the other sells
apples. They talk about the weather, the price of flour, and the news from the harbour.
When the bell rings, they count their coins and go home.

A small robot lives in the garden. It waters the plants, it watches the bees, and it writes
a short note every evening: the sun was warm, the rain was late, the roses are open.

Two friends send letters to each other. The first one asks a question and the second one
answers it. Then the second one asks a question of its own. The letters are short, and
they are always kind. Each letter ends with the same words: see you soon.

The river runs past the old mill. In the spring the water is high and fast; in the summer
it is slow and clear. Children throw stones into it and count the rings on the water.

Every tick, each agent reads its messages, thinks for a moment, and writes an answer. The
clock does not wait for anyone. What happened once can happen again in exactly the same way.

Hello, how are you today? I am well, thank you. The weather is fine and the work is done.
What are you going to do next? I think I will read a book and then go for a walk.
""".strip()


# ---- bigram statistics and the embedding / output factorisation ----------------------------
counts = np.full((V, V), 0.05)
for para in CORPUS.split("\n\n"):
    ids = [BOS] + list(para.replace("\n", " ").encode()) + [EOS]
    for a, b in zip(ids, ids[1:]):
        counts[a, b] += 1.0
counts[:, PAD] = 1e-6
counts[:, BOS] = 1e-6
logp = np.log(counts / counts.sum(axis=1, keepdims=True))
u, s, vt = np.linalg.svd(logp - logp.mean(axis=1, keepdims=True))
# The output projection is orthonormal, so a change of the residual stream by some amount changes
# the logits by as much (not amplified by the largest singular value).
embed = (u[:, :D] * s[:D]).astype(np.float32)
w_out = vt[:D].astype(np.float32)
b_out = logp.mean(axis=0).astype(np.float32) * 0.0


def rand(*shape, scale):
    return (rng.normal(size=shape) * scale).astype(np.float32)


ATTN_OUT, MLP_OUT = 0.15, 0.1
layers = []
for _ in range(LAYERS):
    layers.append({
        "wq": rand(D, D, scale=1 / np.sqrt(D)) * 2.0,
        "wk": rand(D, D, scale=1 / np.sqrt(D)) * 2.0,
        "wv": rand(D, D, scale=1 / np.sqrt(D)),
        "wo": rand(D, D, scale=ATTN_OUT / np.sqrt(D)),
        "w1": rand(D, FF, scale=1 / np.sqrt(D)),
        "w2": rand(FF, D, scale=MLP_OUT / np.sqrt(FF)),
    })
inv_freq = (1.0 / (100.0 ** (np.arange(0, D, 2) / D))).astype(np.float32)
PE_SCALE = np.float32(0.5)


# ---- the ONNX graph ---------------------------------------------------------------------------
def build():
    inits = [
        numpy_helper.from_array(embed, "embed"),
        numpy_helper.from_array(w_out, "w_out"),
        numpy_helper.from_array(b_out, "b_out"),
        numpy_helper.from_array(inv_freq, "inv_freq"),
        numpy_helper.from_array(np.array(PE_SCALE, np.float32), "pe_scale"),
        numpy_helper.from_array(np.array(1e-5, np.float32), "eps"),
        numpy_helper.from_array(np.array(1 / np.sqrt(DH), np.float32), "qk_scale"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero_f"),
        numpy_helper.from_array(np.array(-1e9, np.float32), "neg_big"),
        numpy_helper.from_array(np.array(0, np.int64), "zero_i"),
        numpy_helper.from_array(np.array(1, np.int64), "one_i"),
        numpy_helper.from_array(np.array([-1], np.int64), "axes_last"),
        numpy_helper.from_array(np.array([0], np.int64), "axes0"),
        numpy_helper.from_array(np.array([1], np.int64), "axes1"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "axes12"),
        numpy_helper.from_array(np.array([0, 0, H, DH], np.int64), "split_heads"),
        numpy_helper.from_array(np.array([0, 0, D], np.int64), "merge_heads"),
    ]
    n = []
    node = lambda op, i, o, **kw: n.append(helper.make_node(op, i, o, **kw))  # noqa: E731

    node("Gather", ["embed", "input_ids"], ["x0"])
    # Sinusoidal positions from position_ids, added to each attention's input.
    node("Cast", ["position_ids"], ["pos_f"], to=TensorProto.FLOAT)
    node("Unsqueeze", ["pos_f", "axes_last"], ["pos_u"])
    node("Mul", ["pos_u", "inv_freq"], ["angles"])
    node("Sin", ["angles"], ["pe_sin"])
    node("Cos", ["angles"], ["pe_cos"])
    node("Concat", ["pe_sin", "pe_cos"], ["pe_raw"], axis=-1)
    node("Mul", ["pe_raw", "pe_scale"], ["pe"])
    if LAYOUT == "gqa":
        # GroupQueryAttention masks by lengths: row b's cache holds attention_mask[b]'s ones, at
        # its start (right padding), and total_sequence_length is the mask's width.
        node("ReduceSum", ["attention_mask", "axes1"], ["mask_sum"], keepdims=0)
        node("Sub", ["mask_sum", "one_i"], ["seqlens_k64"])
        node("Cast", ["seqlens_k64"], ["seqlens_k"], to=TensorProto.INT32)
        node("Shape", ["attention_mask"], ["mask_shape"])
        node("Gather", ["mask_shape", "one_i"], ["T"])
        node("Cast", ["T"], ["total_len"], to=TensorProto.INT32)
    # Mask: key j is visible to query i when j <= i's index in the cache and attention_mask[j] = 1.
    else:
        node("Shape", ["input_ids"], ["ids_shape"])
        node("Gather", ["ids_shape", "one_i"], ["S"])
        node("Shape", ["attention_mask"], ["mask_shape"])
        node("Gather", ["mask_shape", "one_i"], ["T"])
        node("Sub", ["T", "S"], ["P"])
        node("Range", ["zero_i", "T", "one_i"], ["kpos"])
        node("Range", ["P", "T", "one_i"], ["qpos"])
        node("Unsqueeze", ["kpos", "axes0"], ["kpos_row"])
        node("Unsqueeze", ["qpos", "axes1"], ["qpos_col"])
        node("LessOrEqual", ["kpos_row", "qpos_col"], ["causal"])
        node("Cast", ["attention_mask"], ["pad_ok"], to=TensorProto.BOOL)
        node("Unsqueeze", ["pad_ok", "axes12"], ["pad_ok4"])
        node("And", ["causal", "pad_ok4"], ["visible"])
        node("Where", ["visible", "zero_f", "neg_big"], ["bias"])

    def rmsnorm(x, out):
        node("Mul", [x, x], [out + "_sq"])
        node("ReduceMean", [out + "_sq", "axes_last"], [out + "_ms"], keepdims=1)
        node("Add", [out + "_ms", "eps"], [out + "_mse"])
        node("Sqrt", [out + "_mse"], [out + "_rms"])
        node("Div", [x, out + "_rms"], [out])

    x = "x0"
    for l, w in enumerate(layers):
        p = f"l{l}_"
        for k in ("wq", "wk", "wv", "wo", "w1", "w2"):
            inits.append(numpy_helper.from_array(w[k], p + k))
        rmsnorm(x, p + "hn")
        node("Add", [p + "hn", "pe"], [p + "h"])
        if LAYOUT == "gqa":
            for k in ("q", "k", "v"):
                node("MatMul", [p + "h", p + "w" + k], [p + k + "_flat"])
            node("GroupQueryAttention", [p + "q_flat", p + "k_flat", p + "v_flat", f"past_key_values.{l}.key",
                                         f"past_key_values.{l}.value", "seqlens_k", "total_len"],
                 [p + "o", f"present.{l}.key", f"present.{l}.value"], domain="com.microsoft",
                 num_heads=H, kv_num_heads=H, scale=float(1 / np.sqrt(DH)))
        for k in ("q", "k", "v") if LAYOUT == "optimum" else ():
            node("MatMul", [p + "h", p + "w" + k], [p + k + "_flat"])
            node("Reshape", [p + k + "_flat", "split_heads"], [p + k + "_bshd"])
            node("Transpose", [p + k + "_bshd"], [p + k + "_new"], perm=[0, 2, 1, 3])
        if LAYOUT == "optimum":
            node("Concat", [f"past_key_values.{l}.key", p + "k_new"], [f"present.{l}.key"], axis=2)
            node("Concat", [f"past_key_values.{l}.value", p + "v_new"], [f"present.{l}.value"], axis=2)
            node("Transpose", [f"present.{l}.key"], [p + "kt"], perm=[0, 1, 3, 2])
            node("MatMul", [p + "q_new", p + "kt"], [p + "scores_raw"])
            node("Mul", [p + "scores_raw", "qk_scale"], [p + "scores_scaled"])
            node("Add", [p + "scores_scaled", "bias"], [p + "scores"])
            node("Softmax", [p + "scores"], [p + "probs"], axis=-1)
            node("MatMul", [p + "probs", f"present.{l}.value"], [p + "o_bhsd"])
            node("Transpose", [p + "o_bhsd"], [p + "o_bshd"], perm=[0, 2, 1, 3])
            node("Reshape", [p + "o_bshd", "merge_heads"], [p + "o"])
        node("MatMul", [p + "o", p + "wo"], [p + "attn"])
        node("Add", [x, p + "attn"], [p + "x1"])
        rmsnorm(p + "x1", p + "mn")
        node("MatMul", [p + "mn", p + "w1"], [p + "ff1"])
        node("Relu", [p + "ff1"], [p + "ff1r"])
        node("MatMul", [p + "ff1r", p + "w2"], [p + "ff2"])
        node("Add", [p + "x1", p + "ff2"], [p + "x2"])
        x = p + "x2"
    node("MatMul", [x, "w_out"], ["logits_raw"])
    node("Add", ["logits_raw", "b_out"], ["logits"])

    f = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", f, ["batch_size", "sequence_length", V])]
    for l in range(LAYERS):
        for kv in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{l}.{kv}", f, ["batch_size", H, "past_sequence_length", DH]))
            outputs.append(helper.make_tensor_value_info(f"present.{l}.{kv}", f, ["batch_size", H, "total_sequence_length", DH]))
    used = {i for node_ in n for i in node_.input}
    inits = [t for t in inits if t.name in used]
    graph = helper.make_graph(n, "tiny_lm", inputs, outputs, initializer=inits)
    # IR version 13 at most (what onnx 1.21 writes): ONNX Runtime 1.30 reads no later one, and a
    # newer onnx package would otherwise write one it refuses.
    model = helper.make_model(graph, producer_name="lockstep-gen-lm", ir_version=min(onnx.IR_VERSION, 13), opset_imports=[
        helper.make_opsetid("", 21)] + ([helper.make_opsetid("com.microsoft", 1)] if LAYOUT == "gqa" else []))
    onnx.checker.check_model(model)
    return model


# ---- a numpy forward pass without a cache (the independent check) ----------------------------
def numpy_logits(ids):
    """Logits of the last position of one unpadded sequence, recomputed from scratch."""
    ids = np.array(ids)
    t = len(ids)
    x = embed[ids]
    ang = np.arange(t, dtype=np.float32)[:, None] * inv_freq
    pe = np.concatenate([np.sin(ang), np.cos(ang)], axis=-1) * PE_SCALE
    causal = np.tril(np.ones((t, t), bool))

    def norm(v):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + 1e-5)

    for w in layers:
        h = norm(x) + pe
        q, k, v = [(h @ w[m]).reshape(t, H, DH).transpose(1, 0, 2) for m in ("wq", "wk", "wv")]
        sc = q @ k.transpose(0, 2, 1) / np.sqrt(DH)
        sc = np.where(causal, sc, -1e9)
        pr = np.exp(sc - sc.max(-1, keepdims=True))
        pr /= pr.sum(-1, keepdims=True)
        o = (pr @ v).transpose(1, 0, 2).reshape(t, D)
        x = x + o @ w["wo"]
        x = x + np.maximum(norm(x) @ w["w1"], 0) @ w["w2"]
    return (x @ w_out + b_out)[-1]


def main():
    import onnxruntime as ort

    model = build()
    path = OUT / "model.onnx"
    onnx.save(model, path)
    if BENCH_ONLY:
        write_config()
        print(f"{path}: {path.stat().st_size} bytes (hidden {D}, {H} heads, {LAYERS} layers, ff {FF})")
        return
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    # GroupQueryAttention's cache is a buffer of fixed capacity (rows' tokens at its start); the
    # Optimum layout's starts empty and grows.
    CAP = 64 if LAYOUT == "gqa" else 0

    def empty_past(b):
        return {f"past_key_values.{l}.{kv}": np.zeros((b, H, CAP, DH), np.float32) for l in range(LAYERS) for kv in ("key", "value")}

    def greedy(prompt, steps):
        ids = [BOS] + list(prompt.encode())
        feeds = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64),
                 "position_ids": np.arange(len(ids), dtype=np.int64)[None], **empty_past(1)}
        out, margins, first_logits = [], [], None
        seq = list(ids)
        for _ in range(steps):
            res = sess.run(None, feeds)
            logits = res[0][0, -1]
            if first_logits is None:
                first_logits = logits
            ref = numpy_logits(seq)
            assert np.allclose(logits, ref, atol=1e-3), f"cache and recompute disagree: {np.abs(logits - ref).max()}"
            top = np.sort(logits)[-2:]
            margins.append(float(top[1] - top[0]))
            nxt = int(np.argmax(logits))
            out.append(nxt)
            seq.append(nxt)
            if nxt == EOS:
                break
            past = {f"past_key_values.{l}.{kv}": res[1 + 2 * l + (kv == "value")] for l in range(LAYERS) for kv in ("key", "value")}
            feeds = {"input_ids": np.array([[nxt]], np.int64), "attention_mask": np.ones((1, len(seq)), np.int64),
                     "position_ids": np.array([[len(seq) - 1]], np.int64), **past}
        return out, margins, first_logits

    prompts = ["Hello", "The agents", "Two friends send", "What are you going to do next?", "x"]
    cases = []
    all_margins = []
    for p in prompts:
        tokens, margins, first = greedy(p, 24)
        all_margins += margins
        cases.append({
            "prompt": p,
            "prompt_ids": [BOS] + list(p.encode()),
            "greedy": tokens,
            "text": bytes(t for t in tokens if t < 256).decode("utf-8", "replace"),
            "first_logits_top5": [[int(i), float(first[i])] for i in np.argsort(first)[::-1][:5]],
        })

    # The layers matter: without them (embedding straight to the output), greedy text differs.
    saved = [dict(w) for w in layers]
    for w in layers:
        w["wo"] = w["wo"] * 0
        w["w2"] = w["w2"] * 0
    ablated = []
    for p in prompts:
        seq = [BOS] + list(p.encode())
        toks = []
        for _ in range(24):
            nxt = int(np.argmax(numpy_logits(seq)))
            toks.append(nxt)
            seq.append(nxt)
            if nxt == EOS:
                break
        ablated.append(toks)
    for w, s in zip(layers, saved):
        w.update(s)
    assert any(a != c["greedy"] for a, c in zip(ablated, cases)), "the layers do not change any greedy output"

    # Padding (left for the Optimum layout, right for GroupQueryAttention's): a batch of two
    # prompts of different lengths gives each one's logits.
    a, b = [BOS] + list(b"Hi"), [BOS] + list(b"The river")
    t = max(len(a), len(b))
    ids = np.full((2, t), PAD, np.int64)
    mask = np.zeros((2, t), np.int64)
    pos = np.zeros((2, t), np.int64)
    for r, s in enumerate((a, b)):
        at = slice(t - len(s), t) if LAYOUT == "optimum" else slice(0, len(s))
        ids[r, at] = s
        mask[r, at] = 1
        pos[r, at] = np.arange(len(s))
    res = sess.run(None, {"input_ids": ids, "attention_mask": mask, "position_ids": pos, **empty_past(2)})
    for r, s in enumerate((a, b)):
        last = -1 if LAYOUT == "optimum" else len(s) - 1
        assert np.allclose(res[0][r, last], numpy_logits(s), atol=1e-3), "padding changes a row"

    info = {
        **({"layout": LAYOUT} if LAYOUT != "optimum" else {}), "vocab": V, "hidden": D, "heads": H, "head_dim": DH, "layers": LAYERS,
        "bos": BOS, "eos": EOS, "pad": PAD,
        "min_top2_margin": min(all_margins),
        "cases": cases,
    }
    (OUT / "reference.json").write_text(json.dumps(info, indent=1) + "\n")
    write_config()
    print(f"{path}: {path.stat().st_size} bytes; min top-2 margin {min(all_margins):.4f}")
    for c in cases:
        print(repr(c["prompt"]), "->", repr(c["text"]))


def write_config():
    (OUT / "config.json").write_text(json.dumps({
        "model_type": "lockstep-tiny-lm", "vocab_size": V, "hidden_size": D, "num_attention_heads": H,
        "num_key_value_heads": H, "head_dim": DH, "num_hidden_layers": LAYERS,
        "bos_token_id": BOS, "eos_token_id": EOS, "pad_token_id": PAD,
        "tokenizer": "bytes: ids 0..255 are the bytes; 256 <bos>, 257 <eos>, 258 <pad>",
        **({"attention": "com.microsoft GroupQueryAttention (KV cache in place)"} if LAYOUT == "gqa" else {}),
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
