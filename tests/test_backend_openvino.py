"""OpenVINO backend: real OpenVINO + NNCF on small models built in code, checked against onnxruntime
on the FP32 source model."""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgekit import ingest, targets
from edgekit.backends import get_backend
from edgekit.backends.base import ExportJob, ExportOptions, ExportResult, HostRunner
from edgekit.calib import CalibrationSet
from edgekit.errors import BadInput, MissingDependency
from edgekit.resources import demo_paths
from tests import models

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from edgekit.backends.ov import (  # noqa: E402 - after the skips
    OpenVinoBackend,
    choose_quantization,
    compile_ir,
    reverted_layers,
)


def _conv_net(dynamic: bool = False) -> onnx.ModelProto:
    """The shared conv net: symbolic batch and spatial dims, or odd input/output/head-node names."""
    if dynamic:
        return models.conv_net(batch="N", spatial="S")[0]
    # a zero head bias: OpenVINO drops it, so the Gemm stays one op named like its output
    return models.conv_net(inp="image@0:x", out="logits:0", head_node="head/fc:0", head_bias_std=0.0)[0]


def _transformer() -> onnx.ModelProto:
    """One head with biases and a first-token classifier, output `logits`."""
    return models.transformer_block(heads=1, mlp=2, bias=True, classes=10, out="logits", seed=1)[0]


def _two_inputs() -> onnx.ModelProto:
    """Float inputs `a` and `b` [1, 16], output `out`."""
    return models.two_vector_net((16, 16), 32, classes=4, seed=3)[0]


MIN_COSINE = {"fp32": 0.99, "fp16": 0.99, "int8": 0.95}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ingest.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "prepared-cache"))


def _sample_shape(info: onnx.ValueInfoProto, fixed: dict[str, list[int]]) -> list[int]:
    if info.name in fixed:
        return fixed[info.name][1:]
    dims = [d.dim_value or 24 for d in info.type.tensor_type.shape.dim]
    return dims[1:]  # samples without the batch axis: the reader adds it


def _calib(
    model: onnx.ModelProto, path: Path, count: int = 12, fixed: dict | None = None, labels=None
) -> Path:
    rng = np.random.default_rng(7)
    arrays = {
        vi.name: rng.standard_normal([count, *_sample_shape(vi, fixed or {})]).astype(np.float32)
        for vi in model.graph.input
    }
    if labels is not None:
        arrays["labels"] = labels
    np.savez(path, **arrays)
    return path


def _export(
    tmp_path: Path,
    model: onnx.ModelProto,
    precision: str,
    *,
    input_shapes: dict[str, list[int]] | None = None,
    options: ExportOptions | None = None,
    target: str = "intel-cpu",
    calib_path: Path | None = None,
    val_path: Path | None = None,
) -> tuple[ExportResult, HostRunner, Path, CalibrationSet]:
    backend = OpenVinoBackend()
    src = models.save(model, tmp_path / "model.onnx")
    prepared = ingest.prepare(
        src,
        ingest.PrepareOptions(
            input_shapes=input_shapes or {},
            static_shapes=backend.needs_static_shapes,
            min_opset=backend.min_opset,
            name_pattern=backend.name_pattern,
        ),
    )
    calib_set = CalibrationSet.load(calib_path or _calib(model, tmp_path / "calib.npz", fixed=input_shapes))
    calib = calib_set.validate(prepared.inputs)
    val = None
    if val_path is not None:
        val = CalibrationSet.load(val_path).validate(prepared.inputs, "validation set")
    out = tmp_path / f"artifact-{precision}"
    job = ExportJob(prepared, targets.get(target), precision, out, calib, options or ExportOptions(), val)
    result = backend.export(job)
    manifest: dict[str, Any] = {
        "entry": result.entry,
        "inputs": [s.to_json() for s in result.inputs],
        "outputs": [s.to_json() for s in result.outputs],
        "precision": precision,
        "target": target,
        "backend": "openvino",
        "details": result.details,
    }
    return result, backend.open_runner(out, manifest), src, calib


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def _check_against_onnxruntime(runner: HostRunner, src: Path, calib: CalibrationSet, precision: str) -> None:
    session = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    for index, feed in enumerate(calib.feeds()):
        if index == 4:
            break
        want = dict(zip(names, session.run(None, feed), strict=True))
        got = runner.infer(feed)
        assert set(got) == set(want)
        for name, ref in want.items():
            assert got[name].shape == ref.shape
            assert _cosine(got[name], ref) > MIN_COSINE[precision], (name, precision)


