"""The one TFLite-specific test model; the others come from tests/models.py."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from tests.models import Builder


def odd_names(seed: int = 1) -> onnx.ModelProto:
    """TFLite-specific: two outputs, one an NCHW feature map (onnx2tf makes it NHWC and the runner must
    undo that), with '@', ':' and '/' in the names (TensorFlow rejects them)."""
    b = Builder(seed)
    y = b.conv("in@put:0", 3, 4, scale=0.3, name="/conv/out:0")
    y = b.op("Sigmoid", [y], name="feat@map:0")
    b.op("ReduceMean", [y], name="pooled:0", axes=[2, 3], keepdims=0)
    return b.model(
        [helper.make_tensor_value_info("in@put:0", TensorProto.FLOAT, [1, 3, 16, 16])],
        [
            helper.make_tensor_value_info("pooled:0", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("feat@map:0", TensorProto.FLOAT, [1, 4, 16, 16]),
        ],
        ir_version=8,
    )


def channels_last_classifier(size: int = 16, seed: int = 2) -> onnx.ModelProto:
    """A classifier that takes NHWC images ([1, H, W, 3], as TF/Caffe exports do) and transposes them
    to NCHW itself: its TFLite input must stay [1, H, W, 3]."""
    b = Builder(seed)
    x = b.op("Transpose", ["image"], name="to_nchw", perm=[0, 3, 1, 2])
    y = b.op("Relu", [b.conv(x, 3, 8, scale=0.3)])
    y = b.op("GlobalAveragePool", [y])
    y = b.op("Flatten", [y])
    b.gemm(y, 8, 10, name="logits")
    return b.model(
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, size, size, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        ir_version=8,
    )


def token_encoder(
    vocab: int = 64, seq: int = 16, dim: int = 64, seed: int = 3, outlier: float = 0.0
) -> onnx.ModelProto:
    """A BERT-shaped toy: int64 input_ids / attention_mask, an embedding Gather, a masked two-layer MLP
    (MatMuls whose weights block-wise INT4 can take: 64 = 2 blocks of 32), mean-pooled embedding.
    `outlier`: fc1's weights for input feature 0 are that many times larger (and the embeddings' feature
    0 as much smaller, so the function is the same): every INT4 block holding them loses its other weights."""
    import numpy as np

    b = Builder(seed)
    emb = (b.rng.standard_normal((vocab, dim)) * 0.5).astype(np.float32)
    w1 = (b.rng.standard_normal((dim, dim * 2)) * dim**-0.5).astype(np.float32)
    if outlier:
        emb[:, 0] /= outlier
        w1[0, :] *= outlier
    table = b.tensor(emb, name="embeddings")
    h = b.op("Gather", [table, "input_ids"], name="embedded")
    mask = b.op("Cast", ["attention_mask"], name="mask_f", to=TensorProto.FLOAT)
    mask = b.op("Unsqueeze", [mask, b.tensor(np.array([2], np.int64), initializer=True)], name="mask3")
    h = b.op("Mul", [h, mask], name="masked")
    h = b.op("MatMul", [h, b.tensor(w1)], name="fc1", node="fc1_matmul")
    h = b.op("Tanh", [b.op("Add", [h, b.tensor(np.zeros(dim * 2, np.float32))])], name="act1")
    h = b.op("Add", [b.linear(h, dim * 2, dim, name="fc2"), "masked"], name="residual")
    b.op("ReduceMean", [h], name="pooled", axes=[1], keepdims=0)
    ints = [
        helper.make_tensor_value_info(n, TensorProto.INT64, [1, seq]) for n in ("input_ids", "attention_mask")
    ]
    return b.model(ints, [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, dim])], ir_version=8)


def mixed_scale_head(size: int = 16, classes: int = 3, seed: int = 4) -> onnx.ModelProto:
    """A YOLOv8-shaped toy head: one output [1, 4 + C, A] = box coordinates in pixels (0..size*8)
    concatenated with sigmoid class scores (0..1). One int8 scale for both loses every score."""
    import numpy as np

    b = Builder(seed)
    y = b.op("Relu", [b.conv("images", 3, 8, scale=0.3)])
    boxes = b.conv(y, 8, 4, k=1, scale=0.3)
    boxes = b.op("Mul", [b.op("Sigmoid", [boxes]), b.tensor(np.array(size * 8.0, np.float32))], name="box_px")
    scores = b.op("Sigmoid", [b.conv(y, 8, classes, k=1, scale=0.3)], name="cls_prob")
    cat = b.op("Concat", [boxes, scores], name="head_cat", axis=1)
    b.op(
        "Reshape",
        [cat, b.tensor(np.array([1, 4 + classes, size * size], np.int64), initializer=True)],
        name="output0",
    )
    return b.model(
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + classes, size * size])],
        ir_version=8,
    )


def outlier_channel_net(size: int = 16, seed: int = 5) -> onnx.ModelProto:
    """One activation tensor with a channel 1000x the others (a Mul by a per-channel constant): one
    per-tensor int8 scale zeroes the other channels, which the next conv reads (it divides the big
    channel back down), so full INT8 fails any gate; keeping that Mul and the conv after it in float passes."""
    import numpy as np

    b = Builder(seed)
    y = b.op("Relu", [b.conv("images", 3, 8, scale=0.3)], name="feat")
    gain = np.ones((1, 8, 1, 1), np.float32)
    gain[0, 0] = 1000.0
    y = b.op("Mul", [y, b.tensor(gain)], name="outlier")
    weight = (b.rng.standard_normal((8, 8, 1, 1)) * 0.3).astype(np.float32)
    weight[:, 0] /= 1000.0
    y = b.op(
        "Conv", [y, b.tensor(weight), b.tensor(np.zeros(8, np.float32))], name="mix", kernel_shape=[1, 1]
    )
    y = b.op("Flatten", [b.op("GlobalAveragePool", [b.op("Relu", [y])])])
    b.gemm(y, 8, 10, name="logits")
    return b.model(
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        ir_version=8,
    )
