"""Small ONNX models for the TFLite backend tests, built in code (onnx.helper), seeded weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(arr.astype(np.float32), name)


def _save(graph: onnx.GraphProto, path: Path, opset: int = 13) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def conv_net(path: Path, seed: int = 0) -> Path:
    """1x3x32x32 -> Conv/Relu/Conv/Relu/GlobalAveragePool/Flatten/Gemm -> 1x10 (a 3-channel 4-D input:
    the case where onnx2tf would download sample images)."""
    rng = np.random.default_rng(seed)
    inits = [
        _init("w1", rng.normal(0, 0.3, (8, 3, 3, 3))),
        _init("b1", rng.normal(0, 0.1, (8,))),
        _init("w2", rng.normal(0, 0.2, (16, 8, 3, 3))),
        _init("b2", rng.normal(0, 0.1, (16,))),
        _init("wf", rng.normal(0, 0.3, (10, 16))),
        _init("bf", rng.normal(0, 0.1, (10,))),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_net",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    return _save(graph, path)


def odd_names(path: Path, seed: int = 1) -> Path:
    """Tensor names with '@', ':' and '/' (TensorFlow rejects them); two outputs, one NCHW feature map."""
    rng = np.random.default_rng(seed)
    inits = [_init("conv@w:0", rng.normal(0, 0.3, (4, 3, 3, 3))), _init("conv@b:0", rng.normal(0, 0.1, (4,)))]
    nodes = [
        helper.make_node("Conv", ["in@put:0", "conv@w:0", "conv@b:0"], ["/conv/out:0"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["/conv/out:0"], ["feat@map:0"]),
        helper.make_node("ReduceMean", ["feat@map:0"], ["pooled:0"], axes=[2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "odd_names",
        [helper.make_tensor_value_info("in@put:0", TensorProto.FLOAT, [1, 3, 16, 16])],
        [
            helper.make_tensor_value_info("pooled:0", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("feat@map:0", TensorProto.FLOAT, [1, 4, 16, 16]),
        ],
        inits,
    )
    return _save(graph, path)


def opset11_constants(path: Path, seed: int = 2) -> Path:
    """Opset 11, weights in Constant nodes (old exporters): MatMul + Add + Relu on a 2-D input."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.3, (16, 8)).astype(np.float32)
    b = rng.normal(0, 0.1, (8,)).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(w, "W")),
        helper.make_node("Constant", [], ["B"], value=numpy_helper.from_array(b, "B")),
        helper.make_node("MatMul", ["x", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "B"], ["pre"]),
        helper.make_node("Relu", ["pre"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "opset11",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
    )
    return _save(graph, path, opset=11)


def two_inputs(path: Path, seed: int = 3) -> Path:
    """An image (1x3x16x16) and a vector (1x4): conv features pooled, concatenated with the vector."""
    rng = np.random.default_rng(seed)
    inits = [
        _init("w", rng.normal(0, 0.3, (4, 3, 3, 3))),
        _init("wf", rng.normal(0, 0.3, (8, 5))),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Concat", ["f", "vec"], ["cat"], axis=1),
        helper.make_node("MatMul", ["cat", "wf"], ["out"]),
    ]
    inits[1] = _init("wf", rng.normal(0, 0.3, (8, 8)))
    graph = helper.make_graph(
        nodes,
        "two_inputs",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16]),
            helper.make_tensor_value_info("vec", TensorProto.FLOAT, [1, 4]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8])],
        inits,
    )
    return _save(graph, path)


def dynamic_dims(path: Path, seed: int = 4) -> Path:
    """Batch and spatial dims symbolic ('N', 'H', 'W'): needs --input-shape before TFLite."""
    rng = np.random.default_rng(seed)
    inits = [_init("w", rng.normal(0, 0.3, (4, 3, 3, 3)))]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "dynamic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "H", "W"])],
        inits,
    )
    return _save(graph, path)


def transformer_block(path: Path, seed: int = 5, tokens: int = 8, dim: int = 16) -> Path:
    """One pre-norm self-attention block on 1 x tokens x dim: LayerNormalization (opset 17), Q/K/V
    MatMul, scaled Softmax attention, residual, MLP with Gelu-free Relu."""
    rng = np.random.default_rng(seed)

    def w(name: str, *shape: int) -> onnx.TensorProto:
        return _init(name, rng.normal(0, 0.2, shape))

    inits = [
        _init("ln_g", np.ones(dim)),
        _init("ln_b", np.zeros(dim)),
        w("wq", dim, dim),
        w("wk", dim, dim),
        w("wv", dim, dim),
        w("wo", dim, dim),
        w("w1", dim, 2 * dim),
        w("w2", 2 * dim, dim),
        _init("scale", np.array(1.0 / np.sqrt(dim))),
        numpy_helper.from_array(np.array([0, 2, 1], dtype=np.int64), "perm_unused"),
    ]
    inits = inits[:-1]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "ln_g", "ln_b"], ["ln"], axis=-1, epsilon=1e-5),
        helper.make_node("MatMul", ["ln", "wq"], ["q"]),
        helper.make_node("MatMul", ["ln", "wk"], ["k"]),
        helper.make_node("MatMul", ["ln", "wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["qk"]),
        helper.make_node("Mul", ["qk", "scale"], ["qks"]),
        helper.make_node("Softmax", ["qks"], ["attn"], axis=-1),
        helper.make_node("MatMul", ["attn", "v"], ["ctx"]),
        helper.make_node("MatMul", ["ctx", "wo"], ["proj"]),
        helper.make_node("Add", ["x", "proj"], ["res1"]),
        helper.make_node("MatMul", ["res1", "w1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h1r"]),
        helper.make_node("MatMul", ["h1r", "w2"], ["h2"]),
        helper.make_node("Add", ["res1", "h2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "transformer_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, tokens, dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, tokens, dim])],
        inits,
    )
    return _save(graph, path, opset=17)


def calib_for(
    model_path: Path, out: Path, samples: int = 16, seed: int = 0, shapes: dict[str, list[int]] | None = None
) -> Path:
    """An .npz calibration set for every input of `model_path` (uniform [0, 1), float32)."""
    model = onnx.load(str(model_path))
    rng = np.random.default_rng(seed)
    inits = {i.name for i in model.graph.initializer}
    arrays = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        if shapes and vi.name in shapes:
            dims = shapes[vi.name]
        arrays[vi.name] = rng.random((samples, *dims), dtype=np.float32)
    np.savez(out, **arrays)
    return out