@pytest.mark.parametrize(
    "precision", ["fp32", "fp16", pytest.param("int8", marks=pytest.mark.slow)]
)  # int8: NNCF
def test_conv_net_with_odd_names_all_precisions(tmp_path: Path, precision: str) -> None:
    model = _conv_net()
    result, runner, src, calib = _export(tmp_path, model, precision)
    with runner:
        _check_against_onnxruntime(runner, src, calib, precision)
    out = tmp_path / f"artifact-{precision}"
    assert result.entry == "model.xml"
    assert sorted(p.name for p in out.iterdir()) == ["model.bin", "model.xml"]
    assert [s.source_name for s in result.inputs] == ["image@0:x"]
    assert [s.name for s in result.outputs] == ["logits:0"]
    assert result.inputs[0].layout == "NCHW"
    assert set(result.toolchain) == {"openvino", "nncf"}
    execution = result.details["execution"]
    assert execution["device"] == "CPU" and execution["layer_precisions"]
    if precision == "fp32":
        assert execution["inference_precision"] == "f32"
        assert set(execution["layer_precisions"]) == {"f32"}
    weight_types = {
        layer.find("data").get("element_type")
        for layer in ET.parse(out / "model.xml").getroot().iter("layer")
        if layer.get("type") == "Const"
    }
    if precision == "fp16":
        assert "f16" in weight_types
    if precision == "fp32":
        assert "f16" not in weight_types
    if precision == "int8":
        quant = result.details["quantization"]
        assert quant["fake_quantize_nodes"] > 0
        assert quant["preset"] == "performance" and quant["model_type"] == "default"
        assert quant["subset_size"] == len(calib)
        assert quant["fast_bias_correction"] is True
        assert "f16" not in weight_types


@pytest.mark.slow  # NNCF
def test_transformer_block_int8_uses_transformer_model_type(tmp_path: Path) -> None:
    result, runner, src, calib = _export(tmp_path, _transformer(), "int8")
    quant = result.details["quantization"]
    assert quant["model_type"] == "transformer" and quant["preset"] == "mixed"
    with runner:
        _check_against_onnxruntime(runner, src, calib, "int8")


def test_transformer_block_fp16(tmp_path: Path) -> None:
    _, runner, src, calib = _export(tmp_path, _transformer(), "fp16")
    with runner:
        _check_against_onnxruntime(runner, src, calib, "fp16")


@pytest.mark.parametrize("precision", ["fp32", pytest.param("int8", marks=pytest.mark.slow)])  # int8: NNCF
def test_opset11_constant_node_weights(tmp_path: Path, precision: str) -> None:
    model = models.constant_weights_net(opset=11)[0]
    assert any(n.op_type == "Constant" for n in model.graph.node)
    _, runner, src, calib = _export(tmp_path, model, precision)
    with runner:
        _check_against_onnxruntime(runner, src, calib, precision)


@pytest.mark.slow  # NNCF
def test_dynamic_dims_kept_and_int8_calibrates(tmp_path: Path) -> None:
    model = _conv_net(dynamic=True)
    # samples of 24x24 through a model whose batch and spatial dims are symbolic
    result, runner, src, calib = _export(tmp_path, model, "int8")
    assert "input" in result.details["dynamic_inputs"]
    assert any("dynamic dims" in w for w in result.warnings)
    with runner:
        _check_against_onnxruntime(runner, src, calib, "int8")


