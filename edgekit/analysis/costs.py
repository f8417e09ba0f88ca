"""What a model's nodes cost: weight bytes per precision (and by memory-model class), MACs per op
type, and peak activation memory from a liveness walk over the node order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import onnx
from onnx import TensorProto, helper

from edgekit import ingest
from edgekit.analysis.shapes import FLOAT_TYPES, itemsize, numel
from edgekit.errors import BadInput
from edgekit.memory_model import INT4_GROUP, PRECISIONS


# ---- weights ---------------------------------------------------------------------------------------
def count_weights(inits: Iterable[TensorProto]) -> tuple[int, int, int, int, int]:
    params = tensors = stored = other_bytes = other = 0
    for init in inits:
        count = numel(init.dims)
        size = int(count * itemsize(init.data_type))
        if init.data_type in FLOAT_TYPES:
            params += count
            tensors += 1
            stored += size
        else:
            other += 1
            other_bytes += size
    return params, tensors, stored, other_bytes, other


def weight_bytes(tensor: TensorProto, precision: str) -> int:
    """Bytes of one float weight tensor at `precision` (0 for non-float tensors); see ESTIMATE_FORMULA."""
    return total_weight_bytes([tensor], precision)


def total_weight_bytes(inits: Iterable[TensorProto], precision: str) -> int:
    """Bytes of the float weights at `precision` (see ESTIMATE_FORMULA)."""
    total = 0.0
    for init in inits:
        if init.data_type not in FLOAT_TYPES:
            continue
        count = numel(init.dims)
        matrix = len(init.dims) >= 2
        if precision == "fp32":
            total += 4 * count
        elif precision == "fp16":
            total += 2 * count
        elif precision == "int8":
            total += count + 4 * int(init.dims[0]) if matrix else 4 * count
        elif precision == "int4":
            total += 0.5 * count + 2 * -(-count // INT4_GROUP) if matrix else 2 * count
        else:
            raise BadInput(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    return int(round(total))


def weight_classes(graph: onnx.GraphProto, inits: Mapping[str, TensorProto]) -> dict[str, list[TensorProto]]:
    """Float weights split into those a Conv/ConvTranspose reads as its kernel and the rest."""
    conv = {
        node.input[1]
        for node in graph.node
        if node.op_type in ("Conv", "ConvTranspose")
        and node.domain in ("", "ai.onnx")
        and len(node.input) > 1
    }
    out: dict[str, list[TensorProto]] = {"conv": [], "other": []}
    for name, init in inits.items():
        if init.data_type in FLOAT_TYPES:
            out["conv" if name in conv else "other"].append(init)
    return out


# ---- MACs ------------------------------------------------------------------------------------------
def graph_macs(
    graph: onnx.GraphProto, shapes: Mapping[str, list[int]], inits: Mapping[str, TensorProto]
) -> tuple[dict[str, int], int, list[str]]:
    """MACs per op type (Conv, ConvTranspose, Gemm, MatMul; 'MatMul (attention)' for MatMuls whose
    operands are both activations). Returns (macs, attention macs, nodes skipped)."""
    macs: Counter[str] = Counter()
    skipped: list[str] = []
    for index, node in enumerate(graph.node):
        try:
            counted = node_macs(node, shapes, inits)
        except (TypeError, IndexError):
            skipped.append(node.name or f"{node.op_type}#{index}")
            continue
        if counted is not None:
            macs[counted[0]] += counted[1]
    return dict(sorted(macs.items(), key=lambda kv: -kv[1])), macs.get("MatMul (attention)", 0), skipped


MAC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def node_macs(
    node: onnx.NodeProto, shapes: Mapping[str, list[int]], weights: Mapping[str, Any] | set[str]
) -> tuple[str, int] | None:
    """(label, MACs) of one Conv/ConvTranspose/Gemm/MatMul node, None for other ops; raises
    TypeError/IndexError when a shape it needs is unknown. `weights`: names of constant tensors."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in MAC_OPS:
        return None
    ins = [shapes.get(name) for name in node.input[:2]]
    out = shapes.get(node.output[0])
    label = node.op_type
    if node.op_type == "Conv":
        # N*Cout*Hout*Wout * Cin/group * kh*kw ; W is [Cout, Cin/group, kh, kw]
        value = numel(out) * numel(ins[1][1:])  # type: ignore[arg-type,index]
    elif node.op_type == "ConvTranspose":
        # every input element meets Cout/group * kh*kw weights; W is [Cin, Cout/group, kh, kw]
        value = numel(ins[0]) * numel(ins[1][1:])  # type: ignore[arg-type,index]
    elif node.op_type == "Gemm":
        trans_a = _attr(node, "transA", 0)
        k = ins[0][0] if trans_a else ins[0][-1]  # type: ignore[index]
        value = numel(out) * int(k)  # type: ignore[arg-type]  # M*N*K
    else:  # MatMul: broadcast batch * M * N * K
        k = ins[0][-1]  # type: ignore[index]
        value = numel(out) * int(k)  # type: ignore[arg-type]
        if node.input[0] not in weights and node.input[1] not in weights:
            label = "MatMul (attention)"
    return label, int(value)


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


# ---- activations -----------------------------------------------------------------------------------
def tensor_bytes(
    name: str, shapes: Mapping[str, list[int]], dtypes: Mapping[str, int], float_bytes: float | None
) -> int:
    shape = shapes.get(name)
    if shape is None:
        return 0
    elem = dtypes.get(name, TensorProto.FLOAT)
    size = float_bytes if (float_bytes is not None and elem in FLOAT_TYPES) else itemsize(elem)
    return int(numel(shape) * size)


def peak_activations(
    graph: onnx.GraphProto,
    shapes: Mapping[str, list[int]],
    dtypes: Mapping[str, int],
    inits: Mapping[str, TensorProto],
    float_bytes: float | None,
) -> tuple[int, dict[str, Any]]:
    """Liveness walk over the node order (ONNX requires it topological). A tensor is allocated when
    its node runs and freed after its last consumer; graph inputs live from the start (and are freed
    after their last consumer), graph outputs until the end; weights are excluded. While a node runs
    its inputs and outputs are both live. Returns (peak bytes, the node where it peaks)."""
    outputs = {vi.name for vi in graph.output}
    last_use: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in _node_inputs(node):
            last_use[name] = index
    live: dict[str, int] = {}
    for vi in graph.input:
        if vi.name not in inits:
            live[vi.name] = tensor_bytes(vi.name, shapes, dtypes, float_bytes)
    current = sum(live.values())
    peak, peak_at = current, {"index": -1, "name": "(graph inputs)", "op": ""}
    for index, node in enumerate(graph.node):
        for name in node.output:
            if name and name not in live and name not in inits:
                live[name] = tensor_bytes(name, shapes, dtypes, float_bytes)
                current += live[name]
        if current > peak:
            peak = current
            peak_at = {"index": index, "name": node.name or f"{node.op_type}#{index}", "op": node.op_type}
        for name in list(_node_inputs(node)) + list(node.output):
            if name in live and name not in outputs and last_use.get(name, -1) <= index:
                current -= live.pop(name)
    return peak, peak_at


def _node_inputs(node: onnx.NodeProto) -> list[str]:
    """Inputs of a node, including outer-scope tensors its subgraphs read."""
    return [n for n in node.input if n] + sorted(ingest.subgraph_inputs(node))
