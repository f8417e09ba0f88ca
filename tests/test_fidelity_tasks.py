"""Task-level fidelity: what a model is for (infer_task), measured the way its users judge it, against the
FP32 model; gates a collapsed detector head cannot pass, maps judged by mask IoU, embeddings by their worst
sample, classifiers by accuracy, a user's own metric; bootstrap intervals; task-aware INT8 scoring."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import fidelity_models as fm
import numpy as np
import onnx
import pytest

from edgekit.errors import BadInput
from edgekit.fidelity import TASKS, FidelityReport, TaskSpec, compare, cosine, infer_task
from edgekit.fidelity import detection as det
from edgekit.fidelity.user import load_metric
from edgekit.int8.scoring import ScoringSet, sample_errors, score
from edgekit.targets import Gates

SAMPLES = 24


@pytest.fixture(scope="module")
def yolo() -> tuple[TaskSpec, dict[str, np.ndarray]]:
    model = fm.yolov8()
    return infer_task(model), fm.run(model, fm.images(SAMPLES, (3, 16, 16), "images"))


def _collapsed(reference: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The INT8 failure of issue 15: every class score exactly 0, boxes intact."""
    out = reference["output0"].copy()
    out[:, 4:] = 0.0
    return {"output0": out}


# ---- infer_task --------------------------------------------------------------------------------------------
def test_ultralytics_metadata_decides_the_task_and_the_slices() -> None:
    spec = infer_task(fm.yolov8())
    assert (spec.kind, spec.source, spec.outputs) == ("detect", "metadata", ("output0",))
    assert spec.params["layout"] == "v8" and spec.params["num_classes"] == 3
    assert spec.params["names"] == {0: "person", 1: "car", 2: "dog"} and spec.params["imgsz"] == [320, 320]
    assert spec.slices == {"output0": {"axis": 1, "ranges": [[0, 4, "boxes"], [4, 7, "classes"]]}}


def test_output_shapes_decide_without_metadata() -> None:
    assert infer_task(fm.yolov8(meta=False)).source == "output shapes"
    assert infer_task(fm.yolov8(meta=False)).params["layout"] == "v8"
    v5 = infer_task(fm.yolov5())
    assert (v5.kind, v5.params["layout"], v5.params["num_classes"]) == ("detect", "v5", 3)
    assert v5.slices["output"]["ranges"][1] == [4, 5, "objectness"]
    pair = infer_task(fm.boxes_scores())
    assert (pair.kind, pair.params["layout"], pair.outputs) == ("detect", "boxes_scores", ("boxes", "scores"))
    assert infer_task(fm.prob_map()).kind == "map"
    assert infer_task(fm.embedder()).kind == "embed"
    assert infer_task(fm.classifier()).kind == "classify"  # pooling then a linear head: logits
    assert infer_task(fm.token_model()).kind == "tokens"


def test_real_export_quirks_opset_9_to_17_dynamic_dims_odd_names() -> None:
    for opset in (11, 13, 17):
        spec = infer_task(fm.yolov8(opset=opset, batch="N", name="out/0:detections"))
        assert spec.kind == "detect" and spec.outputs == ("out/0:detections",), opset
        assert spec.slices["out/0:detections"]["ranges"][1] == [4, 7, "classes"]
    assert infer_task(fm.classifier()).outputs == ("logits",)  # opset 9, symbolic batch


@pytest.mark.filterwarnings("ignore")
def test_a_torch_export_with_symbolic_dims_is_read_by_metadata_or_task() -> None:
    """torch.onnx (Ultralytics' exporter) leaves the head's channel dim symbolic with dynamic axes: the
    metadata's names size it; a bare --task detect is sized from the outputs at compare time."""
    pytest.importorskip("torch")
    feeds = fm.images(6, (3, 32, 32), "images")
    for opset in (11, 17):
        model = fm.torch_yolov8(opset)
        assert infer_task(model).kind == "raw"  # nothing to go on: not guessed
        bare = infer_task(model, "detect")
        assert bare.params["layout"] == "v8" and not bare.params["num_classes"]
        reference = fm.run(model, feeds)
        report = compare(reference, _collapsed(reference), gates=Gates(), task=bare)
        assert report.task["metrics"]["reference_detections"] > 0
        assert "detection F1 0.00 < 0.90 (vs FP32, 6 samples)" in report.failures
        assert "output0 channels 4-6 (classes): cosine 0.00000 < 0.5 (6 samples)" in report.failures
        for key, value in {"task": "detect", "names": fm.NAMES, "imgsz": "[32, 32]"}.items():
            model.metadata_props.add(key=key, value=value)
        spec = infer_task(model)
        assert (spec.source, spec.params["num_classes"], spec.slices["output0"]["ranges"][1]) == (
            "metadata",
            3,
            [4, 7, "classes"],
        )
    static = infer_task(fm.torch_yolov8(13, dynamic=False))  # static dims: the shapes say it
    assert (static.kind, static.source, static.params["num_classes"]) == ("detect", "output shapes", 3)


