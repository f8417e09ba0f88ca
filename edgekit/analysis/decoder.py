"""Decoders with a KV cache: recognise the layout Optimum and onnxruntime-genai write, and estimate
the memory of generating at a context length (`edgekit inspect --context N [--batch B]`).

The layout: inputs `input_ids` [B,S] int64, `attention_mask` [B,P+S], `position_ids` [B,S] (optional),
`past_key_values.N.key/value` (older Optimum: `past.N.key/value`) [B,kv_heads,P,head_dim]; outputs
`logits` [B,S,V] and `present.N.key/value` [B,kv_heads,P+S,head_dim]. Layers, kv-heads and head_dim
come from the cache inputs, heads from a fused attention op's attributes (GroupQueryAttention's
num_heads) or the query projection's width / head_dim, vocab from the logits or the embedding table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import onnx
from onnx import TensorProto, helper

from edgekit.memory_model import (
    DECODER_ACTIVATION,
    DECODER_FORMULA,
    MB,
    MEMORY_MODELS,
    PRECISIONS,
)

PAST = re.compile(r"^(past_key_values|past)\.(\d+)\.(key|value)$")
PRESENT = re.compile(r"^(present|present_key_values)\.(\d+)\.(key|value)$")
FUSED_ATTENTION = ("GroupQueryAttention", "MultiHeadAttention", "Attention", "PagedAttention")
ROLES = {
    "input_ids": "token ids [batch, sequence]",
    "attention_mask": "attention mask [batch, past + sequence] (1 = attend)",
    "position_ids": "positions [batch, sequence]",
    "logits": "next-token logits [batch, sequence, vocab]",
}


@dataclass(frozen=True)
class DecoderLayout:
    """What `recognize` found; `roles` maps every input/output name to what it is."""

    layers: int
    heads: int | None
    kv_heads: int
    head_dim: int
    vocab: int | None
    hidden: int | None
    cache_dtype: str
    past_prefix: str
    fused_attention: bool
    roles: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def cache_dtype_bytes(self) -> int:
        return helper.tensor_dtype_to_np_dtype(getattr(TensorProto, self.cache_dtype.upper())).itemsize

    def kv_bytes_per_token(self, dtype_bytes: int | None = None) -> int:
        """layers x 2 (key, value) x kv_heads x head_dim x dtype bytes."""
        return self.layers * 2 * self.kv_heads * self.head_dim * (dtype_bytes or self.cache_dtype_bytes)

    def past_names(self, layer: int) -> tuple[str, str]:
        return f"{self.past_prefix}.{layer}.key", f"{self.past_prefix}.{layer}.value"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kv_bytes_per_token"] = self.kv_bytes_per_token()
        return data


def _dims(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    out: list[int | str | None] = []
    for dim in vi.type.tensor_type.shape.dim:
        out.append(dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None))
    return out


def recognize(model: onnx.ModelProto) -> DecoderLayout | None:
    """The decoder layout of `model`, or None when it is not a decoder with a KV cache."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    inputs = {vi.name: vi for vi in graph.input if vi.name not in inits}
    outputs = {vi.name: vi for vi in graph.output}
    past = {n: PAST.match(n) for n in inputs}
    past = {n: m for n, m in past.items() if m}
    if "input_ids" not in inputs or not past:
        return None
    layers = sorted({int(m.group(2)) for m in past.values()})
    prefixes = {m.group(1) for m in past.values()}
    notes: list[str] = []
    if layers != list(range(len(layers))) or len(past) != 2 * len(layers):
        notes.append(f"cache inputs are not a key and a value for layers 0..{len(layers) - 1}")
    first = inputs[sorted(past)[0]]
    shape = _dims(first)
    if len(shape) != 4 or not isinstance(shape[1], int) or not isinstance(shape[3], int):
        return None  # a cache we cannot size: [B, kv_heads, P, head_dim] with static heads and dim
    kv_heads, head_dim = int(shape[1]), int(shape[3])
    cache_dtype = TensorProto.DataType.Name(first.type.tensor_type.elem_type).lower()

    heads, fused = None, False
    for node in graph.node:
        if node.op_type in FUSED_ATTENTION:
            fused = True
            for attr in node.attribute:
                if attr.name == "num_heads":
                    heads = int(attr.i)
            break
    if heads is None:
        heads = _heads_from_query(graph, inits, head_dim)
    if heads is None:
        notes.append(
            "query heads not found (no fused attention op, no q_proj/query weight): taken as kv-heads"
        )

    vocab, hidden = None, None
    logits = outputs.get("logits")
    if logits is not None:
        last = _dims(logits)[-1:]
        vocab = int(last[0]) if last and isinstance(last[0], int) else None
    for node in graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == "input_ids":
            table = inits.get(node.input[0])
            if table is not None and len(table.dims) == 2:
                vocab = vocab or int(table.dims[0])
                hidden = int(table.dims[1])
            break

    roles = {name: ROLES[name] for name in list(inputs) + list(outputs) if name in ROLES}
    for name, match in past.items():
        roles[name] = (
            f"KV cache in: layer {match.group(2)} {match.group(3)} [batch, kv_heads, past, head_dim]"
        )
    for name in outputs:
        match = PRESENT.match(name)
        if match:
            roles[name] = (
                f"KV cache out: layer {match.group(2)} {match.group(3)} [batch, kv_heads, past + sequence, head_dim]"
            )
    for name in list(inputs) + list(outputs):
        roles.setdefault(name, "other")
    return DecoderLayout(
        layers=len(layers),
        heads=heads or kv_heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        vocab=vocab,
        hidden=hidden,
        cache_dtype=cache_dtype,
        past_prefix=sorted(prefixes)[0],
        fused_attention=fused,
        roles=roles,
        notes=notes,
    )


