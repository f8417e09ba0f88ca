"""Ingest: graph utilities, the content cache, the prepare pipeline, and real models of every IR version.

Real models: onnx's own test data (PyTorch/Caffe2 exports at IR 3, opset 6-9, with the outputs their
framework computed), the classic zoo architectures (tests/zoo.py: IR 3, opset 9, initializers listed
as graph inputs) and variants of an old-exporter CNN written at every IR version from 3 up.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import zoo
from models import Builder, conv_net, sample_set
from onnx import TensorProto, helper, numpy_helper, version_converter

from edgekit import cache as content_cache
from edgekit import graph, ingest, opset
from edgekit.errors import BadInput

ONNX_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
INT8_MIN_COSINE = "0.97"  # random-weight models; the mechanism is under test, not the quantizer


def _session(model: str | Path | bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _run(model: str | Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(v) for v in _session(model).run(None, feeds)]


def old_exporter(model: onnx.ModelProto, ir_version: int = 3) -> onnx.ModelProto:
    """The model as pre-2019 exporters wrote it: every initializer also a graph input, IR 3."""
    listed = {vi.name for vi in model.graph.input}
    model.graph.input.extend(
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
        for t in model.graph.initializer
        if t.name not in listed
    )
    model.ir_version = ir_version
    return model


# ---- graph utilities -------------------------------------------------------------------------------
def test_io_info_leaves_out_initializers_listed_as_inputs() -> None:
    b = Builder()
    y = b.conv("x", 3, 4)
    model = old_exporter(
        b.model(
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["n", 4, 8, 8])],
            opset=9,
        )
    )
    inputs, outputs = graph.io_info(model)
    assert [(i.name, i.shape) for i in inputs] == [("x", ("n", 3, 8, 8))]
    assert graph.dynamic_dims(inputs) == {"x": ["n", 3, 8, 8]}
    assert [o.name for o in outputs] == [y]
    assert graph.drop_initializer_inputs(model) == 2 and len(model.graph.input) == 1


def test_toposort_orders_nodes_and_refuses_cycles() -> None:
    nodes = [
        helper.make_node("Relu", ["a"], ["y"]),
        helper.make_node("Neg", ["x"], ["a"]),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    assert graph.toposort(g) and [n.op_type for n in g.node] == ["Neg", "Relu"]
    g.node[0].input[0] = "y"  # Neg(y) -> a -> Relu(a) -> y: a cycle
    before = [n.op_type for n in g.node]
    assert not graph.toposort(g) and [n.op_type for n in g.node] == before


def test_constants_move_into_initializers_and_names_map_back() -> None:
    b = Builder(constants=True)
    w = b.weight((4, 3, 3, 3), name="conv@0/w:0")
    b.op("Conv", ["in:0", w], name="out/y:0", pads=[1, 1, 1, 1])
    model = b.model(
        [helper.make_tensor_value_info("in:0", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out/y:0", TensorProto.FLOAT, [1, 4, 8, 8])],
    )
    assert graph.constants_to_initializers(model) == 1
    assert [i.name for i in model.graph.initializer] == ["conv@0/w:0"]
    mapping = graph.sanitize_names(model, "[A-Za-z0-9_]")
    assert set(mapping.values()) == {"in:0", "conv@0/w:0", "out/y:0"}
    names = graph.tensor_names(model.graph)
    assert all(n.replace("_", "").isalnum() for n in names)
    onnx.checker.check_model(model)


def test_parse_input_shapes_splits_at_the_last_colon() -> None:
    assert ingest.parse_input_shapes(["input:0:1,3,8x8"]) == {"input:0": [1, 3, 8, 8]}
    for bad in ("noshape", "x:1,a", "x:0,3"):
        with pytest.raises(BadInput, match="--input-shape"):
            ingest.parse_input_shapes([bad])


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


# ---- the classic zoo (IR 3, opset 9, initializers as inputs) ------------------------------------------------
def test_ir3_zoo_model_exports_and_runs_as_the_original(tmp_path: Path, run_cli) -> None:
    """The defect: every export of an IR 3 model failed ('in initializer but not in graph input')."""
    source = zoo.zoo_model("squeezenet", tmp_path / "squeezenet.onnx")
    code, _, stderr = run_cli("export", source, "--target", "x86-cpu", "--fp32", "-o", tmp_path / "out")
    assert code == 0, stderr
    artifact = tmp_path / "out" / "squeezenet.x86-cpu.fp32"
    manifest = json.loads((artifact / "manifest.json").read_text())
    steps = manifest["source"]["prepare_steps"]
    assert any(s.startswith("removed") and "initializers listed as graph inputs" in s for s in steps)
    assert any(s.startswith("IR version 3 -> ") for s in steps)
    exported = onnx.load(str(artifact / manifest["entry"]))
    onnx.checker.check_model(exported, full_check=True)
    assert exported.ir_version >= 4
    assert not {i.name for i in exported.graph.initializer} & {i.name for i in exported.graph.input}
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    np.testing.assert_allclose(
        _run(artifact / manifest["entry"], {"data_0": x})[0],
        _run(source, {"data_0": x})[0],
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.ZOO)
def test_every_zoo_architecture_prepares_to_the_same_outputs(name: str, tmp_path: Path) -> None:
    source = zoo.zoo_model(name, tmp_path / f"{name}.onnx")
    prepared = ingest.prepare(source)
    assert prepared.opset >= opset.LEGACY_OPSET and not prepared.warnings
    (spec,) = prepared.inputs
    x = np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 1 for d in spec.shape])
    feed = {spec.name: x.astype(np.float32)}
    for got, want in zip(_run(prepared.path, feed), _run(source, feed), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ---- onnx's PyTorch exports: IR 3, opset 6-9, with the outputs PyTorch computed ---------------------------------
def _onnx_cases() -> list[Path]:
    dirs = [ONNX_DATA / "pytorch-converted", ONNX_DATA / "pytorch-operator"]
    return sorted(p.parent for d in dirs if d.is_dir() for p in d.glob("*/model.onnx"))


def _load_case(case: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    data = case / "test_data_set_0"
    inputs = [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in sorted(data.glob("input_*.pb"))]
    outputs = [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in sorted(data.glob("output_*.pb"))]
    return inputs, outputs


@pytest.mark.skipif(not _onnx_cases(), reason="this onnx wheel ships no backend test data")
@pytest.mark.parametrize("case", _onnx_cases(), ids=lambda p: p.name)
def test_old_pytorch_export_prepares_to_its_expected_outputs(case: Path) -> None:
    source = onnx.load(str(case / "model.onnx"))
    assert source.ir_version < 4 or source.ir_version == 7  # the set's own versions
    inputs, expected = _load_case(case)
    prepared = ingest.prepare(case / "model.onnx")
    assert prepared.opset >= min(opset.LEGACY_OPSET, graph.onnx_opset(source)) and not prepared.warnings
    model = onnx.load(str(prepared.path))
    onnx.checker.check_model(model, full_check=True)
    feeds = {spec.name: value for spec, value in zip(prepared.inputs, inputs, strict=True)}
    for got, want in zip(_run(prepared.path, feeds), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4, equal_nan=True)


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
    np.testing.assert_allclose(_run(prepared.path, feeds)[0], want, rtol=1e-5, atol=1e-5)


# ---- an old-exporter CNN written at every IR version, exported fp32 and int8 -------------------------------------
def _max_opset_of_ir(ir_version: int) -> int:
    return max(row[2] for row in helper.VERSION_TABLE if row[1] == ir_version)


def _legacy_cnn() -> onnx.ModelProto:
    """Conv-BN-ReLU, Upsample, MaxPool, depthwise conv, GAP, Gemm, Softmax at opset 7, IR 3."""
    b = Builder(seed=5)
    y = b.conv_bn_relu("data", 3, 8)
    b.nodes.append(helper.make_node("Upsample", [y], ["up"], scales=[1.0, 1.0, 2.0, 2.0], mode="nearest"))
    y = b.op("MaxPool", ["up"], kernel_shape=[2, 2], strides=[2, 2])
    y = b.conv_bn_relu(y, 8, 8, group=8)
    y = b.conv_bn_relu(y, 8, 16, k=1, stride=2)
    y = b.op("GlobalAveragePool", [y])
    y = b.op("Flatten", [y], axis=1)
    y = b.gemm(y, 16, 10)
    b.op("Softmax", [y], name="prob", axis=1)
    model = b.model(
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 10])],
        opset=7,
    )
    return old_exporter(model)


def ir_variant(ir_version: int) -> onnx.ModelProto:
    """The CNN as an exporter of that IR version writes it: the newest opset of that IR (by onnx's
    version converter), initializers still listed as inputs up to IR 6 (PyTorch's old default)."""
    model = _legacy_cnn()
    if ir_version > 3:
        model = version_converter.convert_version(model, _max_opset_of_ir(ir_version))
        if ir_version > 6:
            graph.drop_initializer_inputs(model)
        model.ir_version = ir_version
    onnx.checker.check_model(model, full_check=True)
    return model


IR_VERSIONS = [3, 4, 5, 6, 7, 8, 9, 10]
# onnxruntime for every IR version; OpenVINO (NNCF for int8) for the oldest and newest by default,
# the versions between in the slow selection
IR_CASES = [(ir, "x86-cpu") for ir in IR_VERSIONS] + [
    pytest.param(ir, "intel-cpu", marks=[pytest.mark.slow] if ir not in (3, IR_VERSIONS[-1]) else [])
    for ir in IR_VERSIONS
]


@pytest.mark.parametrize(("ir_version", "target"), IR_CASES)
def test_every_ir_version_exports_fp32_and_int8(
    ir_version: int, target: str, tmp_path: Path, run_cli
) -> None:
    model = ir_variant(ir_version)
    source = tmp_path / f"cnn_ir{ir_version}.onnx"
    onnx.save(model, str(source))
    _session(source)  # onnxruntime loads the variant as it is: it is the FP32 reference
    calib, val = tmp_path / "calib.npz", tmp_path / "val.npz"
    np.savez(calib, **sample_set(model, 8, seed=1, keep_batch=False))
    np.savez(val, **sample_set(model, 6, seed=2, keep_batch=False))
    for precision in ("fp32", "int8"):
        args = ["--calib", calib, "--min-cosine", INT8_MIN_COSINE] if precision == "int8" else []
        out = tmp_path / "out"
        code, _, stderr = run_cli(
            "export", source, "--target", target, f"--{precision}", "--val", val, "-o", out, *args
        )
        assert code == 0, f"{target} {precision}: {stderr}"
        artifact = out / f"{source.stem}.{target}.{precision}"
        manifest = json.loads((artifact / "manifest.json").read_text())
        assert manifest["fidelity"]["passed"], manifest["fidelity"]
        assert manifest["source"]["opset"] == graph.onnx_opset(model)
        assert manifest["source"]["prepared_opset"] >= opset.LEGACY_OPSET
        if target == "x86-cpu":
            exported = onnx.load(str(artifact / manifest["entry"]))
            assert exported.ir_version >= max(4, opset.required_ir_version(exported))
            weights_as_inputs = {i.name for i in exported.graph.initializer} & {
                i.name for i in exported.graph.input
            }
            assert not weights_as_inputs


# ---- opset down-conversion failures --------------------------------------------------------------------------
def _layer_norm_model() -> onnx.ModelProto:
    b = Builder()
    b.layer_norm("x", 8)
    b.nodes[-1].output[0] = "y"
    return b.model(
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])],
        opset=17,
    )