def test_shapes_alone_are_conservative() -> None:
    """A CRNN's [N, T, C] softmax looks like [N, A, 5+C] but no Concat made it: not a detector; a
    transformer's hidden states stay raw; a dynamic conv's feature map too."""
    from tests import analysis_models

    assert infer_task(analysis_models.crnn()[0]).kind == "raw"
    assert infer_task(analysis_models.small_transformer()[0]).kind == "raw"
    assert infer_task(analysis_models.dbnet()[0]).kind == "map"
    # an encoder's hidden states and Tanh pooler are no logits; a decoder's are, KV cache beside them
    assert infer_task(fm.encoder()).kind == "raw"
    decoder = infer_task(fm.encoder(past=True))
    assert (decoder.kind, decoder.outputs) == ("tokens", ("logits",))


def test_class_maps_take_the_arg_max_and_sigmoid_maps_each_channel() -> None:
    from edgekit.fidelity import maps

    ref = np.zeros((2, 3, 4, 4))
    ref[:, 0, :2], ref[:, 1, 2:], ref[:, 2, :, :1] = 1.0, 1.0, 2.0
    act = ref.copy()
    act[:, 2] = 0.0  # class 2's pixels go to the other classes
    metrics, _ = maps.metrics(ref, act, {"threshold": None})
    assert metrics["threshold"] is None and 0.0 < metrics["mask_iou"] < 1.0
    inter, union = maps.mask_sums(ref, act, 0.5, multilabel=True)
    assert (
        inter.shape == (2, 3)
        and inter[:, 2].sum() == 0
        and maps.pooled_iou(inter, union) == pytest.approx(2 / 3)
    )


def test_slices_are_traced_through_transposes_and_size_one_reshapes() -> None:
    from onnx import TensorProto, helper, numpy_helper

    from edgekit.fidelity.tasks import trace_slices

    def model(nodes, a, b, out, inits=()):
        graph = helper.make_graph(
            nodes,
            "g",
            [
                helper.make_tensor_value_info("a", TensorProto.FLOAT, a),
                helper.make_tensor_value_info("b", TensorProto.FLOAT, b),
            ],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
            list(inits),
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])

    squeezed = model(
        [
            helper.make_node("Concat", ["a", "b"], ["c"], axis=2),
            helper.make_node("Squeeze", ["c", "ax"], ["y"]),
        ],
        [1, 1, 4, 50],
        [1, 1, 3, 50],
        [1, 7, 50],
        [numpy_helper.from_array(np.array([1], np.int64), "ax")],
    )
    assert trace_slices(squeezed)["y"] == {
        "axis": 1,
        "ranges": [[0, 4, "channels 0-3"], [4, 7, "channels 4-6"]],
    }
    transposed = model(
        [
            helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
            helper.make_node("Transpose", ["c"], ["y"], perm=[0, 2, 1]),
        ],
        [1, 4, 50],
        [1, 3, 50],
        [1, 50, 7],
    )
    assert trace_slices(transposed)["y"]["axis"] == 2
    batch = model([helper.make_node("Concat", ["a", "b"], ["y"], axis=0)], [1, 4], [1, 4], [2, 4])
    assert trace_slices(batch) == {}  # samples, not features


def test_the_callers_task_wins_and_a_wrong_one_is_bad_input() -> None:
    raw = infer_task(fm.yolov8(), "raw")
    assert (raw.kind, raw.source) == ("raw", "--task")
    # the raw task still knows the head's Concat: its slices come from tracing the graph
    assert raw.slices["output0"] == {"axis": 1, "ranges": [[0, 4, "channels 0-3"], [4, 7, "channels 4-6"]]}
    assert infer_task(fm.prob_map(), "segment").kind == "segment"
    with pytest.raises(
        BadInput, match=r"--task detect: no output has a detection layout.*logits \[None, 10\]"
    ):
        infer_task(fm.classifier(), "detect")
    with pytest.raises(BadInput, match="unknown task 'detct'.*Did you mean 'detect'") as info:
        infer_task(fm.yolov8(), "detct")
    assert "\n" not in str(info.value)


