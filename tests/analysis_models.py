"""ONNX models built in code for the inspect tests and the memory benchmark.

Every builder returns (model, float_weights): `float_weights` lists each float array the builder
created exactly once, so a test can count parameters independently of edgekit (np.prod of each).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F32 = TensorProto.FLOAT


class _Graph:
    """Tiny helper collecting nodes and initializers; weights get unique names."""

    def __init__(self, seed: int = 0) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.weights: list[np.ndarray] = []
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def weight(self, shape: tuple[int, ...], scale: float | None = None, prefix: str = "w") -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        scale = scale if scale is not None else (2.0 / max(fan_in, 1)) ** 0.5
        array = (self.rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32)
        return self.add_init(array, prefix)

    def add_init(self, array: np.ndarray, prefix: str = "c", count: bool = True) -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(array, name))
        if count and array.dtype.kind == "f":
            self.weights.append(array)
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs) -> str:
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(op_type), **attrs))
        return outs[0]

    def model(self, inputs, outputs, opset: int = 17, name: str = "g") -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def _conv(g: _Graph, x: str, cin: int, cout: int, k: int, stride: int = 1, bn: bool = True) -> str:
    w = g.weight((cout, cin, k, k))
    pad = k // 2
    if bn:
        y = g.op("Conv", [x, w], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)
        scale = g.add_init(np.ones(cout, np.float32))
        bias = g.add_init(np.zeros(cout, np.float32))
        mean = g.add_init(np.zeros(cout, np.float32))
        var = g.add_init(np.ones(cout, np.float32))
        return g.op("BatchNormalization", [y, scale, bias, mean, var])
    b = g.add_init(np.zeros(cout, np.float32))
    return g.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)


# ---- realistic models (benchmark) -----------------------------------------------------------------
def resnetish(res: int = 224, batch: int = 1, widths=(32, 64, 128, 256), classes: int = 1000):
    """ResNet-18-like: stem 7x7/2 + maxpool, 4 stages of 2 basic blocks (Conv-BN-ReLU), GAP, FC."""
    g = _Graph(1)
    x = "image"
    y = g.op("Relu", [_conv(g, x, 3, widths[0], 7, 2)])
    y = g.op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = widths[0]
    for stage, width in enumerate(widths):
        for block in range(2):
            stride = 2 if (stage > 0 and block == 0) else 1
            h = g.op("Relu", [_conv(g, y, cin, width, 3, stride)])
            h = _conv(g, h, width, width, 3)
            skip = _conv(g, y, cin, width, 1, stride) if (stride != 1 or cin != width) else y
            y = g.op("Relu", [g.op("Add", [h, skip])])
            cin = width
    y = g.op("Flatten", [g.op("GlobalAveragePool", [y])])
    out = g.op("Gemm", [y, g.weight((classes, cin)), g.add_init(np.zeros(classes, np.float32))], transB=1)
    return g.model(
        [helper.make_tensor_value_info(x, F32, [batch, 3, res, res])],
        [helper.make_tensor_value_info(out, F32, [batch, classes])],
        name="resnetish",
    ), g.weights


def vggish(res: int = 224, batch: int = 1, cfg=(64, 64, "M", 128, 128, "M", 256, 256, "M", 256, 256, "M")):
    """VGG-like: 3x3 Conv+bias+ReLU at full resolution (big activations), max pools, GAP, FC."""
    g = _Graph(2)
    x = "image"
    y, cin = x, 3
    for item in cfg:
        if item == "M":
            y = g.op("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
        else:
            y = g.op("Relu", [_conv(g, y, cin, int(item), 3, bn=False)])
            cin = int(item)
    y = g.op("Flatten", [g.op("GlobalAveragePool", [y])])
    out = g.op("Gemm", [y, g.weight((1000, cin)), g.add_init(np.zeros(1000, np.float32))], transB=1)
    return g.model(
        [helper.make_tensor_value_info(x, F32, [batch, 3, res, res])],
        [helper.make_tensor_value_info(out, F32, [batch, 1000])],
        name="vggish",
    ), g.weights


def transformer(
    seq: int = 256, d: int = 512, layers: int = 6, heads: int = 8, ffn: int = 2048, batch: int = 1
):
    """Pre-LN encoder stack: LayerNorm, QKV MatMuls, scaled-dot-product attention with Softmax,
    output projection, residual, LayerNorm, FFN (MatMul-ReLU-MatMul), residual."""
    g = _Graph(3)
    dh = d // heads
    x = "tokens"
    split_shape = g.add_init(np.array([batch, seq, heads, dh], np.int64), "shape")
    merge_shape = g.add_init(np.array([batch, seq, d], np.int64), "shape")
    scale = g.add_init(np.array(1.0 / np.sqrt(dh), np.float32), "scale")
    y = x
    for _ in range(layers):
        ln1 = g.op(
            "LayerNormalization", [y, g.add_init(np.ones(d, np.float32)), g.add_init(np.zeros(d, np.float32))]
        )
        qkv = []
        for _proj in range(3):
            p = g.op("Add", [g.op("MatMul", [ln1, g.weight((d, d))]), g.add_init(np.zeros(d, np.float32))])
            qkv.append(g.op("Reshape", [p, split_shape]))
        q = g.op("Transpose", [qkv[0]], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [qkv[1]], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [qkv[2]], perm=[0, 2, 1, 3])
        scores = g.op("Mul", [g.op("MatMul", [q, k]), scale])
        att = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        att = g.op("Reshape", [g.op("Transpose", [att], perm=[0, 2, 1, 3]), merge_shape])
        proj = g.op("Add", [g.op("MatMul", [att, g.weight((d, d))]), g.add_init(np.zeros(d, np.float32))])
        y = g.op("Add", [y, proj])
        ln2 = g.op(
            "LayerNormalization", [y, g.add_init(np.ones(d, np.float32)), g.add_init(np.zeros(d, np.float32))]
        )
        h = g.op("Add", [g.op("MatMul", [ln2, g.weight((d, ffn))]), g.add_init(np.zeros(ffn, np.float32))])
        h = g.op("Relu", [h])
        h = g.op("Add", [g.op("MatMul", [h, g.weight((ffn, d))]), g.add_init(np.zeros(d, np.float32))])
        y = g.op("Add", [y, h])
    return g.model(
        [helper.make_tensor_value_info(x, F32, [batch, seq, d])],
        [helper.make_tensor_value_info(y, F32, [batch, seq, d])],
        name="transformer",
    ), g.weights


def mlp(batch: int = 64, dims=(4096, 4096, 4096, 4096, 1000)):
    """Stack of big Gemms (transB=1) with ReLU."""
    g = _Graph(4)
    x = "features"
    y = x
    for i in range(len(dims) - 1):
        y = g.op(
            "Gemm",
            [y, g.weight((dims[i + 1], dims[i])), g.add_init(np.zeros(dims[i + 1], np.float32))],
            transB=1,
        )
        if i < len(dims) - 2:
            y = g.op("Relu", [y])
    return g.model(
        [helper.make_tensor_value_info(x, F32, [batch, dims[0]])],
        [helper.make_tensor_value_info(y, F32, [batch, dims[-1]])],
        name="mlp",
    ), g.weights


def mobilenetish(res: int = 224, batch: int = 1, widths=(32, 64, 128, 128, 256, 256, 512, 512, 512, 1024)):
    """MobileNet-v1-like: depthwise 3x3 (group = channels) + pointwise 1x1, BN, ReLU; GAP, FC."""
    g = _Graph(11)
    y = g.op("Relu", [_conv(g, "image", 3, widths[0], 3, 2)])
    cin = widths[0]
    for i, width in enumerate(widths[1:]):
        stride = 2 if i in (0, 2, 4, 6) else 1
        dw = g.weight((cin, 1, 3, 3))
        y = g.op("Conv", [y, dw], kernel_shape=[3, 3], strides=[stride, stride], pads=[1] * 4, group=cin)
        y = g.op("Relu", [y])
        y = g.op("Relu", [_conv(g, y, cin, width, 1)])
        cin = width
    y = g.op("Flatten", [g.op("GlobalAveragePool", [y])])
    out = g.op("Gemm", [y, g.weight((1000, cin)), g.add_init(np.zeros(1000, np.float32))], transB=1)
    return g.model(
        [helper.make_tensor_value_info("image", F32, [batch, 3, res, res])],
        [helper.make_tensor_value_info(out, F32, [batch, 1000])],
        name="mobilenetish",
    ), g.weights


def decoderish(res: int = 256, batch: int = 1, widths=(256, 128, 64, 32)):
    """Segmentation-decoder-like: strided Conv encoder, ConvTranspose (2x2, stride 2) upsampling."""
    g = _Graph(12)
    y, cin = "image", 3
    for width in reversed(widths):
        y = g.op("Relu", [_conv(g, y, cin, width, 3, 2, bn=False)])
        cin = width
    for width in widths[1:] + (8,):
        w = g.weight((cin, width, 2, 2))
        y = g.op("Relu", [g.op("ConvTranspose", [y, w], kernel_shape=[2, 2], strides=[2, 2])])
        cin = width
    return g.model(
        [helper.make_tensor_value_info("image", F32, [batch, 3, res, res])],
        [helper.make_tensor_value_info(y, F32, [batch, 8, res // 2, res // 2])],
        name="decoderish",
    ), g.weights


REALISTIC = {
    "resnetish-224": lambda: resnetish(224),
    "resnetish-224-b8": lambda: resnetish(224, batch=8),
    "vggish-224": lambda: vggish(224),
    "vggish-448": lambda: vggish(448),
    "transformer-s256-d512": lambda: transformer(256, 512, 6, 8, 2048),
    "transformer-s512-d768": lambda: transformer(512, 768, 4, 12, 3072),
    "mlp-4096": lambda: mlp(64),
    "mlp-2048": lambda: mlp(64, (2048, 2048, 2048, 2048, 2048, 1000)),
    "resnet18-224": lambda: resnetish(224, widths=(64, 128, 256, 512)),
    "resnet-narrow-224": lambda: resnetish(224, widths=(16, 32, 64, 128)),
    "tiny-convnet": lambda: small_convnet(16),
    # not used when choosing the constants (held out)
    "mobilenetish-224": lambda: mobilenetish(224),
    "decoderish-512": lambda: decoderish(512),
}


# ---- small test models -----------------------------------------------------------------------------
def small_convnet(res: int = 16):
    """Conv(3->8, 3x3, pad 1) + ReLU + Conv(8->16, 3x3, stride 2) + GAP + Gemm(16->10)."""
    g = _Graph(5)
    a = g.op("Relu", [_conv(g, "x", 3, 8, 3, bn=False)])
    b = g.op("Relu", [_conv(g, a, 8, 16, 3, stride=2, bn=False)])
    f = g.op("Flatten", [g.op("GlobalAveragePool", [b])])
    out = g.op("Gemm", [f, g.weight((10, 16)), g.add_init(np.zeros(10, np.float32))], transB=1)
    return g.model(
        [helper.make_tensor_value_info("x", F32, [1, 3, res, res])],
        [helper.make_tensor_value_info(out, F32, [1, 10])],
    ), g.weights


def small_transformer():
    return transformer(seq=8, d=16, layers=1, heads=2, ffn=32)


def constant_weights_model():
    """Weights held in Constant nodes; one Constant (`shared_w`) is read by two MatMuls, one
    initializer by two Adds, plus an int64 shape constant (not a parameter)."""
    rng = np.random.default_rng(6)
    w_shared = rng.standard_normal((8, 8), dtype=np.float32)
    w_out = rng.standard_normal((8, 4), dtype=np.float32)
    bias = rng.standard_normal(8, dtype=np.float32)
    nodes = [
        helper.make_node("Constant", [], ["shared_w"], value=numpy_helper.from_array(w_shared)),
        helper.make_node("Constant", [], ["w_out"], value=numpy_helper.from_array(w_out)),
        helper.make_node(
            "Constant", [], ["shape"], value=numpy_helper.from_array(np.array([1, 4], np.int64))
        ),
        helper.make_node("MatMul", ["x", "shared_w"], ["h1"]),
        helper.make_node("Add", ["h1", "bias"], ["h1b"]),
        helper.make_node("MatMul", ["h1b", "shared_w"], ["h2"]),
        helper.make_node("Add", ["h2", "bias"], ["h2b"]),
        helper.make_node("MatMul", ["h2b", "w_out"], ["h3"]),
        helper.make_node("Reshape", ["h3", "shape"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "consts",
        [helper.make_tensor_value_info("x", F32, [1, 8])],
        [helper.make_tensor_value_info("y", F32, [1, 4])],
        [numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, [w_shared, w_out, bias]


def opset11_model():
    g = _Graph(7)
    y = g.op("Relu", [_conv(g, "x", 3, 4, 3, bn=False)])
    y = g.op("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
    return g.model(
        [helper.make_tensor_value_info("x", F32, [1, 3, 8, 8])],
        [helper.make_tensor_value_info(y, F32, [1, 4, 4, 4])],
        opset=11,
    ), g.weights


def dynamic_model():
    """Conv net with input [N, 3, H, W] (symbolic batch and spatial dims)."""
    g = _Graph(8)
    y = g.op("Relu", [_conv(g, "x", 3, 4, 3, bn=False)])
    return g.model(
        [helper.make_tensor_value_info("x", F32, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info(y, F32, ["N", 4, "H", "W"])],
    ), g.weights


def two_input_model():
    """a[1,8] @ Wa + b[1,6] @ Wb -> y[1,4]."""
    g = _Graph(9)
    ya = g.op("MatMul", ["a", g.weight((8, 4))])
    yb = g.op("MatMul", ["b", g.weight((6, 4))])
    y = g.op("Add", [ya, yb])
    return g.model(
        [helper.make_tensor_value_info("a", F32, [1, 8]), helper.make_tensor_value_info("b", F32, [1, 6])],
        [helper.make_tensor_value_info(y, F32, [1, 4])],
    ), g.weights


def odd_names_model():
    """Tensor and node names with '@' and ':' (TensorFlow/PyTorch exporters produce them)."""
    rng = np.random.default_rng(10)
    w = rng.standard_normal((4, 4), dtype=np.float32)
    nodes = [
        helper.make_node("MatMul", ["input:0", "dense/kernel@0"], ["dense@out:0"], name="dense/MatMul@1:0"),
        helper.make_node("Relu", ["dense@out:0"], ["output:0"], name="relu@2:0"),
    ]
    graph = helper.make_graph(
        nodes,
        "odd",
        [helper.make_tensor_value_info("input:0", F32, [1, 4])],
        [helper.make_tensor_value_info("output:0", F32, [1, 4])],
        [numpy_helper.from_array(w, "dense/kernel@0")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, [w]


def chain_model():
    """Hand-checkable liveness: x[1,10] -Relu-> r[1,10]; r @ W[10,20] -> a[1,20];
    Concat(r, a) -> c[1,30]; Relu(c) -> y[1,30]. fp32 peak = 240 bytes at the Concat
    (r 40 + a 80 + c 120) and again at the last Relu (c 120 + y 120)."""
    w = np.ones((10, 20), np.float32)
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu0"),
        helper.make_node("MatMul", ["r", "W"], ["a"], name="matmul"),
        helper.make_node("Concat", ["r", "a"], ["c"], name="concat", axis=1),
        helper.make_node("Relu", ["c"], ["y"], name="relu1"),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", F32, [1, 10])],
        [helper.make_tensor_value_info("y", F32, [1, 30])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, [w]
