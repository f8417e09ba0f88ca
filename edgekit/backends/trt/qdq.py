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
    model: onnx.ModelProto, plan: Plan, scales: Mapping[str, float], per_channel: bool = True
) -> InsertResult:
    """A copy of `model` with the plan's Q/DQ pairs: activations per-tensor with `scales[tensor]`
    (zero point 0), weights stored as INT8 initializers with per-channel scales and a DequantizeLinear."""
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

    def emit(node_index: int, nodes: list[onnx.NodeProto]) -> None:
        before.setdefault(node_index, []).extend(nodes)

    for q in plan.inputs:
        i = g.by_name[q.node]
        node = g.nodes[i]
        if q.kind == "activation":
            if q.tensor not in rewired:
                if q.tensor not in scales:
                    missing.append(q.tensor)
                    continue
                scale = _unique(taken, f"{q.tensor}_scale")
                zero = _unique(taken, f"{q.tensor}_zero_point")
                new_inits += [
                    numpy_helper.from_array(np.array(scales[q.tensor], dtype=np.float32), scale),
                    numpy_helper.from_array(np.array(0, dtype=np.int8), zero),
                ]
                quantized = _unique(taken, f"{q.tensor}_QuantizeLinear_Output")
                dequantized = _unique(taken, f"{q.tensor}_DequantizeLinear_Output")
                first = min(c for c, _ in g.consumers[q.tensor])
                emit(
                    first,
                    [
                        helper.make_node(
                            "QuantizeLinear",
                            [q.tensor, scale, zero],
                            [quantized],
                            name=_unique(taken, f"{q.tensor}_QuantizeLinear"),
                        ),
                        helper.make_node(
                            "DequantizeLinear",
                            [quantized, scale, zero],
                            [dequantized],
                            name=_unique(taken, f"{q.tensor}_DequantizeLinear"),
                        ),
                    ],
                )
                count += 2
                rewired[q.tensor] = dequantized
            node.input[q.index] = rewired[q.tensor]
            continue
        axis = q.axis if per_channel else None
        key = f"{q.tensor}\0{axis}"
        if key not in rewired:
            array = numpy_helper.to_array(g.constants[q.tensor]).astype(np.float32)
            values, scale_values = _quantize_weight(array, axis)
            qname = _unique(taken, f"{q.tensor}_quantized")
            scale = _unique(taken, f"{q.tensor}_scale")
            zero = _unique(taken, f"{q.tensor}_zero_point")
            new_inits += [
                numpy_helper.from_array(values, qname),
                numpy_helper.from_array(scale_values, scale),
                numpy_helper.from_array(np.zeros(scale_values.shape, dtype=np.int8), zero),
            ]
            dequantized = _unique(taken, f"{q.tensor}_DequantizeLinear_Output")
            dq = helper.make_node(
                "DequantizeLinear",
                [qname, scale, zero],
                [dequantized],
                name=_unique(taken, f"{q.tensor}_DequantizeLinear"),
            )
            if axis is not None:
                dq.attribute.append(helper.make_attribute("axis", axis))
            emit(min(c for c, _ in g.consumers[q.tensor]), [dq])
            count += 1
            rewired[key] = dequantized
        node.input[q.index] = rewired[key]

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