def test_taskspec_round_trips_through_json() -> None:
    for model in (fm.yolov8(), fm.yolov5(), fm.prob_map(), fm.token_model()):
        spec = infer_task(model)
        again = TaskSpec.from_json(json.loads(json.dumps(spec.to_json())))
        assert again == spec


# ---- detection ---------------------------------------------------------------------------------------------
def test_a_collapsed_score_head_fails_every_task_gate_and_the_raw_gate(yolo) -> None:
    spec, reference = yolo
    actual = _collapsed(reference)
    assert cosine(reference["output0"], actual["output0"]) > 0.998  # what the whole-tensor gate saw
    assert compare(reference, actual, gates=Gates()).passed  # ... and passed, without a task

    report = compare(reference, actual, gates=Gates(), task=spec)
    assert not report.passed
    assert f"detection F1 0.00 < 0.90 (vs FP32, {SAMPLES} samples)" in report.failures
    assert f"output0 channels 4-6 (classes): cosine 0.00000 < 0.5 ({SAMPLES} samples)" in report.failures
    assert report.task["metrics"]["matched"] == 0 and report.task["metrics"]["reference_detections"] > 0

    raw = compare(reference, actual, gates=Gates(), task=infer_task(fm.yolov8(), "raw"))
    assert raw.failures == [f"output0 channels 4-6: cosine 0.00000 < 0.99 ({SAMPLES} samples)"]
    worst = min(raw.slices, key=lambda s: s["cosine"])
    assert worst["range"] == [4, 7] and worst["cosine"] == 0.0

    # no task at all can pass it: the slice floor holds for every kind
    for kind in TASKS:
        judged = TaskSpec(kind, "--task", spec.outputs, spec.params, spec.slices)
        failed = compare(reference, actual, gates=Gates(), task=judged)
        assert not failed.passed, kind
        assert any("channels 4-6" in line for line in failed.failures), kind


def test_a_close_artifact_passes_with_an_interval(yolo) -> None:
    spec, reference = yolo
    noise = np.random.default_rng(2).normal(0, 0.002, reference["output0"].shape)
    report = compare(reference, {"output0": reference["output0"] + noise}, gates=Gates(), task=spec)
    assert report.passed, report.failures
    f1 = report.task["metrics"]["f1"]
    lo, hi = report.task["intervals"]["f1"]
    assert 0.9 <= lo <= f1 <= hi <= 1.0
    assert report.task["summary"] == f"F1 {f1:.2f} [{lo:.2f}, {hi:.2f}] on {SAMPLES} samples"
    assert not report.task["undecided"]
    again = compare(reference, {"output0": reference["output0"] + noise}, gates=Gates(), task=spec)
    assert again.task["intervals"] == report.task["intervals"]  # seeded: deterministic
    # a gate inside the interval: undecided (the verdict stands on the point value)
    unsure = compare(
        reference, {"output0": reference["output0"] + noise}, gates=Gates(min_f1=(lo + hi) / 2), task=spec
    )
    assert unsure.task["undecided"] and "undecided: the gate" in unsure.task["summary"]


def test_a_task_of_another_model_is_bad_input(yolo) -> None:
    spec, reference = yolo
    with pytest.raises(
        BadInput, match="task detect reads output 'output0', which the FP32 reference does not"
    ):
        compare({"y": reference["output0"]}, {"y": reference["output0"]}, task=spec)


def test_a_score_that_only_crosses_the_threshold_is_not_a_lost_detection() -> None:
    params = {"layout": "v8", "num_classes": 2, "conf": 0.25, "low_conf": 0.1, "iou": 0.45, "match_iou": 0.5}
    ref = np.zeros((1, 6, 64))
    ref[0, :4, :] = [[20.0], [20.0], [10.0], [10.0]]
    ref[0, :2, 1] = [200.0, 200.0]
    ref[0, 4, 0], ref[0, 5, 1] = 0.26, 0.9  # two detections, one borderline
    act = ref.copy()
    act[0, 4, 0] = 0.24  # below conf, above low_conf
    metrics, _ = det.metrics({"y": ref}, {"y": act}, ("y",), params)
    assert metrics["recall"] == 1.0 and metrics["precision"] == 1.0 and metrics["f1"] == 1.0
    act[0, 4, 0] = 0.05  # gone
    metrics, _ = det.metrics({"y": ref}, {"y": act}, ("y",), params)
    assert metrics["recall"] == 0.5 and metrics["matched"] == 1


