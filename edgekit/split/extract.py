"""Write a plan's shards as standalone ONNX models.

Each shard keeps the original tensor names, the model's opsets, IR version (at least 4, since
initializers are no longer graph inputs), model-local functions and metadata. Its weights are the
initializers and Constant nodes its nodes need, with the constant-folding nodes (a Transpose or a
DequantizeLinear of a weight) copied along: a weight two shards need is in both, one only one needs
is only there. A shard whose weights exceed `external_threshold` bytes keeps them in one external
data file next to it (protobuf's 2 GiB limit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import helper

from edgekit import ingest
from edgekit.digest import file_sha256
from edgekit.errors import InternalError
from edgekit.split.partition_graph import PartitionGraph

log = logging.getLogger(__name__)

EXTERNAL_THRESHOLD = ingest.EXTERNAL_DATA_THRESHOLD


@dataclass
class ShardFile:
    index: int
    start: int
    end: int
    path: Path
    files: list[dict[str, object]]  # [{path, sha256, bytes}] relative to the pipeline dir
    inputs: list[str]
    outputs: list[str]
    weight_tensors: int
    external_data: bool


def shard_model(graph: PartitionGraph, start: int, end: int, index: int) -> onnx.ModelProto:
    """The standalone model of compute nodes [start, end)."""
    source = graph.model
    inputs, outputs = graph.segment_io(start, end)
    if not outputs:
        raise InternalError(f"shard {index} (nodes {start}..{end - 1}) produces nothing anyone reads")
    nodes = graph.nodes[start:end]
    consts: set[str] = set()
    for i in range(start, end):
        consts |= graph.node_consts[i]
    # constant model outputs are made by the last shard
    if end == len(graph):
        consts |= {name for name in graph.model_outputs if name not in graph.tensors}
    const_nodes, leaves = graph.const_closure(consts)
    const_ids = {id(n) for n in const_nodes}
    initializers = [graph.initializers[name] for name in sorted(leaves) if name in graph.initializers]
    # keep the source order: constant-folding nodes first (they only read constants), then compute
    ordered_consts = [n for n in source.graph.node if id(n) in const_ids]
    const_outputs = {out for n in ordered_consts for out in n.output}
    for name in sorted(consts):
        if name not in graph.initializers and name not in const_outputs:
            raise InternalError(f"shard {index}: constant '{name}' has no producer")

    shard = onnx.ModelProto()
    shard.ir_version = max(int(source.ir_version), 4)
    shard.producer_name = "edgekit-split"
    shard.producer_version = source.producer_version or ""
    shard.domain = source.domain
    shard.model_version = source.model_version
    shard.doc_string = f"shard {index} (nodes {start}..{end - 1}) of {graph.path.name}"
    shard.opset_import.extend(source.opset_import)
    shard.functions.extend(source.functions)
    helper.set_model_props(
        shard, {**{p.key: p.value for p in source.metadata_props}, "edgekit.shard": str(index)}
    )
    g = shard.graph
    g.name = f"{source.graph.name or 'graph'}_shard{index}"
    g.node.extend(ordered_consts)
    g.node.extend(nodes)
    g.initializer.extend(initializers)
    g.sparse_initializer.extend(
        s for s in source.graph.sparse_initializer if s.values.name in consts or s.values.name in leaves
    )
    g.input.extend(graph.value_info(name) for name in inputs)
    g.output.extend(graph.value_info(name) for name in outputs)
    internal = {out for n in nodes for out in n.output if out} - set(outputs)
    g.value_info.extend(graph.value_infos[name] for name in sorted(internal) if name in graph.value_infos)
    return shard


def write_shard(
    graph: PartitionGraph,
    start: int,
    end: int,
    index: int,
    directory: Path,
    external_threshold: int = EXTERNAL_THRESHOLD,
) -> ShardFile:
    """Write shard `index` to directory/shard_<index>.onnx (+ .data when large) and check it."""
    model = shard_model(graph, start, end, index)
    path = directory / f"shard_{index}.onnx"
    weights = sum(t.ByteSize() for t in model.graph.initializer)
    external = weights > external_threshold
    if external:
        data_name = f"{path.name}.data"
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_name,
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=False)
    except Exception as exc:  # noqa: BLE001 - a shard the checker rejects is our bug
        raise InternalError(f"shard {index} failed the ONNX checker: {str(exc).splitlines()[0]}") from exc
    files = [path] + ([directory / f"{path.name}.data"] if external else [])
    records = [{"path": f.name, "sha256": file_sha256(f), "bytes": f.stat().st_size} for f in files]
    inputs, outputs = graph.segment_io(start, end)
    return ShardFile(
        index=index,
        start=start,
        end=end,
        path=path,
        files=records,
        inputs=inputs,
        outputs=outputs,
        weight_tensors=len(model.graph.initializer),
        external_data=external,
    )
