"""Tiny ONNX artifacts with a hand-written manifest.json (the format `edgekit export` writes)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_onnx(path: Path, width: int = 16, depth: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i in range(depth):
        w = numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32), f"w{i}")
        inits.append(w)
        out = "y" if i == depth - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]))
        nodes.append(helper.make_node("Relu", [f"m{i}"], [out]))
        prev = out
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def make_artifact(
    directory: Path,
    target: str = "x86-cpu",
    width: int = 16,
    depth: int = 2,
    entry: str = "model.onnx",
    seed: int = 0,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model = tiny_onnx(directory / entry, width, depth, seed)
    data = model.read_bytes()
    spec = {"shape": [1, width], "dtype": "float32", "layout": "", "quant": None}
    manifest = {
        "source": {"name": "tiny.onnx"},
        "target": target,
        "backend": "onnxruntime",
        "precision": "fp32",
        "entry": entry,
        "files": [{"path": entry, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}],
        "inputs": [{"name": "x", "source_name": "x", **spec}],
        "outputs": [{"name": "y", "source_name": "y", **spec}],
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return directory
