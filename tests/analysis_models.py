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


# ---- real-world architectures (OCR pipeline, mobile classifiers) ------------------------------------
def _hswish(b: Builder, x: str) -> str:
    return b.op("HardSwish", [x])


def _se(b: Builder, x: str, c: int, r: int = 4) -> str:
    """Squeeze-excite: GAP, 1x1 reduce + ReLU, 1x1 expand + HardSigmoid, scale."""
    s = b.op("GlobalAveragePool", [x])
    s = b.op("Relu", [b.conv(s, c, max(8, c // r), 1)])
    s = b.op("HardSigmoid", [b.conv(s, max(8, c // r), c, 1)], alpha=1.0 / 6, beta=0.5)
    return b.op("Mul", [x, s])


def _mbv3_block(b: Builder, x: str, cin: int, exp: int, cout: int, k: int, stride, se: bool, hs: bool) -> str:
    """MobileNetV3 bneck: 1x1 expand, kxk depthwise (stride int or (sh, sw)), optional SE, 1x1 project,
    residual when shapes allow."""
    act = (lambda t: _hswish(b, t)) if hs else (lambda t: b.op("Relu", [t]))
    y = act(b.conv(x, cin, exp, 1, bias=False, bn=True)) if exp != cin else x
    strides = list(stride) if isinstance(stride, tuple) else [stride, stride]
    w = b.weight((exp, 1, k, k))
    y = b.op("Conv", [y, w], kernel_shape=[k, k], pads=[k // 2] * 4, strides=strides, group=exp)
    y = act(b.batch_norm(y, exp))
    if se:
        y = _se(b, y, exp)
    y = b.conv(y, exp, cout, 1, bias=False, bn=True)
    return b.op("Add", [x, y]) if (strides == [1, 1] and cin == cout) else y


# (kernel, expansion, out, SE, hard-swish, stride) of MobileNetV3-large x0.5 / small x0.35 as PaddleOCR uses them
_MBV3_LARGE = [
    (3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1), (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1), (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1), (5, 960, 160, True, True, 1),
]  # fmt: skip


def _scaled(c: int, scale: float) -> int:
    return max(8, int(c * scale + 4) // 8 * 8)


def dbnet(res: int = 640, scale: float = 0.5, inner: int = 96, batch: int = 1) -> Built:
    """DBNet text detector as PaddleOCR exports it (PP-OCR det): MobileNetV3-large backbone, FPN neck
    (1x1 laterals to `inner` channels, top-down nearest Resize x2 + Add, 3x3 smoothing to inner/4,
    Resize to 1/4 resolution and Concat of the four levels), DB head (3x3 conv, two 2x2/2
    ConvTranspose back to full resolution, Sigmoid): big 1/4-resolution activations, four live branches."""
    b = Builder(13)
    y = _hswish(b, b.conv("image", 3, _scaled(16, scale), 3, 2, bias=False, bn=True))
    cin = _scaled(16, scale)
    taps: list[tuple[str, int]] = []
    for index, (k, exp, out, se, hs, stride) in enumerate(_MBV3_LARGE):
        if stride == 2 and index > 1:
            taps.append((y, cin))
        exp_c, out_c = _scaled(exp, scale), _scaled(out, scale)
        y = _mbv3_block(b, y, cin, exp_c, out_c, k, stride, se, hs)
        cin = out_c
    y = _hswish(b, b.conv(y, cin, _scaled(960, scale), 1, bias=False, bn=True))
    taps.append((y, _scaled(960, scale)))
    laterals = [b.conv(t, c, inner, 1, bias=False) for t, c in taps]  # strides 4, 8, 16, 32
    scales2 = b.tensor(np.array([1, 1, 2, 2], np.float32))
    roi = b.tensor(np.array([], np.float32))
    merged = [laterals[-1]]
    for lateral in reversed(laterals[:-1]):
        up = b.op("Resize", [merged[-1], roi, scales2], mode="nearest")
        merged.append(b.op("Add", [lateral, up]))
    merged.reverse()  # strides 4, 8, 16, 32
    branches = []
    for level, feat in enumerate(merged):
        p = b.conv(feat, inner, inner // 4, 3, bias=False)
        if level:
            factor = float(2**level)
            p = b.op(
                "Resize", [p, roi, b.tensor(np.array([1, 1, factor, factor], np.float32))], mode="nearest"
            )
        branches.append(p)
    fuse = b.op("Concat", list(reversed(branches)), axis=1)
    h = b.op("Relu", [b.conv(fuse, inner, inner // 4, 3, bias=False, bn=True)])
    w1 = b.weight((inner // 4, inner // 4, 2, 2))
    h = b.op(
        "ConvTranspose",
        [h, w1, b.tensor(np.zeros(inner // 4, np.float32))],
        kernel_shape=[2, 2],
        strides=[2, 2],
    )
    h = b.op("Relu", [b.batch_norm(h, inner // 4)])
    w2 = b.weight((inner // 4, 1, 2, 2))
    h = b.op("ConvTranspose", [h, w2, b.tensor(np.zeros(1, np.float32))], kernel_shape=[2, 2], strides=[2, 2])
    out = b.op("Sigmoid", [h], name="maps")
    return _image_model(b, out, batch, res, [batch, 1, res, res], "dbnet")


def crnn(height: int = 48, width: int = 320, hidden: int = 96, classes: int = 6625, batch: int = 1) -> Built:
    """CRNN text recognizer as PP-OCRv2 rec exports it: MobileNetV3-small-like backbone with (2, 1)
    strides that keep the width, an average pool to height 1, Squeeze + Transpose to a sequence, a
    2-layer bidirectional LSTM, a Gemm-style MatMul to the character classes, Softmax."""
    b = Builder(14)
    y = _hswish(b, b.conv("image", 3, 16, 3, 2, bias=False, bn=True))
    cin = 16
    cfg = [
        (3, 16, 16, True, False, (2, 1)), (3, 72, 24, False, False, (2, 1)), (3, 88, 24, False, False, 1),
        (5, 96, 40, True, True, (2, 1)), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
        (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, (2, 1)),
        (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1),
    ]  # fmt: skip
    for k, exp, out, se, hs, stride in cfg:
        y = _mbv3_block(b, y, cin, exp, out, k, stride, se, hs)
        cin = out
    y = _hswish(b, b.conv(y, cin, 288, 1, bias=False, bn=True))
    y = b.op("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])  # height 1, width / 4
    seq = width // 4
    y = b.op("Squeeze", [y, b.tensor(np.array([2], np.int64))])  # [N, C, T]
    y = b.op("Transpose", [y], perm=[2, 0, 1])  # [T, N, C]
    feat = 288
    for _ in range(2):
        w = b.weight((2, 4 * hidden, feat), scale=feat**-0.5)
        r = b.weight((2, 4 * hidden, hidden), scale=hidden**-0.5)
        bias = b.tensor(np.zeros((2, 8 * hidden), np.float32))
        y = b.op("LSTM", [y, w, r, bias], hidden_size=hidden, direction="bidirectional")  # [T, 2, N, H]
        y = b.op("Transpose", [y], perm=[0, 2, 1, 3])
        y = b.op("Reshape", [y, b.tensor(np.array([seq, batch, 2 * hidden], np.int64))])
        feat = 2 * hidden
    y = b.op("Transpose", [y], perm=[1, 0, 2])  # [N, T, 2H]
    y = b.linear(y, feat, classes)
    out = b.op("Softmax", [y], name="probs", axis=-1)
    return b.model(
        [helper.make_tensor_value_info("image", F32, [batch, 3, height, width])],
        [helper.make_tensor_value_info(out, F32, [batch, seq, classes])],
        opset=17,
        name="crnn",
        ir_version=8,
    ), b.weights


def mobilenetv3_small(height: int = 224, width: int = 224, classes: int = 1000, scale: float = 1.0) -> Built:
    """MobileNetV3-small classifier (hard-swish, SE, 1x1 head convs); at 48x192 and 2 classes it is
    PaddleOCR's text-direction classifier."""
    b = Builder(15)
    c = _scaled(16, scale)
    y = _hswish(b, b.conv("image", 3, c, 3, 2, bias=False, bn=True))
    cfg = [
        (3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
        (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
        (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
        (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1),
    ]  # fmt: skip
    cin = c
    for k, exp, out, se, hs, stride in cfg:
        exp_c, out_c = _scaled(exp, scale), _scaled(out, scale)
        y = _mbv3_block(b, y, cin, exp_c, out_c, k, stride, se, hs)
        cin = out_c
    last = _scaled(576, scale)
    y = _hswish(b, b.conv(y, cin, last, 1, bias=False, bn=True))
    y = b.op("GlobalAveragePool", [y])
    y = _hswish(b, b.conv(y, last, 1024, 1))
    y = b.op("Flatten", [y])
    out = b.op("Softmax", [b.gemm(y, 1024, classes)], name="probs", axis=-1)
    return b.model(
        [helper.make_tensor_value_info("image", F32, [1, 3, height, width])],
        [helper.make_tensor_value_info(out, F32, [1, classes])],
        opset=17,
        name="mbv3small",
        ir_version=8,
    ), b.weights


def mobilenetv2(res: int = 224, classes: int = 1000) -> Built:
    """MobileNetV2: inverted residuals (1x1 expand x6, 3x3 depthwise, 1x1 linear project), Clip (ReLU6)."""
    b = Builder(16)

    def relu6(t: str) -> str:
        return b.op("Clip", [t, b.tensor(np.array(0.0, np.float32)), b.tensor(np.array(6.0, np.float32))])

    y = relu6(b.conv("image", 3, 32, 3, 2, bias=False, bn=True))
    cin = 32
    for t, c, n, s in [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]:
        for i in range(n):
            stride = s if i == 0 else 1
            exp = cin * t
            h = relu6(b.conv(y, cin, exp, 1, bias=False, bn=True)) if t != 1 else y
            h = relu6(b.conv(h, exp, exp, 3, stride, group=exp, bias=False, bn=True))
            h = b.conv(h, exp, c, 1, bias=False, bn=True)
            y = b.op("Add", [y, h]) if (stride == 1 and cin == c) else h
            cin = c
    y = relu6(b.conv(y, cin, 1280, 1, bias=False, bn=True))
    return _image_model(b, _head(b, y, 1280, classes), 1, res, [1, classes], "mobilenetv2")


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
    "mobilenetish-224": lambda: mobilenetish(224),
    "decoderish-512": lambda: decoderish(512),
    # an OCR pipeline as PaddleOCR exports it, and mobile classifiers
    "dbnet-mbv3-640": lambda: dbnet(640),
    "dbnet-mbv3-960": lambda: dbnet(960),
    "crnn-48x320": lambda: crnn(),
    "cls-mbv3s-48x192": lambda: mobilenetv3_small(48, 192, 2, 0.35),
    "mbv3s-224": lambda: mobilenetv3_small(),
    "mobilenetv2-224": lambda: mobilenetv2(),
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