def _heads_from_query(graph: onnx.GraphProto, inits: Mapping[str, TensorProto], head_dim: int) -> int | None:
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm", "MatMulNBits") or not any(
            key in (node.name + " ".join(node.input)) for key in ("q_proj", "query", "/q/", "wq")
        ):
            continue
        if node.op_type == "MatMulNBits":
            width = next((a.i for a in node.attribute if a.name == "N"), None)
        else:
            weight = inits.get(node.input[1]) if len(node.input) > 1 else None
            width = weight.dims[-1] if weight is not None and len(weight.dims) == 2 else None
        if width and width % head_dim == 0:
            return int(width) // head_dim
    return None


# ---- memory at a context length ----------------------------------------------------------------------
def prefill_activation_bytes(
    layout: DecoderLayout, context: int, batch: int, dtype_bytes: int, ffn: int
) -> dict[str, int]:
    """The tensors alive at the prefill's peak, for a prompt of `context` tokens (S = T = context):
    two attention-score tensors [B,heads,S,T] (a MatMul's output and its successor; 0 with a fused
    attention op, which does not materialise them), the additive mask [B,S,T], the MLP's three
    [B,S,ffn] tensors, the logits [B,S,V] and the present KV of every layer (outputs live to the end)."""
    s = t = context
    hidden = layout.hidden or layout.heads * layout.head_dim
    scores = 0 if layout.fused_attention else 2 * batch * (layout.heads or 1) * s * t * dtype_bytes
    return {
        "attention_scores": scores,
        "mask": 0 if layout.fused_attention else batch * s * t * dtype_bytes,
        "mlp": 3 * batch * s * ffn * dtype_bytes,
        "hidden": 4 * batch * s * hidden * dtype_bytes,
        "logits": batch * s * (layout.vocab or 0) * dtype_bytes,
        "kv_cache": batch * context * layout.kv_bytes_per_token(dtype_bytes),
    }


def ffn_width(model: onnx.ModelProto, hidden: int | None) -> int:
    """The widest MatMul output other than the vocab projection (the MLP's intermediate width)."""
    widest = 0
    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "MatMul" and len(node.input) > 1 and node.input[1] in inits:
            dims = inits[node.input[1]].dims
            if len(dims) == 2 and (hidden is None or dims[0] == hidden) and "lm_head" not in node.name:
                widest = max(widest, int(dims[1]))
        elif node.op_type == "MatMulNBits" and "lm_head" not in node.name:
            widest = max(widest, next((int(a.i) for a in node.attribute if a.name == "N"), 0))
    return widest or (hidden or 0) * 4


def context_memory(
    layout: DecoderLayout,
    weight_bytes_by_class: Mapping[str, Mapping[str, int]],
    nodes: int,
    context: int,
    batch: int,
    ffn: int,
) -> dict[str, Any]:
    """Per runtime and precision: weights, KV cache, prefill activations, overhead and the total
    (see DECODER_FORMULA). Activations and the cache stay at the cache's dtype for weight-only
    precisions (int8/int4 weights, float compute) and are 2 bytes at fp16."""
    kv_dtype = layout.cache_dtype_bytes
    rows: dict[str, Any] = {
        "context": context,
        "batch": batch,
        "kv_bytes_per_token": layout.kv_bytes_per_token(),
    }
    per_runtime: dict[str, dict[str, int]] = {}
    parts: dict[str, dict[str, int]] = {}
    for precision in PRECISIONS:
        dtype = 2 if precision == "fp16" else kv_dtype
        prefill = prefill_activation_bytes(layout, context, batch, dtype, ffn)
        decode = 2 * prefill["kv_cache"] + batch * (layout.vocab or 0) * dtype  # past fed + present out
        weights = sum(weight_bytes_by_class[precision].values())
        parts[precision] = {
            "weights": weights,
            "kv_cache": prefill["kv_cache"],
            "prefill_activations": sum(prefill.values()),
            "decode_activations": decode,
            **{f"prefill_{k}": v for k, v in prefill.items()},
        }
        for runtime, model in MEMORY_MODELS.items():
            base = model.estimate(weight_bytes_by_class[precision], 0, nodes)
            factor = DECODER_ACTIVATION.get(runtime, 1.0)
            per_runtime.setdefault(runtime, {})[precision] = int(
                base + factor * max(sum(prefill.values()), decode)
            )
            parts[precision][f"{runtime}_overhead"] = int(
                model.overhead_mb * MB + model.per_100_nodes_mb * MB * nodes / 100
            )
    rows["parts"] = parts
    rows["runtime_memory_bytes"] = per_runtime
    rows["formula"] = DECODER_FORMULA
    return rows
