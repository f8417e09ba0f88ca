"""The demo detector (Ultralytics-style head) under INT8: collapsed class scores never pass a gate, and
the default `--int8` finds a head-aware recipe that keeps the detections (issue 15)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit import api
from edgekit.backends import get_backend
from edgekit.backends.base import ExportOptions
from edgekit.int8 import search_record
from edgekit.int8.head import find_heads, head_nodes
from edgekit.resources import DETECTOR_INPUT_SHAPE, detector_paths
from edgekit.targets import get as get_target

STEP = 640 / 255  # one uint8 step of a per-tensor scale spanning 0..640 pixels


def _head_model() -> onnx.ModelProto:
    """Conv -> (box branch: x 600, score branch: Sigmoid) -> Concat(axis=1): a YOLOv8-shaped tail."""
    w = numpy_helper.from_array(np.ones((6, 3, 1, 1), np.float32) * 0.1, "w")
    split = numpy_helper.from_array(np.array([2, 4], np.int64), "split")
    scale = numpy_helper.from_array(np.array(600.0, np.float32), "scale")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Reshape", ["c", "shape"], ["r"], name="flat"),
        helper.make_node("Split", ["r", "split"], ["box_raw", "cls_raw"], axis=1, name="split"),
        helper.make_node("Mul", ["box_raw", "scale"], ["box"], name="box_mul"),
        helper.make_node("Sigmoid", ["cls_raw"], ["cls"], name="cls_sigmoid"),
        helper.make_node("Concat", ["box", "cls"], ["output0"], axis=1, name="head_concat"),
    ]
    shape = numpy_helper.from_array(np.array([1, 6, -1], np.int64), "shape")
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 16])],
        [w, split, scale, shape],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_find_heads_names_the_mixed_scale_concat_and_its_decode() -> None:
    model = _head_model()
    ranges = {"box": (0.0, 590.0), "cls": (0.01, 0.99), "output0": (0.0, 590.0)}
    heads = find_heads(model, ranges)
    assert [h.concat for h in heads] == ["head_concat"]
    assert head_nodes(heads, "split") == ["head_concat"]
    assert set(head_nodes(heads, "float-tail")) == {"head_concat", "box_mul", "cls_sigmoid", "split", "flat"}
    assert head_nodes(heads, "int8") == []
    # branches of one scale are not a mixed-scale head
    assert find_heads(model, {"box": (0.0, 0.9), "cls": (0.01, 0.99)}) == []


def _export(target: str, tmp: Path, search: bool, model: Path | None = None, precision: str = "int8"):
    paths = detector_paths()
    return api.export(
        api.ExportRequest(
            model=model or paths["model"],
            target=target,
            precision=precision,
            calib=paths["calib"],
            input_shapes=DETECTOR_INPUT_SHAPE,
            out_dir=tmp,
            options=ExportOptions(search=search),
        )
    )


def _verify(artifact: Path, reference: Path | None = None):
    return api.verify(
        api.VerifyRequest(str(artifact), str(detector_paths()["val"]), reference=reference, write=False)
    )


def test_all_int8_default_recipe_collapses_scores_and_fails_the_gate(tmp_path: Path) -> None:
    outcome = _export("x86-cpu", tmp_path, search=False)
    report = _verify(outcome.path)
    assert not report.passed
    assert report.task is not None and report.task["metrics"]["f1"] < 0.5
    assert any("F1" in f for f in report.failures), report.failures
    # the whole-tensor cosine alone would have passed it: the box pixels dominate the tensor
    assert min(o.cosine for o in report.outputs) > 0.99


@pytest.mark.slow  # a recipe search at 640x640: about a minute on 2 cores
def test_default_int8_keeps_the_detections_with_a_head_aware_recipe(tmp_path: Path) -> None:
    outcome = _export("x86-cpu", tmp_path, search=True)
    record = search_record(outcome.manifest)
    assert record is not None
    assert record["recipe"]["head"] in ("split", "float-tail")
    assert record["default_score"]["passed"] is False
    head = record["head"]
    assert head["mixed_scale"][0]["output"] == "output0"
    assert head["kept_in_float"] and "p50_ms_chosen" in head["cost"]
    report = _verify(outcome.path)
    assert report.passed, report.failures
    assert report.task["metrics"]["f1"] >= 0.95


def collapsed_model(path: Path) -> Path:
    """The demo detector whose output goes through a per-tensor 8-bit grid of 0..640 in float
    (Div, Round, Mul): what an all-INT8 output does to it, in ops every backend runs in FP32."""
    model = onnx.load(str(detector_paths()["model"]))
    graph = model.graph
    out = graph.output[0].name
    for node in graph.node:
        node.output[:] = [f"{out}_raw" if n == out else n for n in node.output]
    graph.initializer.append(numpy_helper.from_array(np.array(STEP, np.float32), "collapse_step"))
    graph.node.extend(
        [
            helper.make_node("Div", [f"{out}_raw", "collapse_step"], ["collapse_steps"], name="collapse_div"),
            helper.make_node("Round", ["collapse_steps"], ["collapse_round"], name="collapse_round"),
            helper.make_node("Mul", ["collapse_round", "collapse_step"], [out], name="collapse_mul"),
        ]
    )
    onnx.save(model, str(path))
    return path


COLLAPSE_TARGETS = ["x86-cpu", "arm64-cpu", "intel-cpu", "jetson-orin-nano", "android-arm64"]


@pytest.mark.slow
@pytest.mark.parametrize("target", COLLAPSE_TARGETS)
def test_collapsed_class_scores_fail_the_gate_on_every_backend(tmp_path: Path, target: str) -> None:
    profile = get_target(target)
    if not get_backend(profile.backend).available():
        pytest.skip(f"{profile.backend} not installed")
    broken = collapsed_model(tmp_path / "collapsed.onnx")
    outcome = _export(target, tmp_path / "out", search=False, model=broken, precision="fp32")
    report = _verify(outcome.path, reference=detector_paths()["model"])
    assert not report.passed
    assert report.task is not None and report.task["kind"] == "detect"
    assert report.task["metrics"]["f1"] < 0.5
    assert any("F1" in f for f in report.failures), report.failures


@pytest.mark.slow  # onnx2tf at 640x640 (cached after the first run) and two ai-edge-quantizer builds
def test_android_int8_keeps_the_detections_with_the_head_decode_in_float(tmp_path: Path) -> None:
    """android-arm64 (int8 I/O): the mixed-scale output alone in float ("split") keeps the scores but
    decodes the boxes on int8 grids (up to 20 px off: NMS keeps duplicates, F1 0.78); the default
    --int8 takes "float-tail" (the head's decode in float through ai-edge-quantizer's selective recipe),
    inputs int8, without --allow-float-ops, and says so in the manifest and the warnings."""
    pytest.importorskip("ai_edge_quantizer")
    if not get_backend("tflite").available():
        pytest.skip("tflite not installed")
    outcome = _export("android-arm64", tmp_path, search=True)
    details = outcome.manifest["details"]
    record = details["selective_quantization"]
    assert details["variant"] == "aeq_int8", record["summary"]
    assert record["passed"] is True, record["summary"]
    head = record["head"]
    assert head["recipe"] == "float-tail"
    tried = {t["recipe"]: t for t in head["tried"]}
    assert tried["split"]["passed"] is False and tried["float-tail"]["passed"] is True
    kept = {op["tflite_op"] for op in head["kept_in_float"]}
    assert {"CONCATENATION", "LOGISTIC", "SUB"} <= kept, kept
    assert not {"CONV_2D", "DEPTHWISE_CONV_2D"} & kept  # the weighted layers stay int8
    assert record["reverted"] == []  # no fallback op: nothing needed --allow-float-ops
    assert "float-tail" in details["quantization"]
    assert any("float-tail" in w for w in outcome.manifest["warnings"])
    assert [i["dtype"] for i in outcome.manifest["inputs"]] == ["int8"]
    assert [o["dtype"] for o in outcome.manifest["outputs"]] == ["float32"]
    report = _verify(outcome.path)
    assert report.passed, report.failures
    assert report.task["metrics"]["f1"] >= 0.95
