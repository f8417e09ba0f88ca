"""A small BERT/MiniLM-shaped sentence encoder built as an ONNX graph in code (issue 17).

Token embeddings (Gather on int64 `input_ids`) + position + token-type embeddings -> LayerNorm, then
`layers` encoder blocks (multi-head self-attention with the additive attention mask, residual +
LayerNorm, GELU feed-forward, residual + LayerNorm), then masked mean pooling -> `embedding` [batch,
hidden]. Batch and sequence are dynamic. Weights are deterministic and scaled like a trained BERT's
(N(0, 0.02) projections, LayerNorm gains near 1), so activations keep BERT-like ranges.

`outlier=True` multiplies one input channel (one row of W in x @ W) of `OUTLIER_LAYER`'s weight by
`OUTLIER_GAIN`: every INT4 block of that layer's columns then spends its 15 steps on that one row and
the other weights round to nothing, so all-INT4 fails the gate, while INT8 (255 steps) keeps them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCAB = 1000
MAX_POSITIONS = 512
OUTLIER_LAYER = "encoder.layer.1/ffn/up:matmul"  # odd characters on purpose: names are kept as given
OUTLIER_NORM = "encoder.layer.1.attention"  # the LayerNorm whose output the outlier layer reads
OUTLIER_GAIN = 128.0
OUTLIER_ROW = 7
OUTLIER_FFN_GAIN = 2.0
WEIGHT_GAIN = 0.5  # projections N(0, gain/sqrt(K)): layers that matter, as trained ones do


class _Graph:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def const(self, value: np.ndarray, name: str) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], node: str | None = None, **attrs: object) -> str:
        self.count += 1
        out = f"t{self.count}_{op_type.lower()}"
        self.nodes.append(
            helper.make_node(op_type, inputs, [out], name=node or f"{op_type}_{self.count}", **attrs)
        )
        return out

    def normal(self, shape: tuple[int, ...], std: float = 0.02) -> np.ndarray:
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    def linear(self, x: str, k: int, n: int, prefix: str, node: str | None = None, gain: float = 1.0) -> str:
        w = self.normal((k, n), gain * WEIGHT_GAIN / np.sqrt(k))
        if node == OUTLIER_LAYER and getattr(self, "outlier", False):
            w[OUTLIER_ROW] *= OUTLIER_GAIN
        y = self.op("MatMul", [x, self.const(w, f"{prefix}.weight")], node=node or f"{prefix}/matmul")
        b = self.normal((n,), 0.01)
        return self.op("Add", [y, self.const(b, f"{prefix}.bias")], node=f"{prefix}/add")

    def layer_norm(self, x: str, hidden: int, prefix: str) -> str:
        gamma = (1.0 + self.normal((hidden,), 0.05)).astype(np.float32)
        beta = self.normal((hidden,), 0.02)
        if getattr(self, "outlier", False) and prefix == OUTLIER_NORM:
            # the channel the outlier row reads is this small: the FP32 function stays an ordinary one
            gamma[OUTLIER_ROW] /= OUTLIER_GAIN
            beta[OUTLIER_ROW] /= OUTLIER_GAIN
        return self.op(
            "LayerNormalization",
            [x, self.const(gamma, f"{prefix}.gamma"), self.const(beta, f"{prefix}.beta")],
            node=f"{prefix}/layernorm",
            axis=-1,
            epsilon=1e-12,
        )

    def gelu(self, x: str, prefix: str) -> str:
        scaled = self.op("Mul", [x, self.const(np.float32(1 / np.sqrt(2)), f"{prefix}.rsqrt2")])
        erf = self.op("Erf", [scaled])
        one = self.op("Add", [erf, self.const(np.float32(1.0), f"{prefix}.one")])
        half = self.op("Mul", [x, self.const(np.float32(0.5), f"{prefix}.half")])
        return self.op("Mul", [half, one], node=f"{prefix}/gelu")


def encoder(
    hidden: int = 128,
    layers: int = 3,
    heads: int = 4,
    ffn: int = 512,
    vocab: int = VOCAB,
    token_types: bool = True,
    outlier: bool = False,
    seed: int = 17,
) -> onnx.ModelProto:
    """The encoder as an ONNX model (opset 17); see the module docstring."""
    g = _Graph(seed)
    g.outlier = outlier  # type: ignore[attr-defined]
    head_dim = hidden // heads
    # embeddings
    words = g.op(
        "Gather",
        [g.const(g.normal((vocab, hidden), 0.05), "embeddings.word"), "input_ids"],
        node="embeddings/word/gather",
        axis=0,
    )
    shape = g.op("Shape", ["input_ids"])
    seq = g.op("Gather", [shape, g.const(np.array([1], np.int64), "dim1")], axis=0)
    zero = g.const(np.array([0], np.int64), "zero1")
    positions = g.op(
        "Slice",
        [g.const(g.normal((MAX_POSITIONS, hidden), 0.05), "embeddings.position"), zero, seq, zero],
        node="embeddings/position/slice",
    )
    x = g.op("Add", [words, positions])
    if token_types:
        types = g.op(
            "Gather",
            [g.const(g.normal((2, hidden), 0.05), "embeddings.token_type"), "token_type_ids"],
            node="embeddings/token_type/gather",
            axis=0,
        )
        x = g.op("Add", [x, types])
    x = g.layer_norm(x, hidden, "embeddings")
    # additive attention mask: (1 - mask) * -10000, shaped [B, 1, 1, T]
    mask_f = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    inverted = g.op("Sub", [g.const(np.float32(1.0), "mask.one"), mask_f])
    bias = g.op("Mul", [inverted, g.const(np.float32(-10000.0), "mask.neg")])
    bias = g.op("Unsqueeze", [bias, g.const(np.array([1, 2], np.int64), "mask.axes")])
    split_shape = g.const(np.array([0, 0, heads, head_dim], np.int64), "attn.split_shape")
    merge_shape = g.const(np.array([0, 0, hidden], np.int64), "attn.merge_shape")
    scale = g.const(np.float32(1.0 / np.sqrt(head_dim)), "attn.scale")
    for i in range(layers):
        p = f"encoder.layer.{i}"

        def heads_of(t: str, perm: list[int]) -> str:
            return g.op("Transpose", [g.op("Reshape", [t, split_shape])], perm=perm)

        q = heads_of(g.linear(x, hidden, hidden, f"{p}.attention.query"), [0, 2, 1, 3])
        k = heads_of(g.linear(x, hidden, hidden, f"{p}.attention.key"), [0, 2, 3, 1])
        v = heads_of(g.linear(x, hidden, hidden, f"{p}.attention.value"), [0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
        probs = g.op("Softmax", [scores], axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, merge_shape])
        attn = g.linear(ctx, hidden, hidden, f"{p}.attention.output")
        x = g.layer_norm(g.op("Add", [attn, x]), hidden, f"{p}.attention")
        up_node = f"encoder.layer.{i}/ffn/up:matmul"
        h = g.gelu(g.linear(x, hidden, ffn, f"{p}.intermediate", node=up_node), f"{p}.ffn")
        # the outlier variant's block leans on its feed-forward (as some trained blocks do)
        down_gain = OUTLIER_FFN_GAIN if outlier and up_node == OUTLIER_LAYER else 1.0
        down = g.linear(h, ffn, hidden, f"{p}.output", gain=down_gain)
        x = g.layer_norm(g.op("Add", [down, x]), hidden, f"{p}.output")
    # masked mean pooling
    mask3 = g.op("Unsqueeze", [mask_f, g.const(np.array([-1], np.int64), "pool.axes")])
    summed = g.op(
        "ReduceSum", [g.op("Mul", [x, mask3]), g.const(np.array([1], np.int64), "pool.seq")], keepdims=0
    )
    count = g.op("ReduceSum", [mask_f, g.const(np.array([1], np.int64), "pool.seq2")], keepdims=1)
    count = g.op("Max", [count, g.const(np.float32(1e-9), "pool.eps")])
    g.nodes.append(helper.make_node("Div", [summed, count], ["embedding"], name="pooler/mean"))

    dims = ["batch", "sequence"]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, dims),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, dims),
    ]
    if token_types:
        inputs.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, dims))
    graph = helper.make_graph(
        g.nodes,
        "minilm_like_encoder",
        inputs,
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def matmul_layers(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMul nodes whose weight is an initializer (what INT4 quantizes)."""
    inits = {t.name for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits]


def token_samples(
    count: int, seq: int, vocab: int = VOCAB, token_types: bool = True, seed: int = 0
) -> dict[str, np.ndarray]:
    """`count` tokenised "sentences" of `seq` tokens, one per sample (arrays [count, 1, seq]): valid ids,
    varying real lengths (the rest padding: id 0, mask 0), token types 0 then 1 for a second segment."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((count, 1, seq), np.int64)
    mask = np.zeros((count, 1, seq), np.int64)
    types = np.zeros((count, 1, seq), np.int64)
    for i in range(count):
        length = int(rng.integers(max(2, seq // 3), seq + 1))
        ids[i, 0, :length] = rng.integers(1, vocab, size=length)
        mask[i, 0, :length] = 1
        types[i, 0, length // 2 : length] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    if token_types:
        out["token_type_ids"] = types
    return out


def save(model: onnx.ModelProto, directory: Path, name: str) -> Path:
    path = Path(directory) / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def save_samples(samples: dict[str, np.ndarray], directory: Path, name: str) -> Path:
    path = Path(directory) / f"{name}.npz"
    np.savez(path, **samples)
    return path
