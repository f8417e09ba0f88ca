"""Which MatMul/Gemm weights an ONNX model has, and the three ways edgekit writes them quantized:

- `fake_quant`: the float model with each weight replaced by its dequantized values (what the search
  scores: the same numbers every artifact computes with, at float speed);
- `to_matmulnbits`: onnxruntime's com.microsoft MatMulNBits (packed 4/8-bit blocks, per-block scales
  and zero points) for MatMul and Gemm;
- `to_block_dq`: standard ONNX DequantizeLinear on the weight (opset 21: int4/uint4 and `block_size`),
  what TensorRT >= 10 reads as weight-only INT4 (and INT8 per channel), and any runtime with opset 21.

Layers are named by their node names in the source model, which these rewrites keep.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgekit.int4.blocks import Blocks

LEVELS = ("int4", "int8", "float")  # from smallest to largest


@dataclass(frozen=True)
class Layer:
    node: str  # node name (the user's)
    op: str  # MatMul | Gemm
    weight: str  # the initializer
    k: int
    n: int
    trans_b: bool  # Gemm with transB=1: the initializer is Wᵀ [N, K]

    @property
    def params(self) -> int:
        return self.k * self.n

    @property
    def fp32_bytes(self) -> int:
        return self.params * 4


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def weight_layers(model: onnx.ModelProto) -> list[Layer]:
    """MatMul/Gemm nodes whose second input is a float 2-D initializer (Gemm: alpha 1, A not
    transposed), in graph order. Unnamed nodes are skipped (a layer is reported by name)."""
    inits = {t.name: t for t in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm") or not node.name or len(node.input) < 2:
            continue
        init = inits.get(node.input[1])
        if init is None or len(init.dims) != 2 or init.data_type != TensorProto.FLOAT:
            continue
        trans_b = False
        if node.op_type == "Gemm":
            if _attr(node, "alpha", 1.0) != 1.0 or _attr(node, "transA", 0):
                continue
            trans_b = bool(_attr(node, "transB", 0))
        rows, cols = int(init.dims[0]), int(init.dims[1])
        k, n = (cols, rows) if trans_b else (rows, cols)
        layers.append(Layer(node.name, node.op_type, init.name, k, n, trans_b))
    return layers


def weight_of(model: onnx.ModelProto, layer: Layer) -> np.ndarray:
    """W [K, N] of a layer (y = x @ W)."""
    for t in model.graph.initializer:
        if t.name == layer.weight:
            w = numpy_helper.to_array(t).astype(np.float32)
            return np.ascontiguousarray(w.T if layer.trans_b else w)
    raise KeyError(layer.weight)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _drop_unused(model: onnx.ModelProto) -> None:
    used = {i for node in model.graph.node for i in node.input}
    used |= {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def _set_init(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    model.graph.initializer.append(numpy_helper.from_array(value, name))


def fake_quant(
    model: onnx.ModelProto, layers: list[Layer], quantized: Mapping[str, Blocks]
) -> onnx.ModelProto:
    """The float model whose quantized layers read their dequantized weights (a fresh initializer per
    node, so a weight shared by two nodes at different levels stays right)."""
    out = _copy(model)
    by_node = {n.name: n for n in out.graph.node}
    for layer in layers:
        blocks = quantized.get(layer.node)
        if blocks is None:
            continue
        w = blocks.dequantize()
        name = f"{layer.weight}__wq_{len(out.graph.initializer)}"
        _set_init(out, name, np.ascontiguousarray(w.T) if layer.trans_b else w)
        by_node[layer.node].input[1] = name
    _drop_unused(out)
    return out


def _ensure_domain(model: onnx.ModelProto, domain: str, version: int) -> None:
    if not any(o.domain == domain for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(domain, version))


def to_matmulnbits(
    model: onnx.ModelProto, layers: list[Layer], quantized: Mapping[str, Blocks], accuracy_level: int = 0
) -> onnx.ModelProto:
    """MatMul/Gemm -> com.microsoft MatMulNBits (Gemm's bias becomes an Add after it). The node keeps
    its name; its weight initializers are named after the source weight."""
    from edgekit.int4.blocks import pack_matmulnbits

    out = _copy(model)
    nodes = list(out.graph.node)
    del out.graph.node[:]
    wanted = {layer.node: layer for layer in layers if layer.node in quantized}
    for node in nodes:
        layer = wanted.get(node.name)
        if layer is None:
            out.graph.node.append(node)
            continue
        blocks = quantized[layer.node]
        packed, scales, zeros = pack_matmulnbits(blocks)
        prefix = f"{layer.weight}__{node.name}"
        inputs = [node.input[0], f"{prefix}_Q{blocks.bits}", f"{prefix}_scales"]
        _set_init(out, inputs[1], packed)
        _set_init(out, inputs[2], scales)
        if zeros is not None:
            inputs.append(f"{prefix}_zero_points")
            _set_init(out, inputs[3], zeros)
        has_bias = node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]
        result = f"{node.output[0]}__nbits" if has_bias else node.output[0]
        out.graph.node.append(
            helper.make_node(
                "MatMulNBits",
                inputs,
                [result],
                name=node.name,
                domain="com.microsoft",
                K=layer.k,
                N=layer.n,
                bits=blocks.bits,
                block_size=blocks.block,
                accuracy_level=accuracy_level,
            )
        )
        if has_bias:
            beta = float(_attr(node, "beta", 1.0))
            bias = node.input[2]
            if beta != 1.0:
                scaled = f"{node.name}__beta"
                _set_init(out, scaled, np.asarray(beta, np.float32))
                bias_out = f"{node.output[0]}__bias"
                out.graph.node.append(
                    helper.make_node("Mul", [bias, scaled], [bias_out], name=f"{node.name}/beta")
                )
                bias = bias_out
            out.graph.node.append(
                helper.make_node("Add", [result, bias], [node.output[0]], name=f"{node.name}/bias")
            )
    _ensure_domain(out, "com.microsoft", 1)
    _drop_unused(out)
    return out


def to_block_dq(
    model: onnx.ModelProto, layers: list[Layer], quantized: Mapping[str, Blocks]
) -> onnx.ModelProto:
    """Each quantized weight as signed-integer initializer -> DequantizeLinear (INT4: blocks along K,
    `block_size`; INT8 per output channel) -> the unchanged MatMul/Gemm. Symmetric codes only (the
    form TensorRT takes); the model must already be at opset 21."""
    out = _copy(model)
    by_node = {n.name: n for n in out.graph.node}
    dq_nodes: dict[str, onnx.NodeProto] = {}
    for layer in layers:
        blocks = quantized.get(layer.node)
        if blocks is None:
            continue
        if not blocks.symmetric:
            raise ValueError("to_block_dq writes symmetric weights only")
        codes = blocks.signed_codes()  # [K, N]
        scales = blocks.scales  # [nb, N]
        axis = 0
        if layer.trans_b:
            codes, scales, axis = codes.T, scales.T, 1
        prefix = f"{layer.weight}__{layer.node}"
        kind = TensorProto.INT4 if blocks.bits == 4 else TensorProto.INT8
        q = helper.make_tensor(f"{prefix}_q", kind, codes.shape, _raw(codes, blocks.bits), raw=True)
        out.graph.initializer.append(q)
        attrs: dict[str, Any] = {}
        if blocks.bits == 4:
            attrs = {"axis": axis, "block_size": blocks.block}
            _set_init(out, f"{prefix}_scale", np.ascontiguousarray(scales.astype(np.float32)))
        else:  # INT8: one scale per output channel (blocks of all K)
            per_channel = scales.reshape(-1)
            attrs = {"axis": 1 - axis}
            _set_init(out, f"{prefix}_scale", np.ascontiguousarray(per_channel.astype(np.float32)))
        weight = f"{prefix}_dq"
        dq_nodes[layer.node] = helper.make_node(
            "DequantizeLinear", [q.name, f"{prefix}_scale"], [weight], name=f"{layer.node}/weight_dq", **attrs
        )
        by_node[layer.node].input[1] = weight
    nodes = list(out.graph.node)
    del out.graph.node[:]
    for node in nodes:
        if node.name in dq_nodes:
            out.graph.node.append(dq_nodes[node.name])
        out.graph.node.append(node)
    _drop_unused(out)
    return out


def _raw(codes: np.ndarray, bits: int) -> bytes:
    """Signed codes as ONNX raw data: INT8 as is, INT4 two to a byte, low nibble first."""
    flat = codes.astype(np.int8).reshape(-1)
    if bits == 8:
        return flat.tobytes()
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.int8)])
    nibbles = flat.view(np.uint8) & 0x0F
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8).tobytes()


def stored_bytes(layer: Layer, blocks: Blocks | None) -> int:
    return layer.fp32_bytes if blocks is None else blocks.nbytes()
