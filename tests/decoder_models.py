"""A small GPT-style decoder with a KV cache, built as an ONNX graph in code (the layout Optimum and
onnxruntime-genai write), for the decoder tests and benchmarks of issue 18.

Inputs: input_ids [B,S] int64, attention_mask [B,P+S] int64, position_ids [B,S] int64,
past_key_values.N.key/value [B,kv_heads,P,head_dim] float32. Outputs: logits [B,S,V],
present.N.key/value [B,kv_heads,P+S,head_dim]. Llama-shaped blocks: RMSNorm, rotary positions (from
position_ids), grouped-query attention (kv_heads < heads: queries reshaped to [B,kv,G,S,d] so one
broadcast MatMul serves every group), a causal + padding mask, SwiGLU MLP, final RMSNorm, lm_head.

Tokens are bytes (vocab 256). Weights are seeded; the lm_head is then fitted by ridge regression on
the final hidden states of text that ships with Python (the Zen of Python from the stdlib's `this`,
and stdlib module docstrings), so the next token is the text's next byte more often than chance and
top-1 agreement measures something. `hostile=True` moves a few hidden channels' scale from the final
norm's gain into lm_head's rows (the FP32 function is unchanged): every 32-row INT4 block of lm_head
holds one outlier row, the block's scale follows it and the other 31 rows round to zero, while INT8's
127 levels still resolve them.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
LM_HEAD_NODE = "/lm_head/MatMul"
HOSTILE_GAIN = 12.0  # INT4 (7 levels) rounds the block's other rows to 0; INT8 (127 levels) keeps them


@dataclass(frozen=True)
class DecoderConfig:
    layers: int = 2
    hidden: int = 128
    heads: int = 4
    kv_heads: int = 2
    ffn: int = 256
    vocab: int = 256
    max_positions: int = 4096
    rope_theta: float = 10000.0
    past_prefix: str = "past_key_values"  # or "past" (older Optimum exports)
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def past_names(config: DecoderConfig, layer: int) -> tuple[str, str]:
    return f"{config.past_prefix}.{layer}.key", f"{config.past_prefix}.{layer}.value"


# ---- text that ships with Python -----------------------------------------------------------------
def zen() -> str:
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen once
        import this
    return codecs.decode(this.s, "rot13")


def stdlib_text(modules: tuple[str, ...]) -> str:
    import importlib

    parts = []
    for name in modules:
        doc = importlib.import_module(name).__doc__ or ""
        parts.append(" ".join(doc.split()))
    return "\n".join(parts)


TRAIN_MODULES = ("json", "collections", "argparse", "logging", "pathlib", "unittest", "csv", "string")
HELD_OUT_MODULES = ("textwrap", "difflib", "heapq", "fractions", "shlex", "sched")


def train_text() -> str:
    return zen() + "\n" + stdlib_text(TRAIN_MODULES)


def held_out_text() -> str:
    return stdlib_text(HELD_OUT_MODULES)


def token_windows(text: str, length: int, count: int, seed: int = 0) -> np.ndarray:
    """`count` windows of `length + 1` byte tokens from `text` (seeded starts): inputs and next tokens."""
    data = np.frombuffer(text.encode("ascii", "replace"), dtype=np.uint8).astype(np.int64)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(data) - length - 1, size=count)
    return np.stack([data[s : s + length + 1] for s in starts])


def token_set(text: str, length: int, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A validation/calibration set (npz arrays) of prefill windows: input_ids, attention_mask,
    position_ids, empty past tensors are not stored (the reader makes them), and `next_tokens` (the
    byte after each position, for perplexity)."""
    windows = token_windows(text, length, count, seed)
    ids = windows[:, :-1]
    return {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "position_ids": np.broadcast_to(np.arange(length, dtype=np.int64), ids.shape).copy(),
        "next_tokens": windows[:, 1:],
    }


def feeds(config: DecoderConfig, ids: np.ndarray, past: dict[str, np.ndarray] | None = None) -> dict:
    """Session feeds for a prefill (past None: empty cache) or a step after `past`."""
    batch, seq = ids.shape
    p = 0 if not past else next(iter(past.values())).shape[2]
    out = {
        "input_ids": ids.astype(np.int64),
        "attention_mask": np.ones((batch, p + seq), np.int64),
        "position_ids": np.broadcast_to(np.arange(p, p + seq, dtype=np.int64), (batch, seq)).copy(),
    }
    for layer in range(config.layers):
        for name in past_names(config, layer):
            if past:
                out[name] = past[name]
            else:
                out[name] = np.zeros((batch, config.kv_heads, 0, config.head_dim), np.float32)
    return out