def _int8_relu14_model() -> onnx.ModelProto:
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.INT8, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.INT8, [1, 4])],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])


@pytest.mark.parametrize(
    ("build", "op", "needle"),
    [
        (
            _layer_norm_model,
            "LayerNormalization",
            "LayerNormalization (opset 17) has no equivalent in opset 13",
        ),
        (_int8_relu14_model, "Relu", "cannot lower Relu from opset 14 to 13"),
    ],
)
def test_opset_lowering_failure_names_the_op_and_the_remedy(
    build, op: str, needle: str, tmp_path: Path
) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(build(), str(path))
    with pytest.raises(BadInput) as info:
        ingest.prepare(path, ingest.PrepareOptions(max_opset=13))
    message = str(info.value)
    assert needle in message and "accepts opset <= 13" in message and "opset_version=13" in message
    assert "\n" not in message and ".h:" not in message and "Assertion" not in message


def _outputs_equal(a: onnx.ModelProto, b: onnx.ModelProto, feed: dict[str, np.ndarray]) -> None:
    for got, want in zip(_session(b).run(None, feed), _session(a).run(None, feed), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


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
    _outputs_equal(model, lowered, {"input": x})


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
    _outputs_equal(model, converted, {"x": x})


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


# ---- the content cache --------------------------------------------------------------------------------------
def test_prepared_model_comes_from_the_cache_the_second_time(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(content_cache.CACHE_ENV, str(tmp_path / "cache"))
    path = tmp_path / "m.onnx"
    onnx.save(_legacy_cnn(), str(path))
    first = ingest.prepare(path)
    assert first.path.is_relative_to(tmp_path / "cache" / "prepared")

    def fail(*_args, **_kwargs):
        raise AssertionError("prepared again despite a cache entry")

    monkeypatch.setattr(ingest, "_prepare", fail)
    second = ingest.prepare(path)
    assert second.path == first.path and second.steps == first.steps
    (first.path.parent / content_cache.META).write_text("{not json")
    monkeypatch.undo()
    monkeypatch.setenv(content_cache.CACHE_ENV, str(tmp_path / "cache"))
    third = ingest.prepare(path)  # a broken entry is prepared again and replaced
    assert third.path == first.path and json.loads((third.path.parent / content_cache.META).read_text())


def test_cache_store_is_all_or_nothing(tmp_path: Path) -> None:
    store = content_cache.ContentCache("things", root=tmp_path / "things")
    with pytest.raises(RuntimeError):
        with store.store("k1", {"v": 1}) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("converter died")
    assert store.lookup("k1") is None and list((tmp_path / "things").iterdir()) == []
    (tmp_path / "things" / ".tmp-k2-stale").mkdir()  # left by a killed process
    with store.store("k2", {"v": 2}) as tmp:
        (tmp / "data.bin").write_bytes(b"y")
    entry, meta = store.lookup("k2") or (None, None)
    assert meta == {"v": 2} and entry is not None and (entry / "data.bin").read_bytes() == b"y"
    with store.store("k2", {"v": 3}):
        pass  # a newer entry replaces the older one whole
    assert store.lookup("k2")[1] == {"v": 3} and not (store.path("k2") / "data.bin").exists()
    assert [e.name for e, _ in store.entries("k")] == ["k2"]
    assert content_cache.digest({"b": 1, "a": 2}) == content_cache.digest({"a": 2, "b": 1})
