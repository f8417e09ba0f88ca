"""Issue 19: a TensorRT bundle's host verification names the runtime and precision that produced it;
an FP16 bundle (whose FP16 kernels only TensorRT on a GPU runs) is "not verified here", never a pass
made of the FP32 ONNX through onnxruntime; an engine that does not load is not replaced by the ONNX."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgekit.errors import NotVerifiedHere
from tests import models


def _model_and_val(tmp_path: Path) -> tuple[Path, Path]:
    model, _ = models.conv_net()
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    val = tmp_path / "val.npz"
    np.savez(val, **models.sample_set(model, 8, seed=2))
    return path, val


def test_fp16_bundle_is_not_verified_here(tmp_path: Path, run_cli) -> None:
    path, val = _model_and_val(tmp_path)
    code, out, err = run_cli(
        "export",
        path,
        "--target",
        "jetson-orin-nano",
        "--fp16",
        "--val",
        val,
        "-o",
        tmp_path / "out",
        "--json",
    )
    assert code == 0, err
    manifest = json.loads(out)["manifest"]
    assert not manifest.get("fidelity"), "the FP32 ONNX through onnxruntime is not the FP16 engine's verdict"
    assert "not verified here" in manifest["verification"]["status"]
    assert manifest["verification"]["precision"] == "fp16"
    code, out, err = run_cli("verify", tmp_path / "out" / "m.jetson-orin-nano.fp16", "--val", val)
    assert code == NotVerifiedHere.exit_code and "not verified here" in err


def test_fp32_bundle_verdict_names_its_runtime_and_precision(tmp_path: Path, run_cli) -> None:
    path, val = _model_and_val(tmp_path)
    code, out, err = run_cli(
        "export",
        path,
        "--target",
        "jetson-orin-nano",
        "--fp32",
        "--val",
        val,
        "-o",
        tmp_path / "out",
        "--json",
    )
    assert code == 0, err
    fidelity = json.loads(out)["manifest"]["fidelity"]
    assert fidelity["passed"] is True
    assert fidelity["runtime"].startswith("onnxruntime") and fidelity["precision"] == "fp32"


def test_an_engine_that_does_not_load_is_not_replaced_by_the_onnx(tmp_path: Path, monkeypatch) -> None:
    from edgekit.backends.trt import backend as trt_backend
    from edgekit.backends.trt import engine as trt_engine

    art = tmp_path / "art"
    art.mkdir()
    (art / "model.engine").write_bytes(b"not an engine")
    onnx.save(models.conv_net()[0], str(art / "model.onnx"))
    manifest = {"entry": "model.onnx", "precision": "fp32", "details": {"engine": "model.engine"},
                "inputs": [], "outputs": []}  # fmt: skip
    backend = trt_backend.TensorRTBackend()
    monkeypatch.setattr(type(backend), "engine_available", lambda self: True)
    monkeypatch.setattr(trt_backend, "gpu_present", lambda: True)

    def broken(*args, **kwargs):
        raise RuntimeError("engine plan from another GPU")

    monkeypatch.setattr(trt_engine, "EngineRunner", broken)
    monkeypatch.setattr(trt_backend, "manifest_specs", lambda m: ([], []))
    with pytest.raises(NotVerifiedHere, match="does not load here"):
        backend.open_runner(art, manifest)