def test_an_ultralytics_segment_head_is_judged_on_detections_and_instance_masks() -> None:
    model = fm.yolov8_seg()
    spec = infer_task(model)
    assert (spec.kind, spec.outputs, spec.params["layout"]) == ("segment", ("output0", "output1"), "v8")
    assert spec.slices["output0"]["ranges"][2] == [6, 10, "mask coefficients"]
    reference = fm.run(model, fm.images(12, (3, 16, 16), "images"))
    same = compare(reference, reference, gates=Gates(), task=spec)
    assert same.passed and same.task["metrics"]["mask_iou"] == 1.0 and same.task["metrics"]["f1"] == 1.0
    noisy = dict(
        reference, output1=reference["output1"] + np.random.default_rng(0).normal(0, 0.05, (12, 4, 16, 16))
    )
    assert compare(reference, noisy, gates=Gates(), task=spec).passed
    flipped = dict(reference, output1=-reference["output1"])  # every mask inverted, boxes intact
    failed = compare(reference, flipped, gates=Gates(), task=spec)
    assert failed.task["metrics"]["f1"] == 1.0
    assert "mask IoU 0.000 < 0.900 (outputs output0, output1, 12 samples)" in failed.failures


def test_v5_and_boxes_scores_layouts_decode_and_match() -> None:
    model = fm.yolov5()
    reference = fm.run(model, fm.images(8, (3, 16, 16), "images"))
    spec = infer_task(model)
    assert compare(reference, reference, gates=Gates(), task=spec).task["metrics"]["f1"] == 1.0
    metrics = compare(reference, reference, task=spec).task["metrics"]
    assert metrics["reference_detections"] > 0 and metrics["map50"] == pytest.approx(1.0)
    pair = fm.boxes_scores()
    rng = np.random.default_rng(0)
    feeds = []
    for _ in range(4):
        xy = rng.uniform(0, 300, (1, 100, 2))
        x = np.concatenate([xy, xy + 20, rng.normal(-1, 2, (1, 100, 3))], axis=2).astype(np.float32)
        feeds.append({"x": x})
    reference = fm.run(pair, feeds)
    collapsed = {"boxes": reference["boxes"], "scores": np.zeros_like(reference["scores"])}
    report = compare(reference, collapsed, gates=Gates(), task=infer_task(pair))
    assert report.task["metrics"]["reference_detections"] > 0 and not report.passed


def test_an_end2end_head_is_read_as_detections_without_a_second_nms() -> None:
    model = fm.end2end()
    spec = infer_task(model)
    assert (spec.kind, spec.params["layout"]) == ("detect", "end2end")
    rng = np.random.default_rng(0)
    feeds = []
    for _ in range(6):
        xy = rng.uniform(0, 300, (1, 100, 2))
        score = np.where(np.arange(100) < 10, 0.9, 0.01)[None, :, None]
        feeds.append(
            {
                "x": np.concatenate([xy, xy + 5, score, rng.integers(0, 2, (1, 100, 1))], axis=2).astype(
                    np.float32
                )
            }
        )
    reference = fm.run(model, feeds)
    same = compare(reference, reference, gates=Gates(), task=spec)
    assert same.passed and same.task["metrics"]["reference_detections"] == 60  # overlaps kept: no NMS
    collapsed = reference["detections"].copy()
    collapsed[:, :, 4] = 0.0
    failed = compare(reference, {"detections": collapsed}, gates=Gates(), task=spec)
    assert "detection F1 0.00 < 0.90 (vs FP32, 6 samples)" in failed.failures