def test_dynamic_dims_fixed_by_input_shape(tmp_path: Path) -> None:
    model = _conv_net(dynamic=True)
    shapes = {"input": [1, 3, 32, 32]}
    result, runner, src, calib = _export(tmp_path, model, "fp32", input_shapes=shapes)
    assert "dynamic_inputs" not in result.details
    assert result.inputs[0].shape == [1, 3, 32, 32]
    import openvino as ov

    ir = ov.Core().read_model(str(tmp_path / "artifact-fp32" / "model.xml"))
    assert ir.inputs[0].get_partial_shape().is_static
    with runner:
        _check_against_onnxruntime(runner, src, calib, "fp32")


@pytest.mark.parametrize("precision", ["fp16", pytest.param("int8", marks=pytest.mark.slow)])  # int8: NNCF
def test_two_inputs(tmp_path: Path, precision: str) -> None:
    result, runner, src, calib = _export(tmp_path, _two_inputs(), precision)
    assert [s.name for s in result.inputs] == ["a", "b"]
    with runner:
        with pytest.raises(BadInput, match="missing input"):
            runner.infer({"a": np.zeros((1, 16), np.float32)})
        _check_against_onnxruntime(runner, src, calib, precision)


@pytest.mark.slow  # NNCF
def test_ignore_patterns_keep_layers_in_float(tmp_path: Path) -> None:
    # ONNX node names (with '/' and ':'), followed to the IR ops they became
    options = ExportOptions(ignore=["head/fc*"])  # a glob; regular expressions work too
    result, runner, src, calib = _export(tmp_path, _conv_net(), "int8", options=options)
    scope = result.details["quantization"]["ignored_scope"]
    assert scope["patterns"] == ["head/fc*"] and scope["nodes"] == ["logits:0"]
    import openvino as ov

    ir = ov.Core().read_model(str(tmp_path / "artifact-int8" / "model.xml"))
    head = next(op for op in ir.get_ordered_ops() if op.get_friendly_name() == "logits:0")
    feeding = {port.get_source_output().get_node().get_type_name() for port in head.inputs()}
    assert "FakeQuantize" not in feeding
    with runner:
        _check_against_onnxruntime(runner, src, calib, "int8")


def test_ignore_pattern_matching_nothing_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="--ignore"):
        _export(tmp_path, _conv_net(), "int8", options=ExportOptions(ignore=["no_such_layer"]))
    with pytest.raises(BadInput, match="matches no node"):
        _export(tmp_path, _conv_net(), "int8", options=ExportOptions(ignore=["(["]))


@pytest.mark.slow  # NNCF
def test_accuracy_controlled_int8_records_reverted_layers(tmp_path: Path) -> None:
    demo = demo_paths()
    model = onnx.load(str(demo["model"]))
    count = 60
    with np.load(demo["val"]) as data:
        inputs, labels = data["input"][:count], data["labels"][:count]
    val_path = tmp_path / "val.npz"
    np.savez(val_path, input=inputs, labels=labels)
    # a calibration set at 1/20 of the real scale clips the activations: accuracy collapses and
    # NNCF has to put layers back into float to meet the 1-point budget
    calib_path = tmp_path / "calib.npz"
    np.savez(calib_path, input=(inputs[:16] * 0.05).astype(np.float32))
    options = ExportOptions(max_accuracy_drop=1.0)
    result, runner, src, _ = _export(
        tmp_path, model, "int8", options=options, calib_path=calib_path, val_path=val_path
    )
    quant = result.details["quantization"]
    assert quant["tool"] == "nncf.quantize_with_accuracy_control"
    control = quant["accuracy_control"]
    assert control["max_drop_points"] == 1.0 and control["validation_samples"] == count
    assert control["reverted_layers"], control
    session = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    with runner:
        got = np.array([runner.infer({"input": x[None]})["logits"].argmax() for x in inputs])
    want = np.array([session.run(None, {"input": x[None]})[0].argmax() for x in inputs])
    # NNCF met the budget at f32; the host runner's default precision may flip one borderline sample
    assert (got == labels).sum() >= (want == labels).sum() - 1


