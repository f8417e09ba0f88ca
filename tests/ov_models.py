"""Small ONNX models for the OpenVINO backend tests and benchmark, built with onnx.helper.

Minimal on purpose (the lead's shared builders live in tests/models.py); weights are He-initialised
from a fixed seed so activations stay in a sane range and int8 calibration is meaningful.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Graph:
    """Collects nodes and initializers; `const` adds a weight either as an initializer or, for old
    exporters' style, as a Constant node."""

    def __init__(self, seed: int = 0, constant_nodes: bool = False) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.constant_nodes = constant_nodes
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, array: np.ndarray, prefix: str = "w") -> str:
        name = self.name(prefix)
        tensor = numpy_helper.from_array(np.asarray(array), name)
        if self.constant_nodes:
            self.nodes.append(helper.make_node("Constant", [], [name], value=tensor, name=name + "_const"))
        else:
            self.inits.append(tensor)
        return name

    def node(self, op: str, inputs: Sequence[str], name: str | None = None, **attrs: object) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=name or out, **attrs))
        return out

    def he(self, *shape: int) -> np.ndarray:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        return (self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def conv_bn_relu(self, x: str, cin: int, cout: int, stride: int = 1, name: str | None = None) -> str:
        w = self.const(self.he(cout, cin, 3, 3))
        y = self.node("Conv", [x, w], name=name, pads=[1, 1, 1, 1], strides=[stride, stride])
        scale = self.const((1.0 + 0.1 * self.rng.standard_normal(cout)).astype(np.float32))
        bias = self.const((0.1 * self.rng.standard_normal(cout)).astype(np.float32))
        mean = self.const((0.1 * self.rng.standard_normal(cout)).astype(np.float32))
        var = self.const((1.0 + 0.1 * self.rng.random(cout)).astype(np.float32))
        y = self.node("BatchNormalization", [y, scale, bias, mean, var])
        return self.node("Relu", [y])

    def model(
        self,
        inputs: Sequence[onnx.ValueInfoProto],
        outputs: Sequence[onnx.ValueInfoProto],
        opset: int,
        rename_last: dict[str, str] | None = None,
    ) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "g", list(inputs), list(outputs), self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = min(model.ir_version, 8)
        onnx.checker.check_model(model)
        return model


def _rename_output(g: _Graph, tensor: str, new: str) -> None:
    for node in g.nodes:
        node.output[:] = [new if o == tensor else o for o in node.output]
        node.input[:] = [new if i == tensor else i for i in node.input]


def conv_net(
    size: int = 32,
    channels: Sequence[int] = (8, 16),
    classes: int = 10,
    batch: int | str = 1,
    spatial: int | str | None = None,
    odd_names: bool = True,
    seed: int = 0,
) -> onnx.ModelProto:
    """Conv/BN/ReLU stages with max-pool, global average pool, Flatten and Gemm. With `odd_names`
    the input, output and node names carry '@', ':' and '/'."""
    g = _Graph(seed)
    x_name = "image@0:x" if odd_names else "input"
    x, cin = x_name, 3
    for index, cout in enumerate(channels):
        name = f"stage{index}@conv:{index}" if odd_names else None
        x = g.conv_bn_relu(x, cin, cout, name=name)
        if index < len(channels) - 1:
            x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
        cin = cout
    x = g.node("GlobalAveragePool", [x])
    x = g.node("Flatten", [x], axis=1)
    w = g.const(g.he(classes, cin))
    b = g.const(np.zeros(classes, np.float32))
    y = g.node("Gemm", [x, w, b], name="head/fc:0" if odd_names else None, transB=1)
    out_name = "logits:0" if odd_names else "logits"
    _rename_output(g, y, out_name)
    hw = spatial if spatial is not None else size
    x_info = helper.make_tensor_value_info(x_name, TensorProto.FLOAT, [batch, 3, hw, hw])
    y_info = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [batch, classes])
    return g.model([x_info], [y_info], opset=13)


