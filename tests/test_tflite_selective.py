"""TFLite through ai-edge-quantizer (edgekit.backends.tflite.selective): float outputs for a head that
concatenates different scales, token models' INT8 with integer inputs kept, weight-only INT8 / INT4,
the per-node fallback, channels-last inputs. Real onnx2tf + ai-edge-quantizer runs on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgekit.backends import get_backend
from edgekit.backends.base import ExportJob, ExportOptions, ExportResult, TensorSpec
from edgekit.backends.tflite import selective
from edgekit.backends.tflite.plan import InputPlan, channels_last_inputs
from edgekit.calib import CalibrationSet
from edgekit.ingest import PrepareOptions, prepare
from edgekit.targets import Gates, TargetProfile
from tests import models
from tests.tflite_models import channels_last_classifier, mixed_scale_head, outlier_channel_net, token_encoder

ANDROID = TargetProfile(name="android-arm64", backend="tflite", io={"dtype": "int8"}, threads=2)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "prepared"))


def _samples(model: onnx.ModelProto, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Per input, `count` samples keeping the batch axis: images in [0, 1), token ids in [0, 64),
    attention masks of ones with a padded tail."""
    rng = np.random.default_rng(seed)
    out = {}
    for vi in model.graph.input:
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        if vi.type.tensor_type.elem_type == onnx.TensorProto.INT64:
            if "mask" in vi.name:
                mask = np.ones((count, *dims), np.int64)
                mask[:, :, -rng.integers(1, 4) :] = 0
                out[vi.name] = mask
            else:
                out[vi.name] = rng.integers(0, 64, size=(count, *dims)).astype(np.int64)
        else:
            out[vi.name] = rng.random((count, *dims), dtype=np.float32)
    return out


def _job(
    tmp: Path,
    model: onnx.ModelProto,
    name: str,
    precision: str,
    count: int = 12,
    gates: Gates | None = None,
    **options: object,
) -> tuple[ExportJob, dict[str, np.ndarray]]:
    backend = get_backend("tflite")
    path = models.save(model, tmp / f"{name}.onnx")
    prepared = prepare(
        path,
        PrepareOptions(
            static_shapes=backend.needs_static_shapes,
            min_opset=backend.min_opset,
            name_pattern=backend.name_pattern,
        ),
    )
    samples = _samples(model, count)
    np.savez(tmp / f"{name}_calib.npz", **samples)
    to_prepared = {source: new for new, source in prepared.name_map.items()}
    calib = CalibrationSet.load(tmp / f"{name}_calib.npz").renamed(to_prepared)
    calib.validate(prepared.inputs)
    out = tmp / f"{name}.{precision}"
    return ExportJob(prepared, ANDROID, precision, out, calib, ExportOptions(**options), gates=gates), samples


def _run(job: ExportJob, result: ExportResult, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    manifest = json.loads(
        json.dumps(
            {
                "entry": result.entry,
                "inputs": [s.to_json() for s in result.inputs],
                "outputs": [s.to_json() for s in result.outputs],
                "precision": job.precision,
                "details": result.details,
            }
        )
    )
    with get_backend("tflite").open_runner(job.out_dir, manifest) as runner:
        return runner.infer(feed)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0))


# ---- fast: recipes and detection without TensorFlow -----------------------------------------------
def test_scope_regex_matches_only_the_named_ops() -> None:
    import re

    regex = selective.scope_regex(["Identity", "model/tf.concat/concat"])
    assert re.search(regex, "Identity;")
    assert re.search(regex, "a;model/tf.concat/concat;")
    assert not re.search(regex, "Identity_1;")
    assert not re.search(regex, "model/tf.concat/concat_2;")
    rules = selective.static_rules(["Identity"], float_io=True)
    assert [r["kind"] for r in rules] == ["static", "none", "none", "none"]
    int4 = selective.weight_rules(4, 32, True, ["fc2"])
    block = [r for r in int4 if r.get("granularity") == "BLOCKWISE_32"]
    assert {r["op"] for r in block} == {"FULLY_CONNECTED", "EMBEDDING_LOOKUP"}  # what AEQ 0.10 allows
    assert all(r["kind"] == "dynamic" and r["symmetric"] for r in block)
    assert int4[-1] == {"regex": selective.scope_regex(["fc2"]), "kind": "weight_only", "weight_bits": 8}
    asym = selective.weight_rules(4, 32, False)
    assert all(r["granularity"] == "CHANNELWISE" and r["symmetric"] is False for r in asym[1:])


