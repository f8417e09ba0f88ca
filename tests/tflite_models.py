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