def resnet_ish(
    size: int = 224, width: int = 32, blocks: int = 4, classes: int = 100, seed: int = 0
) -> onnx.ModelProto:
    """A ResNet-like benchmark net: stride-2 stem, `blocks` residual blocks (2 convs each) with a
    stride-2 stage change halfway, GAP and FC. blocks=4 gives 10 convs (incl. stem and a shortcut)."""
    g = _Graph(seed)
    x = g.conv_bn_relu("input", 3, width, stride=2)
    x = g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = width
    for index in range(blocks):
        cout, stride = (cin * 2, 2) if index == blocks // 2 else (cin, 1)
        y = g.conv_bn_relu(x, cin, cout, stride=stride)
        w = g.const(g.he(cout, cout, 3, 3))
        y = g.node("Conv", [y, w], pads=[1, 1, 1, 1])
        if stride != 1 or cout != cin:
            ws = g.const(g.he(cout, cin, 1, 1))
            x = g.node("Conv", [x, ws], strides=[stride, stride])
        x = g.node("Relu", [g.node("Add", [x, y])])
        cin = cout
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)
    y = g.node("Gemm", [x, g.const(g.he(classes, cin)), g.const(np.zeros(classes, np.float32))], transB=1)
    _rename_output(g, y, "logits")
    x_info = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])
    y_info = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])
    return g.model([x_info], [y_info], opset=13)


def transformer_block(seq: int = 16, dim: int = 32, classes: int = 10, seed: int = 1) -> onnx.ModelProto:
    """Pre-norm single-head attention block + MLP + first-token classifier (LayerNormalization: opset 17)."""
    g = _Graph(seed)

    def layer_norm(x: str) -> str:
        return g.node(
            "LayerNormalization",
            [x, g.const(np.ones(dim, np.float32)), g.const(np.zeros(dim, np.float32))],
            axis=-1,
            epsilon=1e-5,
        )

    def linear(x: str, cin: int, cout: int) -> str:
        w = g.const((g.rng.standard_normal((cin, cout)) / np.sqrt(cin)).astype(np.float32))
        return g.node("Add", [g.node("MatMul", [x, w]), g.const(np.zeros(cout, np.float32))])

    h = layer_norm("tokens")
    q, k, v = linear(h, dim, dim), linear(h, dim, dim), linear(h, dim, dim)
    kt = g.node("Transpose", [k], perm=[0, 2, 1])
    scores = g.node("Mul", [g.node("MatMul", [q, kt]), g.const(np.array(1.0 / np.sqrt(dim), np.float32))])
    attn = g.node("MatMul", [g.node("Softmax", [scores], axis=-1), v])
    x = g.node("Add", ["tokens", linear(attn, dim, dim)])
    m = linear(g.node("Relu", [linear(layer_norm(x), dim, 2 * dim)]), 2 * dim, dim)
    x = g.node("Add", [x, m])
    # first-token ("CLS") pooling: a mean over random tokens would shrink the signal to noise level
    pooled = g.node("Gather", [layer_norm(x), g.const(np.array(0, np.int64), "index")], axis=1)
    y = linear(pooled, dim, classes)
    _rename_output(g, y, "logits")
    x_info = helper.make_tensor_value_info("tokens", TensorProto.FLOAT, [1, seq, dim])
    y_info = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])
    return g.model([x_info], [y_info], opset=17)


def constant_weights_opset11(size: int = 16, classes: int = 5, seed: int = 2) -> onnx.ModelProto:
    """Old-exporter style: opset 11, every weight in a Constant node, Conv + Relu + Flatten + MatMul."""
    g = _Graph(seed, constant_nodes=True)
    x = g.node("Relu", [g.node("Conv", ["input", g.const(g.he(8, 3, 3, 3))], pads=[1, 1, 1, 1])])
    x = g.node("MaxPool", [x], kernel_shape=[4, 4], strides=[4, 4])
    x = g.node("Flatten", [x], axis=1)
    features = 8 * (size // 4) * (size // 4)
    y = g.node(
        "Add",
        [g.node("MatMul", [x, g.const(g.he(features, classes))]), g.const(np.zeros(classes, np.float32))],
    )
    _rename_output(g, y, "logits")
    x_info = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])
    y_info = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])
    return g.model([x_info], [y_info], opset=11)


def two_inputs(features: int = 16, classes: int = 4, seed: int = 3) -> onnx.ModelProto:
    """Two float inputs, each through its own MatMul, summed, ReLU, Gemm."""
    g = _Graph(seed)
    a = g.node("MatMul", ["a", g.const(g.he(features, 32))])
    b = g.node("MatMul", ["b", g.const(g.he(features, 32))])
    h = g.node("Relu", [g.node("Add", [a, b])])
    y = g.node("Gemm", [h, g.const(g.he(classes, 32)), g.const(np.zeros(classes, np.float32))], transB=1)
    _rename_output(g, y, "out")
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, features]) for n in ("a", "b")]
    y_info = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, classes])
    return g.model(inputs, [y_info], opset=13)


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path
