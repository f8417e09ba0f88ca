"""Q/DQ insertion for a `placement.Plan`: activations per-tensor with the calibration cache's scales
(symmetric, zero point 0), weights stored as INT8 initializers with per-output-channel scales and a
DequantizeLinear, every Q/DQ pair emitted right before the first node that reads it (the node order
stays topological). The model is not otherwise changed: graph outputs keep their float producers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgekit.backends.trt.placement import Graph, Plan


def _unique(taken: set[str], base: str) -> str:
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def _quantize_weight(array: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric INT8 (range [-127, 127], zero point 0) as TensorRT quantizes weights."""
    if axis is None:
        amax = np.asarray(np.abs(array).max(), dtype=np.float32)
        scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.rint(array / scale), -127, 127).astype(np.int8)
        return q, scale.reshape(())
    moved = np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)
    amax = np.abs(moved).max(axis=1).astype(np.float32)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    shape = [1] * array.ndim
    shape[axis] = -1
    q = np.clip(np.rint(array / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


@dataclass
class InsertResult:
    model: onnx.ModelProto
    qdq_nodes: int
    missing_scales: list[str]  # activations left in float: no calibrated scale


def insert_qdq(
    model: onnx.ModelProto,
    plan: Plan,
    scales: Mapping[str, float],
    per_channel: bool = True,
    int8_weights: bool = True,
) -> InsertResult:
    """A copy of `model` with the plan's Q/DQ pairs: activations per-tensor with `scales[tensor]`
    (zero point 0); weights per output channel, stored as INT8 initializers read by a DequantizeLinear
    (`int8_weights`, TensorRT >= 10) or kept float behind a QuantizeLinear/DequantizeLinear pair (the
    form TensorRT 8.x parses: its ONNX parser rejects INT8 weight initializers)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    g = Graph(out)
    taken = {n.name for n in graph.node} | set(g.producer) | set(g.constants) | {i.name for i in graph.input}
    new_inits: list[TensorProto] = []
    before: dict[int, list[onnx.NodeProto]] = {}  # node index -> Q/DQ nodes to emit before it
    rewired: dict[str, str] = {}  # (activation tensor or weight key) -> dequantized tensor
    missing: list[str] = []
    count = 0

    def node(op: str, inputs: list[str], base: str, axis: int | None) -> onnx.NodeProto:
        made = helper.make_node(
            op, inputs, [_unique(taken, f"{base}_{op}_Output")], name=_unique(taken, f"{base}_{op}")
        )
        if axis is not None:
            made.attribute.append(helper.make_attribute("axis", axis))
        return made

    def params(base: str, scale: np.ndarray) -> tuple[str, str]:
        names = _unique(taken, f"{base}_scale"), _unique(taken, f"{base}_zero_point")
        new_inits.append(numpy_helper.from_array(scale.astype(np.float32), names[0]))
        new_inits.append(numpy_helper.from_array(np.zeros(scale.shape, dtype=np.int8), names[1]))
        return names

    for q in plan.inputs:
        i = g.by_name[q.node]
        axis = q.axis if (per_channel and q.kind == "weight") else None
        key = q.tensor if q.kind == "activation" else f"{q.tensor}\0{axis}"
        if key not in rewired:
            if q.kind == "activation" and q.tensor not in scales:
                missing.append(q.tensor)
                continue
            first = min(c for c, _ in g.consumers[q.tensor])
            if q.kind == "activation":
                scale, zero = params(q.tensor, np.array(scales[q.tensor], dtype=np.float32))
                quantize = node("QuantizeLinear", [q.tensor, scale, zero], q.tensor, None)
                pair = [quantize, node("DequantizeLinear", [quantize.output[0], scale, zero], q.tensor, None)]
            else:
                array = numpy_helper.to_array(g.constants[q.tensor]).astype(np.float32)
                values, scale_values = _quantize_weight(array, axis)
                scale, zero = params(q.tensor, scale_values)
                if int8_weights:
                    stored = _unique(taken, f"{q.tensor}_quantized")
                    new_inits.append(numpy_helper.from_array(values, stored))
                    pair = [node("DequantizeLinear", [stored, scale, zero], q.tensor, axis)]
                else:
                    quantize = node("QuantizeLinear", [q.tensor, scale, zero], q.tensor, axis)
                    pair = [
                        quantize,
                        node("DequantizeLinear", [quantize.output[0], scale, zero], q.tensor, axis),
                    ]
            before.setdefault(first, []).extend(pair)
            count += len(pair)
            rewired[key] = pair[-1].output[0]
        g.nodes[i].input[q.index] = rewired[key]

    ordered: list[onnx.NodeProto] = []
    for i, node in enumerate(g.nodes):
        ordered.extend(before.get(i, []))
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        ordered.append(copy)
    del graph.node[:]
    graph.node.extend(ordered)
    graph.initializer.extend(new_inits)
    _drop_unused_constants(out)
    return InsertResult(out, count, missing)


def _drop_unused_constants(model: onnx.ModelProto) -> None:
    """Float weights replaced by their INT8 copies, when nothing else reads them."""
    graph = model.graph
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    dropped = {t.name for t in graph.initializer if t.name not in used}
    if dropped:
        keep = [t for t in graph.initializer if t.name not in dropped]
        del graph.initializer[:]
        graph.initializer.extend(keep)
        inputs = [i for i in graph.input if i.name not in dropped]  # IR < 4 lists initializers
        del graph.input[:]
        graph.input.extend(inputs)
    nodes = [n for n in graph.node if n.op_type != "Constant" or any(o in used for o in n.output)]
    if len(nodes) != len(graph.node):
        del graph.node[:]
        graph.node.extend(nodes)


def qdq_counts(model: onnx.ModelProto) -> dict[str, int]:
    """QuantizeLinear / DequantizeLinear node counts (placement statistics)."""
    ops = [n.op_type for n in model.graph.node]
    return {"QuantizeLinear": ops.count("QuantizeLinear"), "DequantizeLinear": ops.count("DequantizeLinear")}