def test_mixed_scale_output_is_found(tmp_path: Path) -> None:
    path = models.save(mixed_scale_head(), tmp_path / "head.onnx")
    feeds = [{"images": x} for x in _samples(onnx.load(str(path)), 4)["images"]]
    flagged = selective.mixed_scale_outputs(path, feeds)
    assert [f["output"] for f in flagged] == ["output0"]
    assert flagged[0]["ratio"] > 16 and flagged[0]["nodes"][0] == "head_cat_node"
    # a classifier's output is not a Concat: nothing flagged
    clf = models.save(channels_last_classifier(), tmp_path / "clf.onnx")
    assert selective.mixed_scale_outputs(clf, [{"image": np.zeros((1, 16, 16, 3), np.float32)}]) == []


def test_channels_last_inputs_are_recognised(tmp_path: Path) -> None:
    path = models.save(channels_last_classifier(), tmp_path / "clf.onnx")
    info = onnx.load(str(path)).graph.input[0]

    class Info:
        name, shape, dtype = info.name, [1, 16, 16, 3], np.float32

    assert channels_last_inputs(path, [Info]) == ["image"]
    plan = InputPlan.of(Info, ["image"])
    assert plan.perm == [0, 1, 2, 3] and plan.tf_shape == [1, 16, 16, 3]
    assert TensorSpec.build("x", [1, 224, 224, 3], "float32").layout == "NHWC"
    assert TensorSpec.build("x", [1, 3, 224, 224], "float32").layout == "NCHW"


# ---- slow: real onnx2tf + ai-edge-quantizer ---------------------------------------------------------


@pytest.mark.slow
def test_channels_last_classifier_keeps_nhwc_in_tflite(tmp_path: Path) -> None:
    pytest.importorskip("onnx2tf")
    job, samples = _job(tmp_path, channels_last_classifier(), "nhwc", "int8")
    result = get_backend("tflite").export(job)
    assert result.inputs[0].shape == [1, 16, 16, 3] and result.inputs[0].layout == "NHWC"
    session = ort.InferenceSession(str(tmp_path / "nhwc.onnx"), providers=["CPUExecutionProvider"])
    feed = {"image": samples["image"][0]}
    want = session.run(None, feed)[0]
    assert _cos(want, _run(job, result, feed)["logits"]) > 0.95


@pytest.mark.slow
def test_mixed_scale_head_gets_float_outputs_and_keeps_its_scores(tmp_path: Path) -> None:
    """onnx2tf's full-integer file passes a whole-tensor cosine while its one output scale crushes the
    class scores; edgekit writes that output float (said in the warnings and the manifest details) and
    the scores survive."""
    pytest.importorskip("ai_edge_quantizer")
    job, samples = _job(tmp_path, mixed_scale_head(), "head", "int8")
    result = get_backend("tflite").export(job)
    assert result.details["variant"] == "aeq_int8"
    assert result.details["float_outputs"][0]["output"] == "output0"
    assert {op["op"] for op in result.details["float_outputs"][0]["tflite_ops"]} >= {"CONCATENATION"}
    assert any("different scales" in w for w in result.warnings)
    assert result.inputs[0].dtype == "int8" and result.outputs[0].dtype == "float32"
    session = ort.InferenceSession(str(tmp_path / "head.onnx"), providers=["CPUExecutionProvider"])
    for index in range(3):
        feed = {"images": samples["images"][index]}
        want = session.run(None, feed)[0]
        got = _run(job, result, feed)["output0"]
        # one int8 scale for 0..128 px and 0..1 scores is ~0.5 per step: every score 0 or 0.5+
        assert float(np.abs(want[:, 4:] - got[:, 4:]).max()) < 0.1, "class scores lost"
        assert _cos(want[:, :4], got[:, :4]) > 0.98