def test_ground_truth_boxes_give_real_map(yolo) -> None:
    spec, reference = yolo
    found = det.detect(reference, spec.outputs, spec.params)
    rows = max(len(d.above(0.25)) for d in found)
    boxes = np.full((SAMPLES, rows, 5), -1.0)
    for i, d in enumerate(found):
        confident = d.above(0.25)
        boxes[i, : len(confident), 0] = confident.classes
        boxes[i, : len(confident), 1:] = confident.boxes
    report = compare(reference, _collapsed(reference), task=spec, boxes=boxes)
    assert report.task["metrics"]["map50_reference"] == pytest.approx(1.0)
    assert report.task["metrics"]["map50_artifact"] == 0.0
    with pytest.raises(BadInput, match="need a detection task"):
        compare(reference, reference, boxes=boxes)


def _detector_project(tmp_path, yolo, count: int = SAMPLES) -> tuple[Path, Path]:
    """The small YOLOv8-style detector and a validation set whose `boxes` are its confident FP32
    detections (so the FP32 model's real mAP@0.5 is 1.0); `count` boxes rows (a wrong count: BadInput)."""
    spec, reference = yolo
    model = tmp_path / "det.onnx"
    onnx.save(fm.yolov8(), str(model))
    found = det.detect(reference, spec.outputs, spec.params)
    rows = max(len(d.above(0.25)) for d in found)
    boxes = np.full((SAMPLES, rows, 5), -1.0, np.float32)
    for i, d in enumerate(found):
        confident = d.above(0.25)
        boxes[i, : len(confident), 0] = confident.classes
        boxes[i, : len(confident), 1:] = confident.boxes
    images = np.concatenate([f["images"] for f in fm.images(SAMPLES, (3, 16, 16), "images")])
    val = tmp_path / "val.npz"
    np.savez(val, images=images, boxes=boxes[:count])
    return model, val


def test_a_set_with_boxes_verifies_a_detector_and_records_real_map(run_cli, tmp_path: Path, yolo) -> None:
    model, val = _detector_project(tmp_path, yolo)
    code, out, err = run_cli("export", model, "-t", "x86-cpu", "--val", val, "-o", tmp_path / "o", "--json")
    assert code == 0, err
    exported = json.loads(out)
    manifest = exported["manifest"]
    metrics = manifest["fidelity"]["task"]["metrics"]
    assert metrics["map50_reference"] == pytest.approx(1.0) and metrics["map50_artifact"] == pytest.approx(
        1.0
    )
    assert manifest["validation"]["boxes"] is True and manifest["validation"]["samples"] == SAMPLES
    code, out, err = run_cli("verify", exported["artifact"], "--val", val, "--val-samples", "10", "--json")
    assert code == 0, err
    written = json.loads((Path(exported["artifact"]) / "manifest.json").read_text())
    assert written["validation"]["boxes"] is True and written["validation"]["samples"] == 10
    assert written["fidelity"]["task"]["metrics"]["map50_artifact"] == pytest.approx(1.0)
    # the hash covers the boxes: the same images with other ground truth are another set
    from edgekit.calib import CalibrationSet

    with np.load(val) as data:
        np.savez(tmp_path / "other.npz", images=data["images"], boxes=data["boxes"] + 1.0)
    assert CalibrationSet.load(val).sha256() != CalibrationSet.load(tmp_path / "other.npz").sha256()


def test_boxes_with_the_wrong_sample_count_are_one_bad_input_line(run_cli, tmp_path: Path, yolo) -> None:
    from helpers import assert_one_line

    model, val = _detector_project(tmp_path, yolo, count=SAMPLES - 1)
    code, _, err = run_cli("export", model, "-t", "x86-cpu", "--val", val, "-o", tmp_path / "o")
    assert_one_line(
        code, err, 2, "disagree on the number of samples", f"images={SAMPLES}", f"boxes={SAMPLES - 1}"
    )


# ---- maps, embeddings, classes, tokens ---------------------------------------------------------------------
def test_a_noisy_map_fails_cosine_but_passes_mask_iou() -> None:
    model = fm.prob_map()
    reference = fm.run(model, fm.images(SAMPLES, (1, 32, 32), "x"))
    noisy = {"maps": reference["maps"] + np.random.default_rng(1).normal(0, 0.12, reference["maps"].shape)}
    gates = Gates(min_cosine=0.99)
    assert not compare(reference, noisy, gates=gates).passed  # the raw gate refuses it
    assert not compare(reference, noisy, gates=gates, task=infer_task(model, "raw")).passed
    report = compare(reference, noisy, gates=gates, task=infer_task(model))
    assert report.outputs[0].cosine < 0.99
    assert report.passed, report.failures
    assert report.task["metrics"]["mask_iou"] >= 0.9 and report.task["metrics"]["threshold"] == 0.5
    flipped = {"maps": 1.0 - reference["maps"]}
    failed = compare(reference, flipped, gates=gates, task=infer_task(model))
    assert any(line.startswith("mask IoU") and f"{SAMPLES} samples" in line for line in failed.failures)


