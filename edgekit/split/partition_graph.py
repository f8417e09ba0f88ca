"""The model as the planner sees it: compute nodes in one topological order, the tensors between
them, and what any contiguous run of nodes (a shard) holds and costs.

Constant-foldable nodes (Constant, and every node whose inputs are all constants, such as a
Transpose or DequantizeLinear of a weight) are not cut points: they travel with the shard that needs
their value, duplicated into each shard that reads it, like initializers. A cut at position k (between
compute nodes k-1 and k) carries every tensor produced before k and read at or after k, so a cut
inside a residual block or between FPN branches carries every live tensor. Model inputs are fed to
whichever shard reads them; model outputs are collected from the shard that makes them. The node-level
pieces (reads, folding, order check, boundary value infos) are in nodes.py.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgekit import analysis, ingest
from edgekit import graph as onnx_graph
from edgekit.analysis.shapes import itemsize
from edgekit.errors import BadInput
from edgekit.split.nodes import MB as MB  # planner, measure and split read it from here
from edgekit.split.nodes import (
    SegmentStats,
    Tensor,
    is_foldable,
    is_sorted,
    node_reads,
    value_infos,
    weightless,
)

log = logging.getLogger(__name__)


class PartitionGraph:
    """Built once per model; every planner question is answered from the arrays built here."""

    def __init__(
        self,
        model: onnx.ModelProto,
        path: Path,
        input_shapes: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        self.path = path
        self.notes: list[str] = []
        ingest.drop_initializer_inputs(model)
        if input_shapes:
            ingest.fix_input_shapes(model, dict(input_shapes))
        if not is_sorted(model.graph) and not ingest.toposort(model.graph):
            raise BadInput(f"{path}: the graph has a cycle or reads a tensor nothing produces")
        self.model = model
        graph = model.graph
        self.initializers: dict[str, TensorProto] = {t.name: t for t in graph.initializer}
        self.model_inputs = [vi.name for vi in graph.input if vi.name not in self.initializers]
        self.model_outputs = [vi.name for vi in graph.output]
        self._input_vi = {vi.name: vi for vi in graph.input}
        self._output_vi = {vi.name: vi for vi in graph.output}

        # constants: initializers, Constant outputs and outputs of nodes fed by constants only
        self.constant_values: dict[str, TensorProto] = dict(self.initializers)
        const_producer: dict[str, onnx.NodeProto] = {}
        compute: list[onnx.NodeProto] = []
        for node in graph.node:
            reads = node_reads(node)
            if is_foldable(node, reads, const_producer, self.constant_values):
                for out in node.output:
                    if out:
                        const_producer[out] = node
                if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                    value = onnx_graph.constant_value(node)
                    if value is not None:
                        value.name = node.output[0]
                        self.constant_values[node.output[0]] = value
            else:
                compute.append(node)
        self.const_producer = const_producer
        self.nodes = compute
        n = len(compute)
        if n == 0:
            raise BadInput(f"{path}: the model has no compute nodes to split")

        # shapes for sizes: dynamic dims assumed 1 unless --input-shape fixed them
        sized = onnx.ModelProto()
        sized.CopyFrom(weightless(model))
        assumed = analysis.assume_ones(sized)
        if assumed:
            self.notes.append(
                "symbolic dims assumed 1 for sizes (pass --input-shape NAME:D0,D1,.. to set them): "
                + ", ".join(assumed)
            )
        shapes, dtypes, self.shape_inference, unknown = analysis.static_shapes(sized, self.notes)
        self.shapes, self.dtypes = shapes, dtypes
        # value infos for shard I/O: inferred on the model as given (symbolic dims kept)
        self.value_infos = value_infos(model)

        # tensors between compute nodes
        position: dict[str, int] = {}
        for index, node in enumerate(compute):
            for out in node.output:
                if out:
                    position[out] = index
        self.position = position
        self.tensors: dict[str, Tensor] = {}
        for name in self.model_inputs:
            self.tensors[name] = self._tensor(name, -1)
        for index, node in enumerate(compute):
            for out in node.output:
                if out:
                    self.tensors[out] = self._tensor(out, index)
        self.node_reads: list[list[str]] = []  # non-constant tensors each compute node reads
        self.node_consts: list[set[str]] = []  # constant tensors each compute node reads (directly)
        for index, node in enumerate(compute):
            reads = node_reads(node)
            tensors, consts = [], set()
            for name in dict.fromkeys(reads):
                if name in self.tensors:
                    self.tensors[name].consumers.append(index)
                    tensors.append(name)
                elif name in self.constant_values or name in const_producer:
                    consts.add(name)
                else:
                    raise BadInput(
                        f"{path}: node '{node.name or node.op_type}' reads '{name}', which nothing produces"
                    )
            self.node_reads.append(tensors)
            self.node_consts.append(consts)
        for name in self.model_outputs:
            if name not in self.tensors and name not in self.constant_values and name not in const_producer:
                raise BadInput(f"{path}: model output '{name}' is not produced by any node")

        self._build_weights()
        self._build_arrays()
        self.macs = np.zeros(n, dtype=np.int64)
        weights = set(self.constant_values) | set(const_producer)
        skipped = 0
        for index, node in enumerate(compute):
            try:
                counted = analysis.node_macs(node, shapes, weights)
            except (TypeError, IndexError):
                skipped += 1
                continue
            if counted is not None:
                self.macs[index] = counted[1]
        if skipped:
            self.notes.append(f"MACs unknown (shapes missing) for {skipped} nodes")
        self.macs_prefix = np.concatenate([[0], np.cumsum(self.macs)])
        if unknown:
            log.debug("%d tensors without static shape", unknown)

    # ---- construction helpers -------------------------------------------------------------------
    def _tensor(self, name: str, producer: int) -> Tensor:
        shape = self.shapes.get(name)
        elem = self.dtypes.get(name, TensorProto.FLOAT)
        size = 0
        if shape is not None:
            size = int(np.prod(shape, dtype=np.int64) * itemsize(elem)) if shape else int(itemsize(elem))
        return Tensor(name, producer, [], shape, elem, size)

    def const_closure(self, names: set[str]) -> tuple[list[onnx.NodeProto], set[str]]:
        """The constant-folding nodes (in graph order) and leaf constants (initializers, Constant
        values) that the constant tensors `names` are computed from."""
        nodes: dict[int, onnx.NodeProto] = {}
        leaves: set[str] = set()
        stack = list(names)
        seen: set[str] = set()
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            producer = self.const_producer.get(name)
            if producer is None:
                if name in self.initializers:
                    leaves.add(name)
                continue
            if producer.op_type == "Constant" and name in self.constant_values:
                leaves.add(name)
            nodes[id(producer)] = producer
            stack.extend(n for n in node_reads(producer) if n)
        order = {id(node): i for i, node in enumerate(self.model.graph.node)}
        return sorted(nodes.values(), key=lambda node: order[id(node)]), leaves

    def _build_weights(self) -> None:
        """Per compute node, the leaf constants it needs (shared ones counted once per shard) and
        which of them are convolution kernels (the memory model weighs those differently)."""
        n = len(self.nodes)
        self.node_leaves: list[set[str]] = []
        conv_kernels: set[str] = set()
        for index, node in enumerate(self.nodes):
            _, leaves = self.const_closure(self.node_consts[index])
            self.node_leaves.append(leaves)
            if (
                node.op_type in ("Conv", "ConvTranspose")
                and node.domain in ("", "ai.onnx")
                and len(node.input) > 1
            ):
                conv_kernels |= self.const_closure({node.input[1]})[1]
        names = sorted({leaf for leaves in self.node_leaves for leaf in leaves})
        self.weight_names = names
        self.weight_index = {name: i for i, name in enumerate(names)}
        self.weight_is_conv = np.array([name in conv_kernels for name in names], dtype=bool)
        self._weight_tensors = [self.constant_values[name] for name in names]
        self._weight_bytes_cache: dict[str, np.ndarray] = {}
        users: list[int] = []
        ids: list[int] = []
        for index, leaves in enumerate(self.node_leaves):
            for leaf in leaves:
                users.append(index)
                ids.append(self.weight_index[leaf])
        self.wedge_node = np.array(users, dtype=np.int64)
        self.wedge_weight = np.array(ids, dtype=np.int64)
        # prefix sums over first use (exact for weights read by one node; shared ones corrected)
        first: dict[int, int] = {}
        self._shared_uses: list[tuple[int, int, int]] = []  # (weight, node, previous user node)
        last_user: dict[int, int] = {}
        for node_index, weight in sorted(zip(users, ids, strict=True)):
            if weight not in first:
                first[weight] = node_index
            elif last_user[weight] != node_index:
                self._shared_uses.append((weight, node_index, last_user[weight]))
            last_user[weight] = node_index
        self._first_use = np.full(len(names), n, dtype=np.int64)
        for weight, node_index in first.items():
            self._first_use[weight] = node_index

    def _build_arrays(self) -> None:
        names = list(self.tensors)
        self.tensor_names = names
        index = {name: i for i, name in enumerate(names)}
        self.t_producer = np.array([self.tensors[t].producer for t in names], dtype=np.int64)
        self.t_last = np.array(
            [max(self.tensors[t].consumers) if self.tensors[t].consumers else -1 for t in names],
            dtype=np.int64,
        )
        outputs = set(self.model_outputs)
        self.t_is_output = np.array([t in outputs for t in names], dtype=bool)
        self.t_bytes = np.array([self.tensors[t].nbytes for t in names], dtype=np.int64)
        self.t_float = np.array([self.tensors[t].is_float for t in names], dtype=bool)
        edge_t, edge_c = [], []
        for i, t in enumerate(names):
            for c in self.tensors[t].consumers:
                edge_t.append(i)
                edge_c.append(c)
        self.edge_tensor = np.array(edge_t, dtype=np.int64)
        self.edge_consumer = np.array(edge_c, dtype=np.int64)
        self._tensor_index = index
        n = len(self.nodes)
        # bytes crossing each cut position k = 1..n-1: produced at p >= 0, read again at or after k
        diff = np.zeros(n + 1, dtype=np.int64)
        for i in range(len(names)):
            p, last = int(self.t_producer[i]), int(self.t_last[i])
            if p >= 0 and last > p:
                diff[p + 1] += self.t_bytes[i]
                diff[last + 1] -= self.t_bytes[i]
        self.cross_bytes = np.cumsum(diff)[: n + 1]  # index k: the cut before node k (0 and n unused)
        self.cross_bytes[0] = 0
        self.cross_bytes[n] = 0

    # ---- questions the planner asks ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.nodes)

    def crossing(self, k: int) -> list[str]:
        """Names of the tensors a cut before compute node k carries (in production order)."""
        mask = (self.t_producer >= 0) & (self.t_producer < k) & (self.t_last >= k)
        return [self.tensor_names[i] for i in np.flatnonzero(mask)]

    def weight_bytes_array(self, precision: str) -> np.ndarray:
        if precision not in self._weight_bytes_cache:
            self._weight_bytes_cache[precision] = np.array(
                [analysis.weight_bytes(t, precision) for t in self._weight_tensors], dtype=np.int64
            )
        return self._weight_bytes_cache[precision]

    def weight_prefix(self, precision: str) -> np.ndarray:
        """Prefix sums of weight bytes by first use: weights(a, b) = P[b] - P[a] + shared corrections."""
        sizes = self.weight_bytes_array(precision)
        per_node = np.zeros(len(self.nodes) + 1, dtype=np.int64)
        np.add.at(per_node, self._first_use, sizes)
        return np.concatenate([[0], np.cumsum(per_node[: len(self.nodes)])])

    def segment_weights(self, start: int, end: int, precision: str) -> tuple[int, dict[str, int]]:
        """Weight bytes a shard [start, end) holds (each shared weight once), by memory-model class."""
        mask = (self.wedge_node >= start) & (self.wedge_node < end)
        used = np.unique(self.wedge_weight[mask])
        sizes = self.weight_bytes_array(precision)[used]
        conv = self.weight_is_conv[used]
        large = (~conv) & (sizes >= analysis.LARGE_TENSOR_BYTES)
        classes = {
            "conv": int(sizes[conv].sum()),
            "other": int(sizes[~conv & ~large].sum()),
            "large": int(sizes[large].sum()),
        }
        return int(sizes.sum()), classes

    def segment_peak(self, start: int, end: int, precision: str | None) -> int:
        """Peak activation bytes of a shard [start, end): the liveness walk of analysis (a tensor lives
        from its producer, or the shard's start for a shard input, to its last reader in the shard, or
        to the shard's end when a later shard or the host needs it)."""
        float_bytes = analysis.ACTIVATION_BYTES[precision] if precision else None
        sizes = self.t_bytes.astype(np.float64)
        if float_bytes is not None:
            itemsizes = np.array([itemsize(self.tensors[t].elem_type) or 1.0 for t in self.tensor_names])
            sizes = np.where(self.t_float, sizes / itemsizes * float_bytes, sizes)
        prod = self.t_producer
        inside = (prod >= start) & (prod < end)
        ends = np.full(len(prod), -1, dtype=np.int64)
        # produced inside: to the last reader, or to the shard's end if read later or a model output
        leaves = inside & (self.t_is_output | (self.t_last >= end))
        ends[leaves] = end - 1
        stays = inside & ~leaves
        ends[stays] = np.maximum(self.t_last[stays], prod[stays])
        # read inside but produced before (model inputs included): from the start to the last reader
        emask = (self.edge_consumer >= start) & (self.edge_consumer < end)
        entering = np.full(len(prod), -1, dtype=np.int64)
        np.maximum.at(entering, self.edge_tensor[emask], self.edge_consumer[emask])
        outside = (~inside) & (entering >= 0)
        ends[outside] = entering[outside]
        starts = np.where(inside, prod, start)
        live = ends >= 0
        diff = np.zeros(end - start + 1, dtype=np.float64)
        np.add.at(diff, starts[live] - start, sizes[live])
        np.add.at(diff, ends[live] - start + 1, -sizes[live])
        return int(np.cumsum(diff)[:-1].max()) if end > start else 0

    def segment_io(self, start: int, end: int) -> tuple[list[str], list[str]]:
        """(inputs, outputs) of a shard [start, end) in a stable order: inputs are tensors its nodes read
        that come from before (model inputs or earlier shards); outputs are tensors it makes that a
        later shard reads or that are model outputs."""
        inputs: dict[str, None] = {}
        outputs: dict[str, None] = {}
        for index in range(start, end):
            for name in self.node_reads[index]:
                if self.tensors[name].producer < start:
                    inputs[name] = None
            for name in self.nodes[index].output:
                if not name or name not in self.tensors:
                    continue
                tensor = self.tensors[name]
                if name in self.model_outputs or any(c >= end for c in tensor.consumers):
                    outputs[name] = None
        return list(inputs), list(outputs)

    def segment(self, start: int, end: int, precision: str = "fp32") -> SegmentStats:
        weights, classes = self.segment_weights(start, end, precision)
        peak = self.segment_peak(start, end, precision)
        inputs, outputs = self.segment_io(start, end)
        memory = analysis.estimate_bytes(classes, peak, end - start)
        return SegmentStats(
            start=start,
            end=end,
            weight_bytes=weights,
            weight_bytes_by_class=classes,
            macs=int(self.macs_prefix[end] - self.macs_prefix[start]),
            peak_activation_bytes=peak,
            nodes=end - start,
            memory_bytes=memory,
            inputs=inputs,
            outputs=outputs,
        )

    def memory(self, start: int, end: int, precision: str, runtime: str = analysis.DEFAULT_RUNTIME) -> int:
        """Estimated runtime memory (bytes) of a shard [start, end) (analysis's memory model)."""
        _, classes = self.segment_weights(start, end, precision)
        return analysis.estimate_bytes(
            classes, self.segment_peak(start, end, precision), end - start, runtime
        )

    def value_info(self, name: str) -> onnx.ValueInfoProto:
        """Type and shape of a shard boundary tensor: the model's own declaration for model I/O, else
        what shape inference found (symbolic dims kept), else a dtype-only declaration."""
        for table in (self._input_vi, self._output_vi, self.value_infos):
            if name in table and table[name].type.tensor_type.elem_type:
                vi = onnx.ValueInfoProto()
                vi.CopyFrom(table[name])
                return vi
        elem = self.dtypes.get(name, TensorProto.FLOAT)
        return helper.make_tensor_value_info(name, elem, None)

    def node_label(self, index: int) -> str:
        node = self.nodes[index]
        return node.name or f"{node.op_type}#{index}"

    def describe_tensor(self, name: str) -> dict[str, Any]:
        tensor = self.tensors[name]
        return {"name": name, "shape": tensor.shape, "dtype": tensor.dtype, "bytes": tensor.nbytes}


def load(model_path: str | Path, input_shapes: Mapping[str, Sequence[int]] | None = None) -> PartitionGraph:
    path = Path(model_path).expanduser()
    model = ingest.load_model(path)
    return PartitionGraph(model, path, input_shapes)
