"""edgekit.analysis (the numbers behind `edgekit inspect`) on models built in code."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgekit import analysis
from edgekit.errors import BadInput
from tests import analysis_models as models

MB = 1024 * 1024


def _save(tmp_path: Path, built, name: str = "m.onnx") -> tuple[Path, list[np.ndarray]]:
    model, weights = built
    path = tmp_path / name
    onnx.save(model, str(path))
    return path, weights


def _independent_params(weights: list[np.ndarray]) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def test_convnet_params_and_macs(tmp_path: Path) -> None:
    path, weights = _save(tmp_path, models.small_convnet(16))
    report = analysis.analyze(path)
    assert report.params == _independent_params(weights)
    assert report.param_tensors == len(weights)
    # Conv: N*Cout*Hout*Wout * Cin/group * kh*kw
    conv1 = 1 * 8 * 16 * 16 * 3 * 3 * 3
    conv2 = 1 * 16 * 8 * 8 * 8 * 3 * 3  # stride 2, pad 1 -> 8x8
    gemm = 1 * 10 * 16  # M*N*K
    assert report.macs["Conv"] == conv1 + conv2
    assert report.macs["Gemm"] == gemm
    assert report.total_macs == conv1 + conv2 + gemm
    assert report.attention_macs == 0
    assert report.weight_bytes["fp32"] == 4 * report.params
    assert report.weight_bytes["fp16"] == 2 * report.params
    assert dict(report.op_histogram)["Conv"] == 2
    assert report.op_histogram[0][1] >= report.op_histogram[-1][1]  # sorted by count
    assert report.inputs[0].name == "x" and report.inputs[0].shape == [1, 3, 16, 16]
    assert report.outputs[0].shape == [1, 10]
    json.dumps(report.to_json())


def test_transformer_block(tmp_path: Path) -> None:
    seq, d, heads, ffn = 8, 16, 2, 32
    path, weights = _save(tmp_path, models.small_transformer())
    report = analysis.analyze(path)
    assert report.params == _independent_params(weights)
    ops = dict(report.op_histogram)
    assert {"MatMul", "Softmax", "LayerNormalization"} <= set(ops)
    dh = d // heads
    assert report.attention_macs == 2 * heads * seq * seq * dh  # Q@K^T and P@V
    assert report.macs["MatMul (attention)"] == report.attention_macs
    assert report.macs["MatMul"] == 4 * seq * d * d + 2 * seq * d * ffn
    assert report.total_macs == report.macs["MatMul"] + report.attention_macs
    assert report.nonfloat_constant_bytes == 8 * 4 + 8 * 3  # int64 reshape targets [4] and [3]
    assert report.unknown_shapes == 0


def test_weights_in_constant_nodes_shared_once(tmp_path: Path) -> None:
    path, weights = _save(tmp_path, models.constant_weights_model())
    report = analysis.analyze(path)
    # shared_w (8x8) feeds two MatMuls, bias (8) two Adds: each counted once
    assert report.params == _independent_params(weights) == 64 + 32 + 8
    assert report.nonfloat_constant_bytes == 2 * 8  # the int64 reshape target
    assert report.nonfloat_constant_tensors == 1
    assert report.macs["MatMul"] == 8 * 8 + 8 * 8 + 8 * 4
    assert any("Constant nodes" in note for note in report.notes)
    # the user's file is not modified
    assert sum(1 for n in onnx.load(str(path)).graph.node if n.op_type == "Constant") == 3


def test_opset11(tmp_path: Path) -> None:
    path, weights = _save(tmp_path, models.opset11_model())
    report = analysis.analyze(path)
    assert report.opset == 11
    assert report.ir_version == 8
    assert report.params == _independent_params(weights)
    assert report.macs["Conv"] == 1 * 4 * 8 * 8 * 3 * 3 * 3


def test_dynamic_dims_assumed_one(tmp_path: Path) -> None:
    path, weights = _save(tmp_path, models.dynamic_model())
    report = analysis.analyze(path)
    assert report.inputs[0].shape == ["N", 3, "H", "W"]  # as in the original model
    assert report.analysis_shapes == {"x": [1, 3, 1, 1]}
    assert any("assumed 1" in note and "x[0]=N" in note and "x[3]=W" in note for note in report.notes)
    assert report.params == _independent_params(weights)
    assert report.macs["Conv"] == 1 * 4 * 1 * 1 * 3 * 9


def test_dynamic_dims_with_input_shapes(tmp_path: Path) -> None:
    path, _ = _save(tmp_path, models.dynamic_model())
    report = analysis.analyze(path, {"x": [2, 3, 32, 32]})
    assert report.inputs[0].shape == ["N", 3, "H", "W"]
    assert report.analysis_shapes == {"x": [2, 3, 32, 32]}
    assert not any("assumed 1" in note for note in report.notes)
    assert report.macs["Conv"] == 2 * 4 * 32 * 32 * 3 * 9
    # input 2*3*32*32 + conv out 2*4*32*32 live together at the Conv (then Relu: conv out + relu out)
    assert report.peak_activation_bytes == 4 * max(2 * 3 * 32 * 32 + 2 * 4 * 32 * 32, 2 * 2 * 4 * 32 * 32)


def test_input_shape_errors(tmp_path: Path) -> None:
    path, _ = _save(tmp_path, models.dynamic_model())
    with pytest.raises(BadInput, match="not a model input"):
        analysis.analyze(path, {"y": [1, 3, 4, 4]})
    with pytest.raises(BadInput, match="rank"):
        analysis.analyze(path, {"x": [1, 3]})


def test_two_inputs(tmp_path: Path) -> None:
    path, weights = _save(tmp_path, models.two_input_model())
    report = analysis.analyze(path)
    assert [i.name for i in report.inputs] == ["a", "b"]
    assert report.params == _independent_params(weights) == 8 * 4 + 6 * 4
    assert report.macs["MatMul"] == 8 * 4 + 6 * 4
    assert report.attention_macs == 0


def test_names_with_at_and_colon(tmp_path: Path) -> None:
    path, weights = _save(tmp_path, models.odd_names_model())
    report = analysis.analyze(path)
    assert report.inputs[0].name == "input:0"
    assert report.outputs[0].name == "output:0"
    assert report.params == _independent_params(weights)
    assert report.macs["MatMul"] == 4 * 4
    assert {t.name for t in report.largest_tensors} == {"input:0", "dense@out:0", "output:0"}


def test_peak_activations_hand_checked(tmp_path: Path) -> None:
    path, _ = _save(tmp_path, models.chain_model())
    report = analysis.analyze(path)
    # x 40 B; relu0: x+r = 80; matmul: r+a = 120 (x freed); concat: r+a+c = 240; relu1: c+y = 240
    assert report.peak_activation_bytes == 240
    assert report.peak_node["name"] == "concat"
    assert report.peak_activation_bytes_by_precision == {"fp32": 240, "fp16": 120, "int8": 60, "int4": 120}
    assert report.largest_tensors[0].bytes == 120


def test_weight_bytes_per_precision(tmp_path: Path) -> None:
    path, _ = _save(tmp_path, models.chain_model())  # one float weight W[10, 20]
    report = analysis.analyze(path)
    assert report.weight_bytes == {
        "fp32": 800,
        "fp16": 400,
        "int8": 200 + 4 * 10,  # 1 B/param + fp32 scale per output channel
        "int4": 100 + 2 * math.ceil(200 / analysis.INT4_GROUP),  # 0.5 B/param + fp16 scale per group
    }
    model = analysis.MEMORY_MODELS["onnxruntime"]
    expected = (
        model.other * 800
        + model.activation * 240
        + model.overhead_mb * MB
        + model.per_100_nodes_mb * MB * report.node_count / 100
    )
    assert report.memory_estimate_bytes["fp32"] == int(expected)
    assert report.runtime_memory_bytes["onnxruntime"] == report.memory_estimate_bytes


def test_conv_weights_use_conv_factor(tmp_path: Path) -> None:
    path, _ = _save(tmp_path, models.small_convnet(16))
    report = analysis.analyze(path)
    classes = report.weight_bytes_by_class["fp32"]
    assert classes["conv"] == 4 * (8 * 3 * 9 + 16 * 8 * 9)
    assert classes["conv"] + classes["other"] + classes["large"] == report.weight_bytes["fp32"]


def test_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model at all")
    with pytest.raises(BadInput):
        analysis.analyze(bad)
    with pytest.raises(BadInput, match="not found"):
        analysis.analyze(tmp_path / "missing.onnx")


def test_fit_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profiles = tmp_path / "targets"
    profiles.mkdir()
    (profiles / "fake-board.toml").write_text(
        'name = "fake-board"\nbackend = "onnxruntime"\nmemory_mb = 512\n', encoding="utf-8"
    )
    monkeypatch.setenv("EDGEKIT_TARGETS_PATH", str(profiles))
    path, _ = _save(tmp_path, models.chain_model())
    report = analysis.analyze(path)
    devices = [
        {"name": "big", "memory_mb": 4096},
        {"name": "tiny", "memory_mb": 5},
        {"name": "board", "target": "fake-board"},
        {"name": "local", "transport": "local", "target": "x86-cpu"},
        {"name": "mystery"},
    ]
    rows = analysis.fit_table(report, devices, precisions=("fp32", "int8"))
    assert len(rows) == 10
    by = {(r["device"], r["precision"]): r for r in rows}
    est = report.memory_estimate_bytes["fp32"] / MB
    big = by[("big", "fp32")]
    assert big["estimated_mb"] == round(est, 1)
    assert big["device_mb"] == 4096 and big["fits"] is True
    assert big["headroom_mb"] == round(4096 - est, 1)
    assert big["headroom_pct"] == round(100 * (4096 - est) / 4096, 1)
    assert by[("tiny", "fp32")]["fits"] is False and by[("tiny", "fp32")]["headroom_mb"] < 0
    assert by[("board", "int8")]["device_mb"] == 512
    assert by[("board", "int8")]["memory_source"] == "target fake-board"
    assert by[("local", "fp32")]["device_mb"] == analysis.local_memory_mb() > 0
    assert by[("mystery", "fp32")]["fits"] is None and by[("mystery", "fp32")]["device_mb"] is None
    with pytest.raises(BadInput, match="unknown target"):
        analysis.fit_table(report, [{"name": "x", "target": "no-such-board"}])
    with pytest.raises(BadInput, match="precision"):
        analysis.fit_table(report, devices, precisions=("fp8",))


def test_formula_is_documented() -> None:
    text = analysis.ESTIMATE_FORMULA
    for model in analysis.MEMORY_MODELS.values():
        assert f"{model.runtime}: {model.overhead_mb:g} MB" in text
    assert "peak activation" in text and "int4" in text


def test_measured_memory_overrides_estimate(tmp_path: Path) -> None:
    """A bench record of this model on a device (matched through its artifact's manifest) replaces the
    estimate in the fit table: runtime memory = peak RSS - RSS before loading."""
    from edgekit import ingest

    path, _ = _save(tmp_path, models.chain_model())
    report = analysis.analyze(path)
    artifact = tmp_path / "chain.x86-cpu.fp32"
    artifact.mkdir()
    manifest = {"backend": "onnxruntime", "target": "x86-cpu", "precision": "fp32", "entry": "m.onnx"}
    manifest.update(inputs=[], outputs=[], source={"sha256": ingest.model_sha256(path)})
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    record = {
        "status": "ok",
        "artifact": {"dir": str(artifact), "precision": "fp32"},
        "device": {"name": "board"},
        "peak_rss_mb": 130.0,
        "rss_before_load_mb": 60.0,
    }
    other = dict(record, artifact={"dir": str(tmp_path / "gone"), "precision": "fp32"}, peak_rss_mb=999.0)
    measured = analysis.measured_memory([record, other], ingest.model_sha256(path))
    assert measured == {("board", "fp32"): 70.0}
    rows = analysis.fit_table(report, [{"name": "board", "memory_mb": 80}], ("fp32",), measured)
    assert rows[0]["measured_mb"] == 70.0 and rows[0]["fits"] is True and rows[0]["headroom_mb"] == 10.0
    rows = analysis.fit_table(report, [{"name": "board", "memory_mb": 60}], ("fp32",), measured)
    assert rows[0]["fits"] is False  # the measurement decides, not the (small) estimate
    assert rows[0]["estimated_mb"] < 60


def test_inspect_results_from_a_real_bench(tmp_path: Path, run_cli) -> None:
    """The user's path: export, `bench --device local`, then `inspect --devices --results`: the fit
    table's measured column is that bench's peak RSS growth and decides `fits`; a missing results
    file is one line, exit 2."""
    from tests.helpers import assert_one_line, export_ok, local_device, write_devices

    path, _ = _save(tmp_path, models.chain_model())
    devices = write_devices(tmp_path / "devices.toml", local_device("local", "x86-cpu", tmp_path / "work"))
    artifact = export_ok(run_cli, path, "x86-cpu", "fp32", out=tmp_path / "out")["artifact"]
    results = tmp_path / "results.jsonl"
    code, out, err = run_cli(
        "bench", artifact, "--device", "local", "--devices", devices, "--iterations", "3", "--warmup", "0",
        "-o", results, "--json",
    )  # fmt: skip
    assert code == 0, err
    (run,) = json.loads(out)
    growth = run["peak_rss_mb"] - run["rss_before_load_mb"]
    code, out, err = run_cli("inspect", path, "--devices", devices, "--results", results, "--json")
    assert code == 0, err
    rows = {row["precision"]: row for row in json.loads(out)["fit"]}
    assert rows["fp32"]["measured_mb"] == pytest.approx(growth, abs=0.05)
    assert rows["fp32"]["headroom_mb"] == pytest.approx(rows["fp32"]["device_mb"] - growth, abs=0.1)
    assert rows["int8"]["measured_mb"] is None  # nothing measured at int8: the estimate decides
    code, _, err = run_cli("inspect", path, "--devices", devices, "--results", tmp_path / "none.jsonl")
    assert_one_line(code, err, 2, "results file not found")
