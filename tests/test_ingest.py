"""The prepare pipeline (edgekit.ingest) on real models of every IR version: onnx's own test data
(PyTorch exports at IR 3, opset 6-9, with the outputs PyTorch computed), the classic zoo architectures
(tests/zoo.py: IR 3, opset 9, initializers listed as graph inputs), and an old-exporter CNN written at
every IR version from 3 up, exported fp32 and int8; opset-lowering errors; the prepared-model cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import zoo
from models import Builder, sample_set
from onnx import TensorProto, helper, version_converter
from onnx_cases import load_case, old_exporter, pytorch_cases, run, session

from edgekit import cache as content_cache
from edgekit import graph, ingest, opset
from edgekit.errors import BadInput

INT8_MIN_COSINE = "0.97"  # random-weight models; the mechanism is under test, not the quantizer


def test_parse_input_shapes_splits_at_the_last_colon() -> None:
    assert ingest.parse_input_shapes(["input:0:1,3,8x8"]) == {"input:0": [1, 3, 8, 8]}
    for bad in ("noshape", "x:1,a", "x:0,3"):
        with pytest.raises(BadInput, match="--input-shape"):
            ingest.parse_input_shapes([bad])


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
        run(artifact / manifest["entry"], {"data_0": x})[0],
        run(source, {"data_0": x})[0],
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
    for got, want in zip(run(prepared.path, feed), run(source, feed), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ---- onnx's PyTorch exports: IR 3, opset 6-9, with the outputs PyTorch computed ---------------------------------
@pytest.mark.skipif(not pytorch_cases(), reason="this onnx wheel ships no backend test data")
@pytest.mark.parametrize("case", pytorch_cases(), ids=lambda p: p.name)
def test_old_pytorch_export_prepares_to_its_expected_outputs(case: Path) -> None:
    source = onnx.load(str(case / "model.onnx"))
    assert source.ir_version < 4 or source.ir_version == 7  # the set's own versions
    inputs, expected = load_case(case)
    prepared = ingest.prepare(case / "model.onnx")
    assert prepared.opset >= min(opset.LEGACY_OPSET, graph.onnx_opset(source)) and not prepared.warnings
    model = onnx.load(str(prepared.path))
    onnx.checker.check_model(model, full_check=True)
    feeds = {spec.name: value for spec, value in zip(prepared.inputs, inputs, strict=True)}
    for got, want in zip(run(prepared.path, feeds), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4, equal_nan=True)


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
    session(source)  # onnxruntime loads the variant as it is: it is the FP32 reference
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