@pytest.mark.slow  # NNCF
def test_accuracy_control_without_labels_warns(tmp_path: Path) -> None:
    model = _two_inputs()
    val_path = _calib(model, tmp_path / "val.npz")
    result, *_ = _export(
        tmp_path, model, "int8", options=ExportOptions(max_accuracy_drop=1.0), val_path=val_path
    )
    # no top-1 accuracy control; the INT8 search aims NNCF at the gate's agreement with FP32 instead
    search = result.details["quantization"]["int8_search"]
    assert result.details["quantization"]["tool"] == search["tool"]
    assert search["score"]["accuracy_drop"] is None
    assert any("labelled --val" in w for w in result.warnings)


def test_reverted_layers_parses_nncf_report() -> None:
    messages = [
        "Reverted 1 operations to the floating-point precision: \n\tconv_3",
        "2 out of 9 were reverted back to the floating-point precision:\n\tconv_3\n\thead/fc:0",
    ]
    assert reverted_layers(messages) == ["conv_3", "head/fc:0"]
    assert reverted_layers(["Algorithm completed: achieved required accuracy drop"]) == []


def test_choose_quantization() -> None:
    assert choose_quantization({"Conv", "Relu", "Gemm"}, {})[:2] == ("performance", None)
    assert choose_quantization({"Conv", "Sigmoid", "Mul"}, {})[:2] == ("mixed", None)
    transformer = {"MatMul", "Softmax", "LayerNormalization", "Add"}
    assert choose_quantization(transformer, {})[:2] == ("mixed", "transformer")
    assert choose_quantization(transformer, {"preset": "performance", "model_type": "none"})[:2] == (
        "performance",
        None,
    )
    with pytest.raises(BadInput, match="preset"):
        choose_quantization(set(), {"preset": "fast"})


def test_int8_without_calibration_set_is_bad_input(tmp_path: Path) -> None:
    backend = OpenVinoBackend()
    src = models.save(_two_inputs(), tmp_path / "m.onnx")
    prepared = ingest.prepare(src, ingest.PrepareOptions(min_opset=backend.min_opset))
    job = ExportJob(prepared, targets.get("intel-cpu"), "int8", tmp_path / "out", None, ExportOptions())
    with pytest.raises(BadInput, match="--calib"):
        backend.export(job)


def test_npu_target_has_no_fp32(tmp_path: Path) -> None:
    npu = targets.get("intel-npu")
    assert npu.device == "NPU" and "fp32" not in npu.precisions
    with pytest.raises(BadInput, match="intel-npu"):
        _export(tmp_path, _two_inputs(), "fp32", target="intel-npu")


def test_targets_and_registry() -> None:
    for name, device in (("intel-cpu", "CPU"), ("intel-gpu", "GPU"), ("intel-npu", "NPU")):
        profile = targets.get(name)
        assert profile.backend == "openvino" and profile.device == device
    backend = get_backend("openvino")
    assert isinstance(backend, OpenVinoBackend) and backend.available()


def test_compile_ir_threads_and_hint(tmp_path: Path) -> None:
    _export(tmp_path, _two_inputs(), "fp16")
    xml = tmp_path / "artifact-fp16" / "model.xml"
    compiled = compile_ir(xml, "CPU", "fp16", threads=1, inference_precision="f32")
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"


def test_missing_openvino_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def fake_find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name.split(".")[0] in ("openvino", "nncf") else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    backend = OpenVinoBackend()
    assert not backend.available()
    with pytest.raises(MissingDependency) as info:
        backend.require()
    assert info.value.extra == "openvino" and info.value.exit_code == 3
    assert "edgekit[openvino]" in str(info.value)
    src = models.save(_two_inputs(), tmp_path / "m.onnx")
    prepared = ingest.prepare(src, ingest.PrepareOptions(min_opset=backend.min_opset))
    job = ExportJob(prepared, targets.get("intel-cpu"), "fp32", tmp_path / "out", None, ExportOptions())
    with pytest.raises(MissingDependency, match="openvino"):
        backend.export(job)
    with pytest.raises(MissingDependency, match="openvino"):
        backend.open_runner(tmp_path, {"entry": "model.xml", "inputs": [], "outputs": []})