# ---- the graph -------------------------------------------------------------------------------------
class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def const(self, value, name: str | None = None, dtype=np.int64) -> str:
        self.count += 1
        name = name or f"const_{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def weight(self, array: np.ndarray, name: str) -> str:
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], node: str, outputs: int = 1, **attrs) -> str | list[str]:
        outs = [f"{node}/output_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=node, **attrs))
        return outs[0] if outputs == 1 else outs


def _rms_norm(g: _Graph, x: str, gain: str, node: str) -> str:
    sq = g.op("Mul", [x, x], f"{node}/Square")
    mean = g.op("ReduceMean", [sq], f"{node}/ReduceMean", axes=[-1], keepdims=1)
    eps = g.op("Add", [mean, g.const(1e-5, dtype=np.float32)], f"{node}/AddEps")
    rms = g.op("Sqrt", [eps], f"{node}/Sqrt")
    y = g.op("Div", [x, rms], f"{node}/Div")
    return g.op("Mul", [y, gain], f"{node}/Gain")


def _rope(g: _Graph, x: str, cos: str, sin: str, half: int, node: str) -> str:
    """x [B,h,S,d] rotated by position: (x1*cos - x2*sin, x2*cos + x1*sin), cos/sin [B,1,S,d/2]."""
    x1, x2 = g.op("Split", [x, g.const([half, half])], f"{node}/Split", outputs=2, axis=-1)
    a = g.op(
        "Sub", [g.op("Mul", [x1, cos], f"{node}/Mul1"), g.op("Mul", [x2, sin], f"{node}/Mul2")], f"{node}/Sub"
    )
    b = g.op(
        "Add", [g.op("Mul", [x2, cos], f"{node}/Mul3"), g.op("Mul", [x1, sin], f"{node}/Mul4")], f"{node}/Add"
    )
    return g.op("Concat", [a, b], f"{node}/Concat", axis=-1)


def init_weights(config: DecoderConfig) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(config.seed)
    d, f, hd = config.hidden, config.ffn, config.head_dim

    def lin(k: int, n: int, gain: float = 1.0) -> np.ndarray:
        return (rng.standard_normal((k, n)) * gain / np.sqrt(k)).astype(np.float32)

    w: dict[str, np.ndarray] = {
        "model.embed_tokens.weight": rng.standard_normal((config.vocab, d)).astype(np.float32)
    }
    for i in range(config.layers):
        p = f"model.layers.{i}"
        w[f"{p}.input_layernorm.weight"] = np.ones(d, np.float32)
        w[f"{p}.attn.q_proj.MatMul.weight"] = lin(d, config.heads * hd)
        w[f"{p}.attn.k_proj.MatMul.weight"] = lin(d, config.kv_heads * hd)
        w[f"{p}.attn.v_proj.MatMul.weight"] = lin(d, config.kv_heads * hd)
        w[f"{p}.attn.o_proj.MatMul.weight"] = lin(config.heads * hd, d, 0.5)
        w[f"{p}.post_attention_layernorm.weight"] = np.ones(d, np.float32)
        w[f"{p}.mlp.gate_proj.MatMul.weight"] = lin(d, f)
        w[f"{p}.mlp.up_proj.MatMul.weight"] = lin(d, f)
        w[f"{p}.mlp.down_proj.MatMul.weight"] = lin(f, d, 0.5)
    w["model.norm.weight"] = np.ones(d, np.float32)
    w["lm_head.MatMul.weight"] = lin(d, config.vocab)
    return w


def build(
    config: DecoderConfig, weights: dict[str, np.ndarray], hidden_output: bool = False
) -> onnx.ModelProto:
    """The decoder graph over `weights` (names as init_weights gives them); `hidden_output` adds the
    final-norm hidden state [B,S,D] as an output (for fitting lm_head)."""
    g = _Graph()
    d, hd, half = config.hidden, config.head_dim, config.head_dim // 2
    group = config.heads // config.kv_heads
    for name, array in weights.items():
        g.weight(array, name)

    # shapes: B, S from input_ids; T = total length from attention_mask; P = T - S
    ids_shape = g.op("Shape", ["input_ids"], "/model/ids_shape")
    mask_shape = g.op("Shape", ["attention_mask"], "/model/mask_shape")
    batch = g.op("Gather", [ids_shape, g.const([0])], "/model/batch", axis=0)  # 1-D, for Concat
    seq = g.op("Gather", [ids_shape, g.const([1])], "/model/seq", axis=0)
    seq_scalar = g.op("Gather", [ids_shape, g.const(1)], "/model/seq_scalar", axis=0)  # for Range
    total = g.op("Gather", [mask_shape, g.const(1)], "/model/total", axis=0)
    past_len = g.op("Sub", [total, seq_scalar], "/model/past_len")

    # causal + padding mask as an additive bias [B,1,1,S,T]
    key_pos = g.op("Range", [g.const(0), total, g.const(1)], "/model/mask/key_pos")
    query_pos = g.op("Range", [past_len, total, g.const(1)], "/model/mask/query_pos")
    query_col = g.op("Unsqueeze", [query_pos, g.const([1])], "/model/mask/query_col")
    causal = g.op("LessOrEqual", [key_pos, query_col], "/model/mask/causal")  # [S,T]
    pad = g.op("Cast", ["attention_mask"], "/model/mask/pad", to=TensorProto.BOOL)
    pad = g.op("Unsqueeze", [pad, g.const([1, 2, 3])], "/model/mask/pad5")  # [B,1,1,1,T]
    allowed = g.op("And", [causal, pad], "/model/mask/allowed")
    bias = g.op(
        "Where",
        [allowed, g.const(0.0, dtype=np.float32), g.const(-1e9, dtype=np.float32)],
        "/model/mask/bias",
    )

    # rotary tables gathered by position_ids: [B,1,S,d/2]
    inv = 1.0 / (config.rope_theta ** (np.arange(0, half, dtype=np.float64) / half))
    angles = np.outer(np.arange(config.max_positions), inv)
    cos_table = g.const(np.cos(angles), "model.rotary.cos", dtype=np.float32)
    sin_table = g.const(np.sin(angles), "model.rotary.sin", dtype=np.float32)
    cos = g.op(
        "Unsqueeze",
        [g.op("Gather", [cos_table, "position_ids"], "/model/rotary/cos", axis=0), g.const([1])],
        "/model/rotary/cos4",
    )
    sin = g.op(
        "Unsqueeze",
        [g.op("Gather", [sin_table, "position_ids"], "/model/rotary/sin", axis=0), g.const([1])],
        "/model/rotary/sin4",
    )

    x = g.op("Gather", ["model.embed_tokens.weight", "input_ids"], "/model/embed_tokens/Gather", axis=0)
    heads_shape = lambda h: g.op("Concat", [batch, seq, g.const([h, hd])], f"/model/shape_{h}", axis=0)  # noqa: E731
    q_shape, kv_shape = heads_shape(config.heads), heads_shape(config.kv_heads)
    grouped_q = g.op(
        "Concat", [batch, g.const([config.kv_heads, group]), seq, g.const([hd])], "/model/shape_gq", axis=0
    )
    merged = g.op("Concat", [batch, seq, g.const([config.heads * hd])], "/model/shape_merged", axis=0)
    scale = g.const(1.0 / np.sqrt(hd), dtype=np.float32)
    outputs_present = []
    for i in range(config.layers):
        p, n = f"model.layers.{i}", f"/model/layers.{i}"
        h = _rms_norm(g, x, f"{p}.input_layernorm.weight", f"{n}/input_layernorm")
        q = g.op("MatMul", [h, f"{p}.attn.q_proj.MatMul.weight"], f"{n}/attn/q_proj/MatMul")
        k = g.op("MatMul", [h, f"{p}.attn.k_proj.MatMul.weight"], f"{n}/attn/k_proj/MatMul")
        v = g.op("MatMul", [h, f"{p}.attn.v_proj.MatMul.weight"], f"{n}/attn/v_proj/MatMul")
        q = g.op(
            "Transpose",
            [g.op("Reshape", [q, q_shape], f"{n}/attn/q_reshape")],
            f"{n}/attn/q_t",
            perm=[0, 2, 1, 3],
        )
        k = g.op(
            "Transpose",
            [g.op("Reshape", [k, kv_shape], f"{n}/attn/k_reshape")],
            f"{n}/attn/k_t",
            perm=[0, 2, 1, 3],
        )
        v = g.op(
            "Transpose",
            [g.op("Reshape", [v, kv_shape], f"{n}/attn/v_reshape")],
            f"{n}/attn/v_t",
            perm=[0, 2, 1, 3],
        )
        q = _rope(g, q, cos, sin, half, f"{n}/attn/q_rotary")
        k = _rope(g, k, cos, sin, half, f"{n}/attn/k_rotary")
        past_k, past_v = past_names(config, i)
        present_k, present_v = f"present.{i}.key", f"present.{i}.value"
        g.nodes.append(helper.make_node("Concat", [past_k, k], [present_k], name=f"{n}/attn/k_cache", axis=2))
        g.nodes.append(helper.make_node("Concat", [past_v, v], [present_v], name=f"{n}/attn/v_cache", axis=2))
        outputs_present += [present_k, present_v]
        qg = g.op("Reshape", [q, grouped_q], f"{n}/attn/q_grouped")  # [B,kv,G,S,d]
        kt = g.op(
            "Unsqueeze",
            [g.op("Transpose", [present_k], f"{n}/attn/k_T", perm=[0, 1, 3, 2]), g.const([2])],
            f"{n}/attn/k_T5",
        )
        scores = g.op("Mul", [g.op("MatMul", [qg, kt], f"{n}/attn/qk/MatMul"), scale], f"{n}/attn/scale")
        probs = g.op("Softmax", [g.op("Add", [scores, bias], f"{n}/attn/mask")], f"{n}/attn/Softmax", axis=-1)
        vv = g.op("Unsqueeze", [present_v, g.const([2])], f"{n}/attn/v5")
        ctx = g.op("MatMul", [probs, vv], f"{n}/attn/pv/MatMul")  # [B,kv,G,S,d]
        ctx = g.op(
            "Reshape",
            [
                ctx,
                g.op(
                    "Concat",
                    [batch, g.const([config.heads]), seq, g.const([hd])],
                    f"{n}/attn/ctx_shape",
                    axis=0,
                ),
            ],
            f"{n}/attn/ctx_heads",
        )
        ctx = g.op(
            "Reshape",
            [g.op("Transpose", [ctx], f"{n}/attn/ctx_t", perm=[0, 2, 1, 3]), merged],
            f"{n}/attn/ctx_merged",
        )
        x = g.op(
            "Add",
            [x, g.op("MatMul", [ctx, f"{p}.attn.o_proj.MatMul.weight"], f"{n}/attn/o_proj/MatMul")],
            f"{n}/attn/residual",
        )
        h = _rms_norm(g, x, f"{p}.post_attention_layernorm.weight", f"{n}/post_attention_layernorm")
        gate = g.op("MatMul", [h, f"{p}.mlp.gate_proj.MatMul.weight"], f"{n}/mlp/gate_proj/MatMul")
        up = g.op("MatMul", [h, f"{p}.mlp.up_proj.MatMul.weight"], f"{n}/mlp/up_proj/MatMul")
        act = g.op("Mul", [gate, g.op("Sigmoid", [gate], f"{n}/mlp/act/Sigmoid")], f"{n}/mlp/act/Mul")
        down = g.op(
            "MatMul",
            [g.op("Mul", [act, up], f"{n}/mlp/Mul"), f"{p}.mlp.down_proj.MatMul.weight"],
            f"{n}/mlp/down_proj/MatMul",
        )
        x = g.op("Add", [x, down], f"{n}/mlp/residual")
    h = _rms_norm(g, x, "model.norm.weight", "/model/norm")
    g.nodes.append(helper.make_node("MatMul", [h, "lm_head.MatMul.weight"], ["logits"], name=LM_HEAD_NODE))

    kv = lambda name, past: helper.make_tensor_value_info(  # noqa: E731
        name, TensorProto.FLOAT, ["batch_size", config.kv_heads, past, hd]
    )
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info(
            "attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"]
        ),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
    ]
    for i in range(config.layers):
        inputs += [kv(name, "past_sequence_length") for name in past_names(config, i)]
    outputs = [
        helper.make_tensor_value_info(
            "logits", TensorProto.FLOAT, ["batch_size", "sequence_length", config.vocab]
        )
    ]
    outputs += [kv(name, "total_sequence_length") for name in outputs_present]
    if hidden_output:
        outputs.append(
            helper.make_tensor_value_info(h, TensorProto.FLOAT, ["batch_size", "sequence_length", d])
        )
    graph = helper.make_graph(g.nodes, "tiny_decoder", inputs, outputs, g.inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgekit-tests"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# ---- fitting and variants --------------------------------------------------------------------------
def _session(model: onnx.ModelProto):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def fit_lm_head(
    config: DecoderConfig, weights: dict[str, np.ndarray], length: int = 64, count: int = 96
) -> np.ndarray:
    """Ridge regression of one-hot next bytes on the final hidden states of the training text."""
    model = build(config, weights, hidden_output=True)
    session = _session(model)
    windows = token_windows(train_text(), length, count, seed=config.seed)
    hidden_name = model.graph.output[-1].name
    hidden = session.run([hidden_name], feeds(config, windows[:, :-1]))[0].reshape(-1, config.hidden)
    targets = np.zeros((hidden.shape[0], config.vocab), np.float32)
    targets[np.arange(hidden.shape[0]), windows[:, 1:].reshape(-1)] = 1.0
    gram = hidden.T @ hidden + 1e-1 * hidden.shape[0] * np.eye(config.hidden)
    w = np.linalg.solve(gram, hidden.T @ targets)
    return (w * 12.0 / max(1e-6, np.abs(hidden @ w).max())).astype(np.float32)


def make_hostile(
    config: DecoderConfig, weights: dict[str, np.ndarray], gain: float = HOSTILE_GAIN
) -> dict[str, np.ndarray]:
    """Move `gain` from the final norm's gain into lm_head's rows 0, 32, 64 ... (one per INT4 block)."""
    out = dict(weights)
    rows = np.arange(0, config.hidden, 32)
    norm = out["model.norm.weight"].copy()
    head = out["lm_head.MatMul.weight"].copy()
    norm[rows] /= gain
    head[rows] *= gain
    out["model.norm.weight"], out["lm_head.MatMul.weight"] = norm, head
    return out


def decoder(config: DecoderConfig | None = None, hostile: bool = False, fit: bool = True) -> onnx.ModelProto:
    config = config or DecoderConfig()
    weights = init_weights(config)
    if fit:
        weights["lm_head.MatMul.weight"] = fit_lm_head(config, weights)
    if hostile:
        weights = make_hostile(config, weights)
    return build(config, weights)


def save_decoder(
    path: str | Path, config: DecoderConfig | None = None, hostile: bool = False, fit: bool = True
) -> Path:
    path = Path(path)
    onnx.save(decoder(config, hostile, fit), str(path))
    return path


def with_past_prefix(config: DecoderConfig, prefix: str) -> DecoderConfig:
    return replace(config, past_prefix=prefix)


# ---- weight-only MatMulNBits (RTN), for the memory benchmark before branch int4's exporter -----------
def matmul_nbits(
    model: onnx.ModelProto, bits: int = 4, block: int = 32, keep: dict[str, int] | None = None
) -> onnx.ModelProto:
    """Every MatMul with a 2-D float weight becomes com.microsoft MatMulNBits (symmetric round-to-
    nearest, one fp32 scale per `block` weights along K, default zero point 2^(bits-1)); `keep` maps
    node names to other bit widths (8) or 0 (left in float)."""
    keep = keep or {}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name: t for t in out.graph.initializer}
    nodes = []
    for node in out.graph.node:
        width = keep.get(node.name, bits)
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2 or width == 0 or weight.dims[0] % block:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight).astype(np.float32)
        k, n = w.shape
        blocks = w.T.reshape(n, k // block, block)
        top = (1 << (width - 1)) - 1
        scale = np.abs(blocks).max(-1, keepdims=True) / top
        scale[scale == 0] = 1.0
        q = (np.clip(np.round(blocks / scale), -top - 1, top) + top + 1).astype(np.uint8)
        if width == 4:
            q = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
        name = weight.name
        out.graph.initializer.remove(weight)
        out.graph.initializer.extend(
            [
                numpy_helper.from_array(q, f"{name}_Q{width}"),
                numpy_helper.from_array(scale.reshape(n, k // block).astype(np.float32), f"{name}_scales"),
            ]
        )
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                [node.input[0], f"{name}_Q{width}", f"{name}_scales"],
                list(node.output),
                name=node.name + "_Q",
                domain="com.microsoft",
                K=k,
                N=n,
                bits=width,
                block_size=block,
            )
        )
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    if not any(o.domain == "com.microsoft" for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return out
