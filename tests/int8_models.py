"""Models built to be hostile to INT8 in one known place, for the INT8 search's tests and benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from models import Builder
from onnx import TensorProto, helper

HOSTILE_NODE = "block2/conv:hostile"  # the layer that reads the outlier channel (odd name on purpose)
OUTLIER_GAIN = 1000.0


def outlier_channel_net(size: int = 16, classes: int = 10, gain: float = OUTLIER_GAIN) -> onnx.ModelProto:
    """conv1 -> ReLU -> depthwise conv2 -> ReLU -> conv3 -> ReLU -> GAP -> Gemm, where conv1's channel 0
    is `gain` times larger and conv2 (depthwise, so per-channel weight scales absorb it) scales it
    back: the FP32 function is an ordinary network's, but conv2's input tensor spans a range in which
    the other 15 channels fall into a few INT8 steps, while clipping that range (entropy, percentile)
    saturates channel 0, which conv3 weighs heavily. No range estimator fixes both; keeping conv2 in
    float does."""
    b = Builder(seed=3)
    x = "image"
    w1 = (b.rng.standard_normal((16, 3, 3, 3)) * np.sqrt(2.0 / 27)).astype(np.float32)
    b1 = (0.1 * b.rng.standard_normal(16)).astype(np.float32)
    w1[0] *= gain
    b1[0] = abs(b1[0]) * gain
    y = b.op(
        "Conv",
        [x, b.tensor(w1, "conv1.weight"), b.tensor(b1, "conv1.bias")],
        name="c1",
        node="block1/conv",
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
    )
    y = b.op("Relu", [y], name="r1", node="block1/relu")
    w2 = (b.rng.standard_normal((16, 1, 3, 3)) * np.sqrt(2.0 / 9)).astype(np.float32)
    w2[0] /= gain
    b2 = (0.1 * b.rng.standard_normal(16)).astype(np.float32)
    y = b.op(
        "Conv",
        [y, b.tensor(w2, "conv2.weight"), b.tensor(b2, "conv2.bias")],
        name="c2",
        node=HOSTILE_NODE,
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
        group=16,
    )
    y = b.op("Relu", [y], name="r2", node="block2/relu")
    w3 = (b.rng.standard_normal((16, 16, 1, 1)) * np.sqrt(2.0 / 16)).astype(np.float32)
    w3[:, 0] *= 4.0  # channel 0 matters downstream: clipping it costs fidelity
    y = b.op("Conv", [y, b.tensor(w3, "conv3.weight")], name="c3", node="block3/conv", kernel_shape=[1, 1])
    y = b.op("Relu", [y], name="r3", node="block3/relu")
    y = b.op("GlobalAveragePool", [y], name="gap", node="head/gap")
    y = b.op("Flatten", [y], name="flat", node="head/flatten", axis=1)
    b.gemm(y, 16, classes, name="logits", node="head/fc")
    return b.model(
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])],
    )


def write_outlier_model(tmp: Path, calib_count: int = 64, val_count: int = 64) -> tuple[Path, Path, Path]:
    """The outlier model with calibration and (unlabelled) validation sets of uniform images."""
    model = outlier_channel_net()
    path = tmp / "outlier.onnx"
    onnx.save(model, str(path))
    rng = np.random.default_rng(5)
    calib, val = tmp / "outlier_calib.npz", tmp / "outlier_val.npz"
    np.savez(calib, image=rng.uniform(0, 1, (calib_count, 3, 16, 16)).astype(np.float32))
    np.savez(val, image=rng.uniform(0, 1, (val_count, 3, 16, 16)).astype(np.float32))
    return path, calib, val