def test_embeddings_are_judged_on_their_worst_sample() -> None:
    model = fm.embedder()
    reference = fm.run(model, fm.images(SAMPLES, (3, 8, 8), "x"))
    spec = infer_task(model)
    rng = np.random.default_rng(0)
    one_bad = reference["embedding"].copy()
    one_bad[3] = rng.permutation(one_bad[3])  # one sample's embedding scrambled
    assert cosine(reference["embedding"], one_bad) > 0.9
    report = compare(reference, {"embedding": one_bad}, gates=Gates(min_cosine=0.9), task=spec)
    assert not report.passed
    assert report.failures[0].startswith("worst per-sample embedding cosine")
    assert report.task["metrics"]["mean_cosine"] > report.task["metrics"]["worst_cosine"]
    close = reference["embedding"] * (1 + rng.normal(0, 0.01, reference["embedding"].shape))
    good = compare(reference, {"embedding": close}, gates=Gates(), task=spec)
    assert good.passed and good.task["metrics"]["nn_agreement"] is not None


def test_a_classifier_is_judged_on_accuracy_not_cosine() -> None:
    model = fm.classifier()
    feeds = fm.images(SAMPLES, (3, 8, 8), "x")
    reference = fm.run(model, feeds)
    labels = reference["logits"].argmax(axis=1)
    spec = infer_task(model)
    # noise that leaves every arg-max: cosine well below 0.99, accuracy unchanged
    logits = reference["logits"]
    margin = np.sort(logits, axis=1)[:, -1:] - logits
    noisy = logits - 0.3 * margin * np.random.default_rng(0).uniform(0, 1, logits.shape)
    assert cosine(logits, noisy) < 0.99
    report = compare(reference, {"logits": noisy}, labels, Gates(), task=spec)
    assert report.passed, report.failures
    assert not compare(reference, {"logits": noisy}, labels, Gates()).passed  # the raw gate refuses it
    # without labels: top-1 agreement (97% by default)
    assert compare(reference, {"logits": noisy}, None, Gates(), task=spec).passed
    flipped = logits.copy()
    flipped[:4] = -flipped[:4]  # 4 of 24 samples change class
    failed = compare(reference, {"logits": flipped}, labels, Gates(max_accuracy_drop=3.0), task=spec)
    assert failed.failures[0].startswith("accuracy drop") and f"{SAMPLES} samples" in failed.failures[0]
    assert failed.task["metrics"]["top5_agreement"] <= 100.0


def test_tokens_are_judged_on_agreement_and_kl() -> None:
    model = fm.token_model()
    rng = np.random.default_rng(0)
    feeds = [{"input_ids": rng.integers(0, 128, (1, 8))} for _ in range(12)]
    reference = fm.run(model, feeds)
    spec = infer_task(model)
    same = compare(reference, reference, gates=Gates(max_kl=0.01), task=spec)
    assert same.passed and same.task["metrics"]["kl"] == pytest.approx(0.0, abs=1e-9)
    shuffled = {"logits": reference["logits"][:, :, ::-1].copy()}
    failed = compare(reference, shuffled, gates=Gates(max_kl=0.01), task=spec)
    assert any(line.startswith("top-1 agreement") for line in failed.failures)
    assert any(line.startswith("next-token KL") for line in failed.failures)


# ---- a user's metric ---------------------------------------------------------------------------------------
METRIC_SOURCE = '''
import numpy as np

def kept_scores(reference, actual, labels):
    """share of FP32's class-score mass the artifact keeps (higher is better)"""
    ref, act = reference["output0"][:, 4:], actual["output0"][:, 4:]
    return float(np.sum(np.minimum(ref, act)) / np.sum(ref))

def verdict(reference, actual, labels):
    return {"score": 0.5, "passed": False}

broken = 3
'''