@pytest.mark.slow
def test_token_model_int8_keeps_integer_inputs(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_quantizer")
    job, samples = _job(tmp_path, token_encoder(), "tokens", "int8", gates=Gates(min_cosine=0.95))
    result = get_backend("tflite").export(job)
    assert result.details["variant"] == "aeq_int8"
    assert {s.dtype for s in result.inputs} <= {"int64", "int32"}
    assert result.details["selective_quantization"]["passed"] is True
    assert "FULLY_CONNECTED" in result.details["ops"] or "BATCH_MATMUL" in result.details["ops"]
    session = ort.InferenceSession(str(tmp_path / "tokens.onnx"), providers=["CPUExecutionProvider"])
    feed = {k: v[0] for k, v in samples.items()}
    assert _cos(session.run(None, feed)[0], _run(job, result, feed)["pooled"]) > 0.95


@pytest.mark.slow
def test_weight_only_int8_and_int4(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_quantizer")
    sizes = {}
    for precision, options in (("int8", {"weights_only": True}), ("int4", {"int4_group_size": 32})):
        job, samples = _job(
            tmp_path, token_encoder(), "tokens", precision, gates=Gates(min_cosine=0.9), **options
        )
        result = get_backend("tflite").export(job)
        record = result.details["selective_quantization"]
        weights = record["weights"]
        assert weights["bits"] == (8 if precision == "int8" else 4)
        assert ("INT4" if precision == "int4" else "INT8") in weights["tensors_by_dtype"]
        assert all(s.dtype != "int8" for s in result.inputs + result.outputs)  # float activations
        sizes[precision] = weights["bytes"]
        session = ort.InferenceSession(str(tmp_path / "tokens.onnx"), providers=["CPUExecutionProvider"])
        feed = {k: v[1] for k, v in samples.items()}
        assert _cos(session.run(None, feed)[0], _run(job, result, feed)["pooled"]) > 0.9
    assert sizes["int4"] < sizes["int8"]


@pytest.mark.slow
def test_per_node_fallback_keeps_the_ranked_ops_in_float(tmp_path: Path) -> None:
    """onnx2tf's recipes fail (one scale for a tensor with a 1000x channel); ai-edge-quantizer with the
    ops the ranking names kept in float passes, and the record names them by their ONNX nodes."""
    pytest.importorskip("ai_edge_quantizer")
    job, samples = _job(
        tmp_path,
        outlier_channel_net(),
        "outlier",
        "int8",
        gates=Gates(min_cosine=0.99),
        allow_float_ops=True,
        max_revert=0.5,
    )
    result = get_backend("tflite").export(job)
    record = result.details["selective_quantization"]
    assert result.details["int8_search"]["default_score"]["passed"] is False
    assert result.details["variant"] == "aeq_int8", record["summary"]
    assert record["passed"] is True and record["reverted"], record["summary"]
    named = {n for op in record["reverted"] for n in op["source_nodes"]}
    assert named & {"outlier_node", "mix_node"}, record["reverted"]
    assert record["ranking"] and record["onnx_to_tflite"]["by_values"] >= 4
    session = ort.InferenceSession(str(tmp_path / "outlier.onnx"), providers=["CPUExecutionProvider"])
    feed = {"images": samples["images"][0]}
    assert _cos(session.run(None, feed)[0], _run(job, result, feed)["logits"]) > 0.99


@pytest.mark.slow
def test_per_node_fallback_needs_consent_on_full_integer_targets(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_quantizer")
    job, _ = _job(tmp_path, outlier_channel_net(), "outlier", "int8", gates=Gates(min_cosine=0.99))
    result = get_backend("tflite").export(job)
    record = result.details["selective_quantization"]
    assert record["passed"] is False and "--allow-float-ops" in record["would_take"]
    assert result.details["variant"] == "full_integer_quant"  # onnx2tf's file kept, the record says why


@pytest.mark.slow
def test_int4_keeps_the_outlier_layer_at_int8_by_name(tmp_path: Path) -> None:
    """fc1's weights hold a 10x input row: all-INT4 (block 32) fails the gate; --int4 passes with fc1 at
    INT8 weights, named by its ONNX node, and the other MatMul stays INT4."""
    pytest.importorskip("ai_edge_quantizer")
    job, samples = _job(
        tmp_path,
        token_encoder(outlier=10.0),
        "outlier_tokens",
        "int4",
        gates=Gates(min_cosine=0.98),
        int4_group_size=32,
        int4_symmetric=True,  # block-wise INT4 (the merged default, asymmetric, is per-channel on TFLite)
        max_revert=0.5,
    )
    result = get_backend("tflite").export(job)
    record = result.details["selective_quantization"]
    assert record["default_score"]["passed"] is False, record["default_score"]
    assert record["passed"] is True, record["summary"]
    assert record["reverted_to"] == "int8"
    # ingest fuses fc1's MatMul + bias Add into one Gemm (between reshapes) named after the MatMul's output
    named = {n for op in record["reverted"] for n in op["source_nodes"]}
    assert named & {"fc1_matmul", "fc1"}, record["reverted"]
    assert not any("fc2" in n for n in named)
    assert "INT4" in record["weights"]["tensors_by_dtype"]
