"""Small ONNX models built in code for the TensorRT backend tests (to be merged into tests/models.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_net(path: Path, *, batch: int | str = 1, size: int = 16, classes: int = 10, seed: int = 0) -> Path:
    """Conv-ReLU-Conv-ReLU-GlobalAveragePool-Flatten-Gemm, NCHW float32, opset 13.

    `batch` may be a string (a dynamic dim such as "N"). Tensor names include '/' and ':' the way
    PyTorch and TF exporters write them, so name handling is exercised too.
    """
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    b1 = (rng.standard_normal(8) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32)
    b2 = (rng.standard_normal(16) * 0.1).astype(np.float32)
    wf = (rng.standard_normal((classes, 16)) * 0.3).astype(np.float32)
    bf = (rng.standard_normal(classes) * 0.1).astype(np.float32)
    inits = [
        numpy_helper.from_array(w1, "conv1.weight"),
        numpy_helper.from_array(b1, "conv1.bias"),
        numpy_helper.from_array(w2, "conv2.weight"),
        numpy_helper.from_array(b2, "conv2.bias"),
        numpy_helper.from_array(wf, "fc.weight"),
        numpy_helper.from_array(bf, "fc.bias"),
    ]
    nodes = [
        helper.make_node(
            "Conv", ["input:0", "conv1.weight", "conv1.bias"], ["/conv1/Conv_output_0"], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["/conv1/Conv_output_0"], ["/relu1/Relu_output_0"]),
        helper.make_node(
            "Conv",
            ["/relu1/Relu_output_0", "conv2.weight", "conv2.bias"],
            ["/conv2/Conv_output_0"],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["/conv2/Conv_output_0"], ["/relu2/Relu_output_0"]),
        helper.make_node("GlobalAveragePool", ["/relu2/Relu_output_0"], ["/pool/output_0"]),
        helper.make_node("Flatten", ["/pool/output_0"], ["/flatten/output_0"], axis=1),
        helper.make_node("Gemm", ["/flatten/output_0", "fc.weight", "fc.bias"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "trt_conv_net",
        [helper.make_tensor_value_info("input:0", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="edgekit-tests"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def calib_npz(path: Path, *, samples: int = 16, size: int = 16, seed: int = 1, name: str = "input:0") -> Path:
    """Per-sample arrays (N, 3, size, size); the reader adds the batch axis."""
    rng = np.random.default_rng(seed)
    data = rng.uniform(-1.0, 1.0, size=(samples, 3, size, size)).astype(np.float32)
    np.savez(path, **{name: data})
    return path
