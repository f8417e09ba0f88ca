"""The varied models through export (fp32/fp16/int8) and verify with the ONNX Runtime target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import export_args
from models import VARIED, write_model_and_sets

from edgekit.ingest import file_sha256

# INT8 of random-weight models is compared with a looser cosine than the targets' default 0.99
INT8_MIN_COSINE = "0.97"


def _shape_args(key: str) -> list[str]:
    fixed = VARIED[key][1]
    return [
        arg for name, dims in fixed.items() for arg in ("--input-shape", f"{name}:{','.join(map(str, dims))}")
    ]


@pytest.mark.parametrize("key", list(VARIED))
def test_inspect_export_and_verify_every_precision(key: str, tmp_path: Path, run_cli) -> None:
    model, calib, val, params = write_model_and_sets(tmp_path, key)
    code, stdout, stderr = run_cli("inspect", model, "--json", *_shape_args(key))
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["params"] == params  # counted independently by the builder, shared tensors once
    assert report["total_macs"] > 0 and report["peak_activation_bytes"] > 0
    code, stdout, stderr = run_cli("inspect", model, *_shape_args(key))
    assert code == 0 and "parameters" in stdout, stderr
    out = tmp_path / "out"
    for precision in ("fp32", "fp16", "int8"):
        # random inputs: judged on raw outputs with a loosened cosine (their class ranking is fragile)
        gate = ["--task", "raw"] + (["--min-cosine", INT8_MIN_COSINE] if precision == "int8" else [])
        args = export_args(
            model, "x86-cpu", precision, calib=calib, val=val, out=out, more=gate + _shape_args(key)
        )
        code, stdout, stderr = run_cli(*args)
        assert code == 0, f"{key} {precision}: {stderr}"
        result = json.loads(stdout)
        manifest = result["manifest"]
        artifact = Path(result["artifact"])
        assert artifact.name == f"{key}.x86-cpu.{precision}"
        on_disk = json.loads((artifact / "manifest.json").read_text())
        assert on_disk == manifest
        assert manifest["source"]["sha256"] == file_sha256(model)
        for record in manifest["files"]:
            assert file_sha256(artifact / record["path"]) == record["sha256"]
        entry = onnx.load(str(artifact / manifest["entry"]))
        onnx.checker.check_model(entry)
        fidelity = manifest["fidelity"]
        assert fidelity["passed"], fidelity["failures"]
        floor = 0.999 if precision != "int8" else float(INT8_MIN_COSINE)
        assert all(o["cosine"] >= floor for o in fidelity["outputs"]), fidelity
        if precision == "int8":
            assert manifest["calibration"]["sha256"] and manifest["calibration"]["samples"] == 16
            ops = {node.op_type for node in entry.graph.node}
            assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        if precision == "fp16":
            inputs = {i.name: i.type.tensor_type.elem_type for i in entry.graph.input}
            assert set(inputs.values()) == {onnx.TensorProto.FLOAT}  # float I/O kept
        # verify as its own command agrees with the gate recorded at export
        gate_args = ["--min-cosine", INT8_MIN_COSINE] if precision == "int8" else []
        code, stdout, stderr = run_cli("verify", artifact, "--val", val, "--json", *gate_args)
        assert code == 0, stderr
        assert json.loads(stdout)["outputs"][0]["cosine"] == pytest.approx(fidelity["outputs"][0]["cosine"])


def test_int8_is_per_channel_qdq_and_smaller(tmp_path: Path, run_cli) -> None:
    """The profile's default recipe (--no-search): per-channel weights, the target's activation type."""
    model, calib, _, _ = write_model_and_sets(tmp_path, "conv")
    for target, act_type in (("x86-cpu", onnx.TensorProto.UINT8), ("arm64-cpu", onnx.TensorProto.INT8)):
        code, stdout, stderr = run_cli(
            *export_args(
                model,
                target,
                "int8",
                calib=calib,
                out=tmp_path / "o",
                more=["--no-search", "--min-cosine", "0"],
            )
        )
        assert code == 0, stderr
        manifest = json.loads(stdout)["manifest"]
        quantized = onnx.load(str(Path(json.loads(stdout)["artifact"]) / "model.onnx"))
        zero_points = {i.name: i for i in quantized.graph.initializer if i.name.endswith("zero_point")}
        act = [z for n, z in zero_points.items() if "input" in n or "Relu" in n or "relu" in n]
        assert act and all(z.data_type == act_type for z in act)
        per_channel = [z for z in zero_points.values() if len(z.dims) == 1 and z.dims[0] > 1]
        assert per_channel, "weights should be quantized per channel"
        assert manifest["details"]["per_channel"] is True
        big_weights = [i for i in quantized.graph.initializer if len(i.dims) == 4]
        assert big_weights and all(i.data_type == onnx.TensorProto.INT8 for i in big_weights)
        # ~20k params: the per-channel scales and Q/DQ nodes still weigh in, so not the ideal 4x
        assert manifest["size"]["compression_ratio"] > 1.8


def test_dynamic_int8_and_calibration_methods(tmp_path: Path, run_cli) -> None:
    model, calib, val, _ = write_model_and_sets(tmp_path, "transformer")
    more = ["--dynamic", "--min-cosine", INT8_MIN_COSINE]
    code, stdout, stderr = run_cli(
        *export_args(model, "x86-cpu", "int8", val=val, out=tmp_path / "d", more=more)
    )
    assert code == 0, stderr
    manifest = json.loads(stdout)["manifest"]
    assert manifest["details"]["mode"] == "dynamic" and manifest["calibration"] is None
    for method in ("minmax", "percentile"):
        more = ["--calib-method", method, "--calib-samples", "8"]
        args = export_args(model, "arm64-cpu", "int8", calib=calib, out=tmp_path / method, more=more)
        code, stdout, stderr = run_cli(*args)
        assert code == 0, stderr
        record = json.loads(stdout)["manifest"]["calibration"]
        assert record["method"] == method and record["samples"] == 8 and record["total_samples"] == 16


def test_dynamic_dims_stay_dynamic_for_onnxruntime(tmp_path: Path, run_cli) -> None:
    model, calib, _, _ = write_model_and_sets(tmp_path, "dynamic")
    code, stdout, stderr = run_cli("export", model, "--target", "x86-cpu", "--fp32", "-o", tmp_path, "--json")
    assert code == 0, stderr
    inputs = json.loads(stdout)["manifest"]["inputs"]
    assert inputs[0]["shape"] == ["batch", 3, "height", "width"]


def test_odd_names_are_kept_for_onnxruntime(tmp_path: Path, run_cli) -> None:
    model, calib, val, _ = write_model_and_sets(tmp_path, "odd_names")
    more = ["--min-cosine", INT8_MIN_COSINE]
    code, stdout, stderr = run_cli(
        *export_args(model, "x86-cpu", "int8", calib=calib, val=val, out=tmp_path, more=more)
    )
    assert code == 0, stderr
    manifest = json.loads(stdout)["manifest"]
    assert manifest["inputs"][0]["name"] == "input:0"
    assert manifest["outputs"][0]["source_name"] == "logits@out:0"


def test_bench_local_reports_latency(tmp_path: Path, run_cli) -> None:
    from edgekit.api import bench_local

    model, _, _, _ = write_model_and_sets(tmp_path, "conv")
    code, stdout, _ = run_cli("export", model, "--target", "x86-cpu", "-o", tmp_path, "--json")
    assert code == 0
    record = bench_local(json.loads(stdout)["artifact"], iterations=20, warmup=2)
    latency = record["latency_ms"]
    assert record["status"] == "ok"
    assert 0 < latency["min"] <= latency["p50"] <= latency["p99"] <= latency["max"]
    assert np.isfinite(record["throughput_fps"])


def test_model_with_external_data(tmp_path: Path, run_cli) -> None:
    from models import conv_net, sample_set

    model, _ = conv_net()
    path = tmp_path / "ext" / "model.onnx"
    path.parent.mkdir()
    onnx.save_model(model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (path.parent / "weights.bin").stat().st_size > path.stat().st_size
    calib = tmp_path / "calib.npz"
    np.savez(calib, **sample_set(model, 8))
    for precision in ("fp32", "int8"):
        args = export_args(
            path, "x86-cpu", precision, calib=calib, val=calib, out=tmp_path / "out", more=["--task", "raw"]
        )
        code, stdout, stderr = run_cli(*args)
        assert code == 0, stderr
        manifest = json.loads(stdout)["manifest"]
        total = path.stat().st_size + (path.parent / "weights.bin").stat().st_size
        assert manifest["source"]["bytes"] == total  # the external weights count as the source's size
        assert manifest["fidelity"]["passed"]


def test_new_external_weights_are_a_new_model(tmp_path: Path) -> None:
    from models import conv_net

    from edgekit.ingest import PrepareOptions, model_sha256, prepare

    model, _ = conv_net()
    path = tmp_path / "model.onnx"
    onnx.save_model(
        model, str(path), save_as_external_data=True, location="model.onnx.data", size_threshold=0
    )
    first = prepare(path, PrepareOptions())
    weights = (tmp_path / "model.onnx.data").read_bytes()
    (tmp_path / "model.onnx.data").write_bytes(weights[::-1])  # retrained: same graph file, new weights
    second = prepare(path, PrepareOptions())
    assert first.source_sha256 != second.source_sha256 == model_sha256(path)
    assert first.path != second.path  # not served from the stale cache entry
