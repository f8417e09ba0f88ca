"""The pieces a PartitionGraph (partition_graph.py) is built from: the tensors a node reads (its subgraphs'
outer-scope reads included), which nodes fold into constants, whether the node list is already in
topological order, the value infos of shard boundary tensors, and the records the graph holds
(Tensor) and answers with (SegmentStats)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgekit import analysis, ingest
from edgekit.analysis.shapes import without_weights

MB = 1024 * 1024
#: ops whose output is not a function of their inputs: never folded into a constant
NONDETERMINISTIC = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial"}


@dataclass
class Tensor:
    """A non-constant tensor: a model input (producer -1) or a compute node's output."""

    name: str
    producer: int
    consumers: list[int]
    shape: list[int] | None
    elem_type: int
    nbytes: int  # at its own dtype, with the analysis shapes (0 when unknown)

    @property
    def dtype(self) -> str:
        try:
            return np.dtype(helper.tensor_dtype_to_np_dtype(self.elem_type)).name
        except Exception:  # noqa: BLE001 - exotic types
            return str(self.elem_type)

    @property
    def is_float(self) -> bool:
        return analysis.is_float(self.elem_type)


@dataclass
class SegmentStats:
    """What a shard [start, end) holds and costs at one precision."""

    start: int
    end: int
    weight_bytes: int
    weight_bytes_by_class: dict[str, int]
    macs: int
    peak_activation_bytes: int
    nodes: int
    memory_bytes: int
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    @property
    def memory_mb(self) -> float:
        return self.memory_bytes / MB


def node_reads(node: onnx.NodeProto) -> list[str]:
    return [n for n in node.input if n] + sorted(ingest.subgraph_inputs(node))


def is_foldable(
    node: onnx.NodeProto,
    reads: list[str],
    const_producer: Mapping[str, onnx.NodeProto],
    values: Mapping[str, TensorProto],
) -> bool:
    if node.op_type in NONDETERMINISTIC:
        return False
    if not reads:
        return node.op_type == "Constant" and node.domain in ("", "ai.onnx")
    return all(name in values or name in const_producer for name in reads)


def is_sorted(graph: onnx.GraphProto) -> bool:
    known = {vi.name for vi in graph.input} | {t.name for t in graph.initializer}
    for node in graph.node:
        if any(name not in known for name in node_reads(node)):
            return False
        known.update(node.output)
    return True


def weightless(model: onnx.ModelProto) -> onnx.ModelProto:
    return without_weights(model)


def value_infos(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    light = weightless(model)
    inferred = ingest.infer_shapes(light)
    table = {vi.name: vi for vi in inferred.graph.value_info}
    for vi in model.graph.value_info:  # the exporter's own declarations, where inference found none
        table.setdefault(vi.name, vi)
    return table
