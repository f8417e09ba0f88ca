"""Opset and IR-version changes (edgekit.opset, edgekit.opset_repairs): the IR a model needs, legacy op forms
upgraded with their meaning kept, lowering to a target's opset, Softmax-like ops across opset 13."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from models import conv_net
from onnx import TensorProto, helper, numpy_helper
from onnx_cases import old_exporter, outputs_equal, run

from edgekit import graph, ingest, opset


# ---- IR version ---------------------------------------------------------------------------------------
def test_ir_version_is_raised_to_what_the_model_needs_never_lowered() -> None:
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
            [numpy_helper.from_array(np.zeros(2, np.float32), "unused")],  # an initializer not an input
        ),
        opset_imports=[helper.make_opsetid("", 9)],
    )
    model.ir_version = 3
    assert opset.required_ir_version(model) == 4
    assert opset.settle_ir_version(model) == "IR version 3 -> 4" and model.ir_version == 4
    model.opset_import[0].version = 13
    assert opset.required_ir_version(model) == 7
    model.ir_version = 10
    assert opset.settle_ir_version(model) is None and model.ir_version == 10


# ---- legacy op forms the version converter must carry (or gets wrong) --------------------------------------------
C = 4
X = np.random.default_rng(3).standard_normal((1, C, 6, 6)).astype(np.float32)
BN = [np.random.default_rng(i).uniform(0.5, 1.5, C).astype(np.float32) for i in range(4)]
SLOPE = np.linspace(0.1, 0.4, C).astype(np.float32)
CHANNELS = np.arange(C, dtype=np.float32)


def _bn_ref(x: np.ndarray) -> np.ndarray:
    s, b, m, v = (a[:, None, None] for a in BN)
    return (x - m) / np.sqrt(v + 1e-5) * s + b


def _upsample_ref(x: np.ndarray, scales: tuple[float, float], mode: str) -> np.ndarray:
    """Upsample-7/9 as onnxruntime ran it: asymmetric coordinates (x_in = x_out / scale)."""
    out_h, out_w = int(x.shape[2] * scales[0]), int(x.shape[3] * scales[1])
    ys, xs = np.arange(out_h) / scales[0], np.arange(out_w) / scales[1]
    if mode == "nearest":
        return x[:, :, np.floor(ys).astype(int)][:, :, :, np.floor(xs).astype(int)]
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, x.shape[2] - 1), np.minimum(x0 + 1, x.shape[3] - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = x[:, :, y0][:, :, :, x0] * (1 - wx) + x[:, :, y0][:, :, :, x1] * wx
    bottom = x[:, :, y1][:, :, :, x0] * (1 - wx) + x[:, :, y1][:, :, :, x1] * wx
    return top * (1 - wy) + bottom * wy


def _legacy(name: str) -> tuple[onnx.ModelProto, dict[str, np.ndarray], np.ndarray]:
    """One legacy op form: (IR 3 model with initializers as inputs, feeds, numpy reference)."""
    inits: list[onnx.TensorProto] = []
    extra_inputs: list[onnx.ValueInfoProto] = []
    feeds = {"x": X}
    out_shape: list[int] = [1, C, 6, 6]
    if name in ("bn7_spatial", "bn6_is_test"):
        inits = [numpy_helper.from_array(a, n) for a, n in zip(BN, "sbmv", strict=True)]
        attrs = {"spatial": 1, "epsilon": 1e-5} | ({"is_test": 1} if name == "bn6_is_test" else {})
        nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], **attrs)]
        op, want = (7 if name == "bn7_spatial" else 6), _bn_ref(X)
    elif name.startswith("upsample"):
        _, op_text, mode, scale_text = name.split("_")
        op = int(op_text)
        scales = (1.5, 2.5) if scale_text == "frac" else (2.0, 3.0)
        full = [1.0, 1.0, *scales]
        if op == 7:
            nodes = [helper.make_node("Upsample", ["x"], ["y"], scales=full, mode=mode)]
        else:
            inits = [numpy_helper.from_array(np.array(full, np.float32), "scales")]
            op_type = "Upsample" if op == 9 else "Resize"
            nodes = [helper.make_node(op_type, ["x", "scales"], ["y"], mode=mode)]
        want = _upsample_ref(X, scales, mode)
        out_shape = list(want.shape)
    elif name == "reshape1":
        nodes = [helper.make_node("Reshape", ["x"], ["y"], shape=[1, -1])]
        op, want, out_shape = 4, X.reshape(1, -1), [1, C * 36]
    elif name == "add6_axis_initializer":
        inits = [numpy_helper.from_array(CHANNELS, "bias")]
        nodes = [helper.make_node("Add", ["x", "bias"], ["y"], broadcast=1, axis=1)]
        op, want = 6, X + CHANNELS[:, None, None]
    elif name == "mul6_axis_input":
        extra_inputs = [helper.make_tensor_value_info("gain", TensorProto.FLOAT, [C])]
        feeds["gain"] = CHANNELS + 1
        nodes = [helper.make_node("Mul", ["x", "gain"], ["y"], broadcast=1, axis=1)]
        op, want = 6, X * (CHANNELS + 1)[:, None, None]
    elif name == "prelu6_per_channel":
        inits = [numpy_helper.from_array(SLOPE, "slope")]
        nodes = [helper.make_node("PRelu", ["x", "slope"], ["y"])]
        op, want = 6, np.where(X > 0, X, X * SLOPE[:, None, None])
    elif name == "pad2":
        nodes = [helper.make_node("Pad", ["x"], ["y"], pads=[0, 0, 1, 1, 0, 0, 1, 1], value=0.0)]
        op, want, out_shape = 2, np.pad(X, [(0, 0), (0, 0), (1, 1), (1, 1)]), [1, C, 8, 8]
    elif name == "slice1":
        nodes = [helper.make_node("Slice", ["x"], ["y"], axes=[2], starts=[1], ends=[4])]
        op, want, out_shape = 1, X[:, :, 1:4], [1, C, 3, 6]
    elif name == "dropout6_is_test":
        nodes = [helper.make_node("Dropout", ["x"], ["y"], is_test=1, ratio=0.5)]
        op, want = 6, X
    else:
        raise KeyError(name)
    g = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, 6, 6]), *extra_inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = old_exporter(helper.make_model(g, opset_imports=[helper.make_opsetid("", op)]))
    onnx.checker.check_model(model)
    return model, feeds, want


LEGACY_FORMS = [
    "bn7_spatial",
    "bn6_is_test",
    "upsample_7_nearest_int",
    "upsample_7_nearest_frac",
    "upsample_7_linear_frac",
    "upsample_9_linear_frac",
    "upsample_10_linear_frac",
    "upsample_10_nearest_frac",
    "reshape1",
    "add6_axis_initializer",
    "mul6_axis_input",
    "prelu6_per_channel",
    "pad2",
    "slice1",
    "dropout6_is_test",
]


@pytest.mark.parametrize("name", LEGACY_FORMS)
def test_legacy_op_forms_keep_their_meaning(name: str, tmp_path: Path) -> None:
    model, feeds, want = _legacy(name)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    prepared = ingest.prepare(path)
    assert prepared.opset == opset.LEGACY_OPSET and not prepared.warnings, prepared.warnings
    np.testing.assert_allclose(run(prepared.path, feeds)[0], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("source_opset", [17, 18, 21])
def test_modern_cnn_lowers_to_a_jetson_nano_opset(source_opset: int) -> None:
    """Relu-14, BatchNormalization-15 ... have no down adapter in onnx's converter: held and checked."""
    model, _ = conv_net(opset=source_opset)
    model.ir_version = max(model.ir_version, opset.required_ir_version(model))
    lowered = opset.convert_opset(model, 13)
    assert graph.onnx_opset(lowered) == 13 and lowered.ir_version == 7  # opset 13's IR, for old parsers
    assert all(n.domain == "" for n in lowered.graph.node)
    assert {e.domain for e in lowered.opset_import} == {""}
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    outputs_equal(model, lowered, {"input": x})


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize(("source_opset", "target_opset"), [(13, 11), (11, 13)])
def test_axis_ops_keep_their_result_across_opset_13(
    op: str, axis: int, source_opset: int, target_opset: int
) -> None:
    """From opset 13 these ops work on one axis, before it on a flattened 2-D view; onnx's converter
    only relabels them when lowering (and Hardmax when raising)."""
    g = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], axis=axis)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", source_opset)])
    model.ir_version = 7
    converted = opset.convert_opset(model, target_opset)
    assert graph.onnx_opset(converted) == target_opset
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    outputs_equal(model, converted, {"x": x})


def test_lowering_refuses_types_the_older_op_does_not_take() -> None:
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.INT8, [4])],
        [helper.make_tensor_value_info("y", TensorProto.INT8, [4])],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])  # Relu-14 added int8
    with pytest.raises(opset.OpsetConversionError, match="Relu"):
        opset.convert_opset(model, 13)
