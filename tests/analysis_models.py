"""ONNX models for the inspect tests and the memory benchmark, built with tests/models.py's Builder.

Every builder returns (model, float_weights): `float_weights` lists each float array the builder
created exactly once, so a test can count parameters independently of edgekit (np.prod of each).
The REALISTIC set is the memory benchmark's fit data: its graphs (ops, order, weight shapes) are fixed.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.models import Builder, dynamic_conv, plain_conv_net, two_vector_net

F32 = TensorProto.FLOAT
Built = tuple[onnx.ModelProto, list[np.ndarray]]


def _conv(b: Builder, x: str, cin: int, cout: int, k: int, stride: int = 1, bn: bool = True) -> str:
    """Conv + BN (no conv bias), or Conv with a bias."""
    return b.conv(x, cin, cout, k, stride, bias=not bn, bn=bn)


def _head(b: Builder, x: str, cin: int, classes: int) -> str:
    return b.gemm(b.op("Flatten", [b.op("GlobalAveragePool", [x])]), cin, classes)


def _image_model(b: Builder, out: str, batch: int, res: int, out_shape: list[int], name: str) -> Built:
    return b.model(
        [helper.make_tensor_value_info("image", F32, [batch, 3, res, res])],
        [helper.make_tensor_value_info(out, F32, out_shape)],
        opset=17,
        name=name,
        ir_version=8,
    ), b.weights


def _small_model(b: Builder, inp: tuple[str, list[int]], out: tuple[str, list[int]], name: str) -> Built:
    return b.model(
        [helper.make_tensor_value_info(inp[0], F32, inp[1])],
        [helper.make_tensor_value_info(out[0], F32, out[1])],
        opset=17,
        name=name,
        ir_version=8,
    ), b.weights


# ---- realistic models (benchmark) -----------------------------------------------------------------
def resnetish(res: int = 224, batch: int = 1, widths=(32, 64, 128, 256), classes: int = 1000) -> Built:
    """ResNet-18-like: stem 7x7/2 + maxpool, 4 stages of 2 basic blocks (Conv-BN-ReLU), GAP, FC."""
    b = Builder(1)
    y = b.op("Relu", [_conv(b, "image", 3, widths[0], 7, 2)])
    y = b.op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = widths[0]
    for stage, width in enumerate(widths):
        for block in range(2):
            stride = 2 if (stage > 0 and block == 0) else 1
            h = b.op("Relu", [_conv(b, y, cin, width, 3, stride)])
            h = _conv(b, h, width, width, 3)
            skip = _conv(b, y, cin, width, 1, stride) if (stride != 1 or cin != width) else y
            y = b.op("Relu", [b.op("Add", [h, skip])])
            cin = width
    return _image_model(b, _head(b, y, cin, classes), batch, res, [batch, classes], "resnetish")


def vggish(
    res: int = 224, batch: int = 1, cfg=(64, 64, "M", 128, 128, "M", 256, 256, "M", 256, 256, "M")
) -> Built:
    """VGG-like: 3x3 Conv+bias+ReLU at full resolution (big activations), max pools, GAP, FC."""
    b = Builder(2)
    y, cin = "image", 3
    for item in cfg:
        if item == "M":
            y = b.op("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
        else:
            y = b.op("Relu", [_conv(b, y, cin, int(item), 3, bn=False)])
            cin = int(item)
    return _image_model(b, _head(b, y, cin, 1000), batch, res, [batch, 1000], "vggish")


def transformer(
    seq: int = 256, d: int = 512, layers: int = 6, heads: int = 8, ffn: int = 2048, batch: int = 1
) -> Built:
    """Pre-LN encoder stack: LayerNorm, QKV MatMuls, scaled-dot-product attention with Softmax,
    output projection, residual, LayerNorm, FFN (MatMul-ReLU-MatMul), residual; the reshape targets
    and the scale are shared by all layers."""
    b = Builder(3)
    dh = d // heads
    split_shape = b.tensor(np.array([batch, seq, heads, dh], np.int64))
    merge_shape = b.tensor(np.array([batch, seq, d], np.int64))
    scale = b.tensor(np.array(1.0 / np.sqrt(dh), np.float32))
    y = "tokens"
    for _ in range(layers):
        ln1 = b.layer_norm(y, d)
        q, k, v = (b.op("Reshape", [b.linear(ln1, d, d), split_shape]) for _ in range(3))
        att = b.attention(q, k, v, scale, merge=merge_shape)
        y = b.op("Add", [y, b.linear(att, d, d)])
        h = b.op("Relu", [b.linear(b.layer_norm(y, d), d, ffn)])
        y = b.op("Add", [y, b.linear(h, ffn, d)])
    return b.model(
        [helper.make_tensor_value_info("tokens", F32, [batch, seq, d])],
        [helper.make_tensor_value_info(y, F32, [batch, seq, d])],
        opset=17,
        name="transformer",
        ir_version=8,
    ), b.weights


def mlp(batch: int = 64, dims=(4096, 4096, 4096, 4096, 1000)) -> Built:
    """Stack of big Gemms (transB=1) with ReLU."""
    b = Builder(4)
    y = "features"
    for i in range(len(dims) - 1):
        y = b.gemm(y, dims[i], dims[i + 1])
        if i < len(dims) - 2:
            y = b.op("Relu", [y])
    return b.model(
        [helper.make_tensor_value_info("features", F32, [batch, dims[0]])],
        [helper.make_tensor_value_info(y, F32, [batch, dims[-1]])],
        opset=17,
        name="mlp",
        ir_version=8,
    ), b.weights


def mobilenetish(
    res: int = 224, batch: int = 1, widths=(32, 64, 128, 128, 256, 256, 512, 512, 512, 1024)
) -> Built:
    """MobileNet-v1-like: depthwise 3x3 (group = channels) + pointwise 1x1, BN, ReLU; GAP, FC."""
    b = Builder(11)
    y = b.op("Relu", [_conv(b, "image", 3, widths[0], 3, 2)])
    cin = widths[0]
    for i, width in enumerate(widths[1:]):
        stride = 2 if i in (0, 2, 4, 6) else 1
        y = b.op("Relu", [b.conv(y, cin, cin, 3, stride, group=cin, bias=False)])
        y = b.op("Relu", [_conv(b, y, cin, width, 1)])
        cin = width
    return _image_model(b, _head(b, y, cin, 1000), batch, res, [batch, 1000], "mobilenetish")


def decoderish(res: int = 256, batch: int = 1, widths=(256, 128, 64, 32)) -> Built:
    """Segmentation-decoder-like: strided Conv encoder, ConvTranspose (2x2, stride 2) upsampling."""
    b = Builder(12)
    y, cin = "image", 3
    for width in reversed(widths):
        y = b.op("Relu", [_conv(b, y, cin, width, 3, 2, bn=False)])
        cin = width
    for width in widths[1:] + (8,):
        w = b.weight((cin, width, 2, 2))
        y = b.op("Relu", [b.op("ConvTranspose", [y, w], kernel_shape=[2, 2], strides=[2, 2])])
        cin = width
    return _image_model(b, y, batch, res, [batch, 8, res // 2, res // 2], "decoderish")


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
def small_convnet(res: int = 16) -> Built:
    """Conv(3->8, 3x3, pad 1) + ReLU + Conv(8->16, 3x3, stride 2) + GAP + Gemm(16->10)."""
    return plain_conv_net(size=res, opset=17)


def small_transformer() -> Built:
    return transformer(seq=8, d=16, layers=1, heads=2, ffn=32)


def constant_weights_model() -> Built:
    """Analysis-specific mix: weights in Constant nodes, one Constant read by two MatMuls, one
    initializer by two Adds, plus an int64 shape constant (not a parameter)."""
    b = Builder(6, constants=True)
    shared = b.weight((8, 8), scale=1.0, name="shared_w")
    w_out = b.weight((8, 4), scale=1.0, name="w_out")
    shape = b.tensor(np.array([1, 4], np.int64), name="shape")
    bias = b.tensor(b.rng.standard_normal(8).astype(np.float32), name="bias", initializer=True)
    y = "x"
    for _ in range(2):
        y = b.op("Add", [b.op("MatMul", [y, shared]), bias])
    b.op("Reshape", [b.op("MatMul", [y, w_out]), shape], name="y")
    return _small_model(b, ("x", [1, 8]), ("y", [1, 4]), "consts")


def opset11_model() -> Built:
    b = Builder(7)
    y = b.op("Relu", [_conv(b, "x", 3, 4, 3, bn=False)])
    y = b.op("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
    return b.model(
        [helper.make_tensor_value_info("x", F32, [1, 3, 8, 8])],
        [helper.make_tensor_value_info(y, F32, [1, 4, 4, 4])],
        opset=11,
        ir_version=8,
    ), b.weights


def dynamic_model() -> Built:
    """Conv net with input [N, 3, H, W] (symbolic batch and spatial dims)."""
    return dynamic_conv(seed=8)


def two_input_model() -> Built:
    """a[1,8] @ Wa + b[1,6] @ Wb -> out[1,4]."""
    return two_vector_net((8, 6), 4, seed=9)


def odd_names_model() -> Built:
    """Analysis-specific: the smallest graph whose every tensor name has '@' or ':' (largest_tensors checks them)."""
    b = Builder(10)
    w = b.weight((4, 4), scale=1.0, name="dense/kernel@0")
    y = b.op("MatMul", ["input:0", w], name="dense@out:0", node="dense/MatMul@1:0")
    b.op("Relu", [y], name="output:0", node="relu@2:0")
    return _small_model(b, ("input:0", [1, 4]), ("output:0", [1, 4]), "odd")


def chain_model() -> Built:
    """Analysis-specific, hand-checkable liveness: x[1,10] -Relu-> r[1,10]; r @ W[10,20] -> a[1,20];
    Concat(r, a) -> c[1,30]; Relu(c) -> y[1,30]. fp32 peak = 240 bytes at the Concat
    (r 40 + a 80 + c 120) and again at the last Relu (c 120 + y 120)."""
    b = Builder()
    w = b.tensor(np.ones((10, 20), np.float32), name="W")
    r = b.op("Relu", ["x"], name="r", node="relu0")
    a = b.op("MatMul", [r, w], name="a", node="matmul")
    c = b.op("Concat", [r, a], name="c", node="concat", axis=1)
    b.op("Relu", [c], name="y", node="relu1")
    return _small_model(b, ("x", [1, 10]), ("y", [1, 30]), "chain")
