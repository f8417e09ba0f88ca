"""Real architectures from the classic ONNX model zoo, as old exporters wrote them.

The onnx wheel ships "light" copies of nine zoo models (AlexNet, DenseNet-121, Inception v1/v2,
ResNet-50, ShuffleNet, SqueezeNet, VGG-19, ZFNet-512) under onnx/backend/test/data/light: the real
graphs (IR version 3, opset 9, every initializer also listed as a graph input, names such as
"gpu_0/conv1_w_0") with each large weight replaced by a ConstantOfShape of its shape. `zoo_model`
puts deterministic random weights back as initializers (listed as graph inputs too, IR 3, as the
originals were), so tests and benchmarks get real topologies of every size without a download.
Weights are random (He-scaled), so outputs are not meaningful classes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ZOO = (
    "bvlc_alexnet",
    "densenet121",
    "inception_v1",
    "inception_v2",
    "resnet50",
    "shufflenet",
    "squeezenet",
    "vgg19",
    "zfnet512",
)


def light_path(name: str) -> Path:
    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"


def available() -> bool:
    return light_path("squeezenet").is_file()


def _weight(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if len(shape) <= 1:
        # biases, BN scale/shift/mean/variance: positive and near 1 keeps variances valid
        return rng.uniform(0.5, 1.5, size=shape).astype(dtype)
    fan_in = int(np.prod(shape[1:])) or 1
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def zoo_model(name: str, out: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write zoo model `name` with random weights to `out` (IR 3, initializers listed as inputs)."""
    if name not in ZOO:
        raise ValueError(f"unknown zoo model {name!r}; one of {', '.join(ZOO)}")
    model = onnx.load(str(light_path(name)))
    graph = model.graph
    rng = np.random.default_rng(seed)
    shapes = {
        t.name: tuple(int(d) for d in numpy_helper.to_array(t))
        for t in graph.initializer
        if t.name.endswith("__SHAPE")
    }
    keep_nodes, restored = [], []
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input and node.input[0] in shapes:
            value = next(a.t for a in node.attribute if a.name == "value")
            dtype = helper.tensor_dtype_to_np_dtype(value.data_type)
            array = _weight(rng, shapes[node.input[0]], dtype)
            restored.append(numpy_helper.from_array(array, name=node.output[0]))
        else:
            keep_nodes.append(node)
    del graph.node[:]
    graph.node.extend(keep_nodes)
    kept_inits = [t for t in graph.initializer if t.name not in shapes]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits + restored)
    kept_inputs = [i for i in graph.input if i.name not in shapes]
    del graph.input[:]
    graph.input.extend(kept_inputs)
    graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in restored)
    out = Path(out)
    onnx.save(model, str(out))
    return out
