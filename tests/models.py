"""Small ONNX models built in code, shaped like the ones real exporters produce.

Each builder returns a ModelProto; `param_count` of each is computed here independently of edgekit
(the sum of the sizes of the float weight arrays created, each shared tensor once).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG_SEED = 0


class Builder:
    """Collects nodes and weights; `weight()` returns a name and records the parameter count."""

    def __init__(self, seed: int = RNG_SEED, constants: bool = False) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.params = 0
        self.constants = constants  # weights as Constant nodes instead of initializers
        self._count = 0

    def name(self, base: str) -> str:
        self._count += 1
        return f"{base}_{self._count}"

    def weight(self, shape: tuple[int, ...], scale: float | None = None, name: str | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        std = scale if scale is not None else np.sqrt(2.0 / max(fan_in, 1))
        array = (self.rng.standard_normal(shape) * std).astype(np.float32)
        return self.tensor(array, name)

    def tensor(self, array: np.ndarray, name: str | None = None) -> str:
        name = name or self.name("w")
        if array.dtype == np.float32:
            self.params += int(array.size)
        if self.constants:
            self.nodes.append(
                helper.make_node(
                    "Constant", [], [name], value=numpy_helper.from_array(array, name), name=name + "_const"
                )
            )
        else:
            self.inits.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        out = name or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out + "_node", **attrs))
        return out

    def conv_bn_relu(self, x: str, cin: int, cout: int, k: int = 3, stride: int = 1, group: int = 1) -> str:
        w = self.weight((cout, cin // group, k, k))
        b = self.tensor(np.zeros(cout, np.float32))
        y = self.op("Conv", [x, w, b], pads=[k // 2] * 4, strides=[stride, stride], group=group)
        scale = self.tensor((1.0 + 0.1 * self.rng.standard_normal(cout)).astype(np.float32))
        bias = self.tensor((0.1 * self.rng.standard_normal(cout)).astype(np.float32))
        mean = self.tensor((0.1 * self.rng.standard_normal(cout)).astype(np.float32))
        var = self.tensor((1.0 + 0.1 * np.abs(self.rng.standard_normal(cout))).astype(np.float32))
        y = self.op("BatchNormalization", [y, scale, bias, mean, var], epsilon=1e-5)
        return self.op("Relu", [y])

    def gemm(self, x: str, cin: int, cout: int) -> str:
        w = self.weight((cout, cin))
        b = self.tensor((0.01 * self.rng.standard_normal(cout)).astype(np.float32))
        return self.op("Gemm", [x, w, b], transB=1)

    def model(self, inputs, outputs, opset: int = 13, name: str = "g") -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgekit-tests"
        )
        model.ir_version = 8 if opset >= 15 else 7
        onnx.checker.check_model(model)
        return model


def _cnn_body(b: Builder, x: str, cin: int = 3, classes: int = 10) -> str:
    y = b.conv_bn_relu(x, cin, 16)
    y = b.conv_bn_relu(y, 16, 16, group=16)  # depthwise
    y = b.conv_bn_relu(y, 16, 32, k=1)  # pointwise
    y = b.op("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
    y = b.conv_bn_relu(y, 32, 32, stride=2)
    y = b.op("GlobalAveragePool", [y])
    y = b.op("Flatten", [y], axis=1)
    return b.gemm(y, 32, classes)


def conv_net(size: int = 32, opset: int = 13) -> tuple[onnx.ModelProto, int]:
    b = Builder()
    logits = _cnn_body(b, "input")
    b.nodes[-1].output[0] = "logits"
    model = b.model(
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        opset=opset,
    )
    del logits
    return model, b.params


def opset11_net() -> tuple[onnx.ModelProto, int]:
    return conv_net(opset=11)


def constant_weights_net() -> tuple[onnx.ModelProto, int]:
    """Weights held in Constant nodes (as TF/Paddle exporters do), one tensor shared by two nodes."""
    b = Builder(constants=True)
    w = b.weight((8, 3, 3, 3))
    y = b.op("Conv", ["input", w], pads=[1, 1, 1, 1])
    y = b.op("Relu", [y])
    y = b.op("GlobalAveragePool", [y])
    y = b.op("Flatten", [y], axis=1)
    shared = b.weight((8, 8))
    y = b.op("MatMul", [y, shared])
    y = b.op("Relu", [y])
    y = b.op("MatMul", [y, shared])  # the same weight again: counted once
    head = b.weight((8, 4))
    b.op("MatMul", [y, head], name="scores")
    model = b.model(
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4])],
        opset=12,
    )
    return model, b.params


def dynamic_net() -> tuple[onnx.ModelProto, int]:
    """Dynamic batch and spatial dims."""
    b = Builder()
    _cnn_body(b, "images", classes=5)
    b.nodes[-1].output[0] = "probs_in"
    b.op("Softmax", ["probs_in"], name="probs", axis=1)
    model = b.model(
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 5])],
    )
    return model, b.params


def two_input_net() -> tuple[onnx.ModelProto, int]:
    """An image and a feature vector, fused before the classifier."""
    b = Builder()
    y = b.conv_bn_relu("image", 3, 8)
    y = b.op("GlobalAveragePool", [y])
    y = b.op("Flatten", [y], axis=1)
    v = b.gemm("features", 6, 8)
    v = b.op("Relu", [v])
    y = b.op("Concat", [y, v], axis=1)
    b.gemm(y, 16, 3)
    b.nodes[-1].output[0] = "out"
    model = b.model(
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 6]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3])],
    )
    return model, b.params


def odd_names_net() -> tuple[onnx.ModelProto, int]:
    """Tensor and node names with '@', ':' and '/' as TF and Paddle exports have them."""
    b = Builder()
    w = b.weight((8, 3, 3, 3), name="conv@0/weight:0")
    y = b.op("Conv", ["input:0", w], name="block/conv@1:0", pads=[1, 1, 1, 1])
    y = b.op("Relu", [y], name="block/relu@2:0")
    y = b.op("GlobalAveragePool", [y], name="pool:0")
    y = b.op("Flatten", [y], name="flat@x", axis=1)
    g = b.weight((4, 8), name="fc@w:0")
    bias = b.tensor(np.zeros(4, np.float32), name="fc@b:0")
    b.op("Gemm", [y, g, bias], name="logits@out:0", transB=1)
    model = b.model(
        [helper.make_tensor_value_info("input:0", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("logits@out:0", TensorProto.FLOAT, [1, 4])],
    )
    return model, b.params


def transformer_block(seq: int = 16, dim: int = 32, heads: int = 2) -> tuple[onnx.ModelProto, int]:
    """Pre-norm encoder block: LayerNorm, multi-head self-attention (MatMul/Softmax), MLP, residuals."""
    b = Builder()
    head_dim = dim // heads

    def layer_norm(x: str) -> str:
        gamma = b.tensor(np.ones(dim, np.float32))
        beta = b.tensor(np.zeros(dim, np.float32))
        return b.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=1e-5)

    def split_heads(x: str) -> str:
        shape = b.tensor(np.array([1, seq, heads, head_dim], np.int64))
        y = b.op("Reshape", [x, shape])
        return b.op("Transpose", [y], perm=[0, 2, 1, 3])

    h = layer_norm("tokens")
    q = split_heads(b.op("MatMul", [h, b.weight((dim, dim), scale=dim**-0.5)]))
    k = split_heads(b.op("MatMul", [h, b.weight((dim, dim), scale=dim**-0.5)]))
    v = split_heads(b.op("MatMul", [h, b.weight((dim, dim), scale=dim**-0.5)]))
    kt = b.op("Transpose", [k], perm=[0, 1, 3, 2])
    scores = b.op("MatMul", [q, kt])
    scale = b.tensor(np.array(head_dim**-0.5, np.float32))
    scores = b.op("Mul", [scores, scale])
    attn = b.op("Softmax", [scores], axis=-1)
    ctx = b.op("MatMul", [attn, v])
    ctx = b.op("Transpose", [ctx], perm=[0, 2, 1, 3])
    ctx = b.op("Reshape", [ctx, b.tensor(np.array([1, seq, dim], np.int64))])
    proj = b.op("MatMul", [ctx, b.weight((dim, dim), scale=dim**-0.5)])
    x = b.op("Add", ["tokens", proj])
    h = layer_norm(x)
    h = b.op("MatMul", [h, b.weight((dim, 4 * dim), scale=dim**-0.5)])
    h = b.op("Relu", [h])
    h = b.op("MatMul", [h, b.weight((4 * dim, dim), scale=(4 * dim) ** -0.5)])
    b.op("Add", [x, h], name="hidden")
    model = b.model(
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, [1, seq, dim])],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, [1, seq, dim])],
        opset=17,
    )
    return model, b.params


# name -> (builder, input shapes to fix for static backends)
VARIED = {
    "conv": (conv_net, {}),
    "transformer": (transformer_block, {}),
    "constants": (constant_weights_net, {}),
    "opset11": (opset11_net, {}),
    "dynamic": (dynamic_net, {"images": [1, 3, 24, 24]}),
    "two_inputs": (two_input_net, {}),
    "odd_names": (odd_names_net, {}),
}


def sample_set(
    model: onnx.ModelProto, count: int, seed: int = 1, fixed: dict | None = None
) -> dict[str, np.ndarray]:
    """Random inputs (samples on axis 0, batch axis of 1 squeezed into it) for every model input."""
    rng = np.random.default_rng(seed)
    inits = {i.name for i in model.graph.initializer}
    data = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = (
            fixed.get(vi.name)
            if fixed and vi.name in fixed
            else [d.dim_value or 1 for d in vi.type.tensor_type.shape.dim]
        )
        data[vi.name] = rng.standard_normal([count, *dims[1:]]).astype(np.float32)
    return data


def write_model_and_sets(
    tmp: Path, key: str, calib_count: int = 16, val_count: int = 12
) -> tuple[Path, Path, Path, int]:
    """Save a VARIED model plus calibration and validation .npz files into `tmp`."""
    builder, fixed = VARIED[key]
    model, params = builder()
    model_path = tmp / f"{key}.onnx"
    onnx.save(model, model_path)
    calib = tmp / f"{key}_calib.npz"
    val = tmp / f"{key}_val.npz"
    np.savez(calib, **sample_set(model, calib_count, seed=1, fixed=fixed))
    np.savez(val, **sample_set(model, val_count, seed=2, fixed=fixed))
    return model_path, calib, val, params
