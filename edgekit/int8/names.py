"""Nodes of the model edgekit quantizes, by the names they have in the user's original ONNX file.

Between the user's file and the quantized model, ingest may rename tensors and nodes (a backend's
allowed characters), simplify, and onnxruntime's pre-processing may fuse nodes (Conv + BatchNorm
keeps the Conv's name but writes the BatchNorm's output). Tensor names are the stable link: the
prepared model's `name_map` maps renamed tensors back, and the original node is the one that writes
the same output tensor. A node the pipeline created has no original; it is reported as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx


def name_unnamed_nodes(model: onnx.ModelProto) -> int:
    """Give every nameless node a unique, stable name (op type + first output) so that it can be
    excluded from quantization and reported; returns how many were named."""
    taken = {node.name for node in model.graph.node if node.name}
    count = 0
    for node in model.graph.node:
        if node.name:
            continue
        base = f"{node.op_type}:{node.output[0] if node.output else count}"
        name, index = base, 1
        while name in taken:
            name = f"{base}#{index}"
            index += 1
        node.name = name
        taken.add(name)
        count += 1
    return count


class NodeOrigins:
    """Map node names of the quantized-from model to the user's original nodes."""

    def __init__(
        self, model: onnx.ModelProto, source_path: str | Path | None, name_map: Mapping[str, str]
    ) -> None:
        self.nodes = {node.name: node for node in model.graph.node}
        self.name_map = dict(name_map)
        self.source_nodes: set[str] = set()
        self.source_writer: dict[str, str] = {}  # output tensor -> original node name
        self.source_ops: dict[str, str] = {}
        if source_path is not None:
            try:
                source = onnx.load(str(source_path), load_external_data=False)
            except Exception:  # noqa: BLE001 - names are then reported as edgekit sees them
                source = None
            if source is not None:
                for node in source.graph.node:
                    if node.name:
                        self.source_nodes.add(node.name)
                        self.source_ops[node.name] = node.op_type
                    for out in node.output:
                        self.source_writer[out] = node.name

    def describe(self, name: str) -> dict[str, Any]:
        node = self.nodes.get(name)
        row: dict[str, Any] = {"node": name, "op_type": node.op_type if node is not None else None}
        original = self.original(name)
        row["source_node"] = original
        if node is not None and node.output:
            row["source_output"] = self.name_map.get(node.output[0], node.output[0])
        return row

    def original(self, name: str) -> str | None:
        """The original node's name ('' when it had none but exists), or None when edgekit made it."""
        node = self.nodes.get(name)
        if name in self.source_nodes and (node is None or self.source_ops.get(name) == node.op_type):
            return name
        if node is not None:
            for out in node.output:
                source_out = self.name_map.get(out, out)
                if source_out in self.source_writer:
                    return self.source_writer[source_out]
        return name if name in self.source_nodes else None