@pytest.fixture()
def metric_module(tmp_path, monkeypatch):
    (tmp_path / "fid_user_metric.py").write_text(METRIC_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "fid_user_metric"
    sys.modules.pop("fid_user_metric", None)


def test_a_user_metric_drives_the_verdict(yolo, metric_module) -> None:
    spec, reference = yolo
    fn = load_metric(f"{metric_module}:kept_scores")
    gates = Gates(min_metric=0.9)
    good = compare(reference, reference, gates=gates, task=spec, metric=fn)
    assert good.passed and good.metric["value"] == pytest.approx(1.0)
    assert good.metric["name"] == "fid_user_metric:kept_scores" and good.metric["interval"] is not None
    half = reference["output0"].copy()
    half[:, 4:] *= 0.5  # detections survive at half score: the task would not say what the user says
    bad = compare(reference, {"output0": half}, gates=gates, task=spec, metric=fn)
    assert bad.failures == [f"metric fid_user_metric:kept_scores 0.5 < 0.9 ({SAMPLES} samples)"]
    told = compare(reference, reference, gates=Gates(), metric=load_metric(f"{metric_module}:verdict"))
    assert not told.passed and "says failed" in told.failures[0]
    # the search scores candidates by the same metric
    data = ScoringSet([{}] * SAMPLES, None, reference, True, "test", task=spec, metric=fn)
    assert score({"output0": half}, data, gates).budget > 1.0
    assert score(reference, data, gates).passed


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_colon", "is not module:function"),
        ("fid_no_such_module_xyz:f", "cannot import module"),
        ("fid_user_metric:missing", "has no 'missing'"),
        ("fid_user_metric:broken", "is not a function"),
    ],
)
def test_a_bad_metric_spec_is_one_line(metric_module, spec: str, message: str) -> None:
    with pytest.raises(BadInput, match=message) as info:
        load_metric(spec)
    assert "\n" not in str(info.value)


# ---- records and the INT8 search's scores ------------------------------------------------------------------
def test_the_report_round_trips_through_json(yolo) -> None:
    spec, reference = yolo
    report = compare(reference, _collapsed(reference), gates=Gates(), task=spec)
    report.runtime, report.precision, report.device = "onnxruntime 1.x", "int8", "x86-cpu"
    data = json.loads(json.dumps(report.to_json()))
    again = FidelityReport.from_json(data)
    assert again.to_json() == report.to_json()
    assert data["task"]["kind"] == "detect" and data["task"]["source"] == "metadata"
    classes = {"output": "output0", "axis": 1, "range": [4, 7], "label": "classes"}
    assert classes.items() <= data["slices"][1].items()
    assert data["precision"] == "int8" and not data["passed"]


def test_task_aware_scoring_budgets_the_task_and_normalises_slices(yolo) -> None:
    spec, reference = yolo
    with_task = ScoringSet([{}] * SAMPLES, None, reference, True, "test", task=spec)
    raw = ScoringSet([{}] * SAMPLES, None, reference, True, "test")
    collapsed = _collapsed(reference)
    assert score(collapsed, raw, Gates()).passed  # the old score: fooled
    result = score(collapsed, with_task, Gates())
    assert not result.passed and result.budget >= 10.0
    assert result.task["values"]["f1"] == 0.0 and "channels 4-6" in result.task["worst_slice"]["where"]
    assert "f1 0" in result.summary()
    assert score(reference, with_task, Gates()).budget == pytest.approx(0.0)
    # per-slice normalised errors: zeroed scores weigh ~1 per sample, not ~1e-6 under the box pixels
    assert np.all(sample_errors(collapsed, with_task) > 0.5)
    assert np.all(sample_errors(collapsed, raw) < 1e-3)
    assert np.array_equal(sample_errors(collapsed, raw), sample_errors(collapsed, raw, None))
    assert with_task.subset([0, 1]).task == spec


def test_gates_take_the_task_keys_from_a_profile() -> None:
    gates = Gates.from_dict(
        {"min_f1": 0.95, "min_mask_iou": 0.8, "max_kl": 0.1, "min_slice_cosine": 0.7}, "t.toml"
    )
    assert (gates.min_f1, gates.min_mask_iou, gates.max_kl, gates.min_slice_cosine) == (0.95, 0.8, 0.1, 0.7)
    assert Gates().min_f1 == 0.90 and Gates().min_embedding_cosine == 0.98 and Gates().min_slice_cosine == 0.5
    with pytest.raises(BadInput, match="Did you mean 'min_f1'"):
        Gates.from_dict({"min_f2": 0.9}, "t.toml")
