"""Bad input gets one clear line and exit 2, and leaves no partial artifact directory behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import export_args, refused
from models import conv_net, write_model_and_sets

HEAVY = ("tensorflow", "openvino", "tensorrt", "onnx2tf", "nncf", "tf_keras", "keras", "torch")


@pytest.fixture
def conv(tmp_path: Path) -> tuple[Path, Path, Path]:
    model, calib, val, _ = write_model_and_sets(tmp_path, "conv")
    return model, calib, val


def _export(model: Path, target: str, out: Path, *more: object, precision: str | None = None) -> list[str]:
    return export_args(model, target, precision, out=out, as_json=False, more=[str(m) for m in more])


def test_missing_model(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "out"
    refused(run_cli, _export(tmp_path / "nope.onnx", "x86-cpu", out), 2, "model not found", out=out)


def test_non_onnx_bytes(tmp_path: Path, run_cli) -> None:
    bogus = tmp_path / "photo.onnx"
    bogus.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    out = tmp_path / "out"
    refused(run_cli, _export(bogus, "x86-cpu", out), 2, "photo.onnx", out=out)
    refused(run_cli, ["inspect", bogus], 2, "photo.onnx")


def test_truncated_onnx(tmp_path: Path, run_cli) -> None:
    model, _ = conv_net()
    data = model.SerializeToString()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    refused(run_cli, _export(cut, "x86-cpu", out), 2, "cut.onnx", out=out)


@pytest.mark.parametrize(
    ("arrays", "needle"),
    [
        ({"image": np.zeros((4, 3, 32, 32), np.float32)}, "no array for model input 'input'"),
        ({"input": np.zeros((4, 3, 16, 16), np.float32)}, "dimension 1 differs"),
        ({"input": np.zeros((4, 3, 32, 32), np.float64)}, "is float64, the model wants float32"),
        ({"input": np.zeros((4, 32, 32), np.float32)}, "samples have shape"),
    ],
    ids=["wrong-name", "wrong-shape", "wrong-dtype", "wrong-rank"],
)
def test_bad_calibration_set(conv, tmp_path: Path, run_cli, arrays, needle) -> None:
    model, _, _ = conv
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    out = tmp_path / "out"
    refused(run_cli, _export(model, "x86-cpu", out, "--calib", bad, precision="int8"), 2, needle, out=out)


def test_calibration_file_not_npz(conv, tmp_path: Path, run_cli) -> None:
    model, _, _ = conv
    bad = tmp_path / "calib.npz"
    bad.write_text("not a zip")
    out = tmp_path / "o"
    refused(
        run_cli, _export(model, "x86-cpu", out, "--calib", bad, precision="int8"), 2, "not a readable .npz"
    )


def test_unknown_target_suggests_close_name(conv, tmp_path: Path, run_cli) -> None:
    model, _, _ = conv
    out = tmp_path / "out"
    needles = ("unknown target 'x86-cpuu'", "Did you mean 'x86-cpu'?")
    refused(run_cli, _export(model, "x86-cpuu", out), 2, *needles, out=out)


def test_malformed_target_toml(conv, tmp_path: Path, run_cli) -> None:
    model, _, _ = conv
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "broken.toml").write_text('name = "broken"\nbackend = onnxruntime\n')
    args = _export(model, "broken", tmp_path / "o", "--targets-dir", targets)
    refused(run_cli, args, 2, "broken.toml", "malformed TOML", "line 2")
    (targets / "broken.toml").write_text('name = "broken"\nbackend = "onnxruntime"\nprecision = ["int8"]\n')
    needles = ("unknown key 'precision'", "Did you mean 'precisions'?")
    refused(run_cli, ["targets", "--targets-dir", targets], 2, *needles)


def test_malformed_image_recipe(conv, tmp_path: Path, run_cli) -> None:
    model, _, _ = conv
    images = tmp_path / "images"
    images.mkdir()
    (images / "calibration.toml").write_text("input = 'input'\nsize = [32, 32\n")
    args = _export(model, "x86-cpu", tmp_path / "o", "--calib", images, precision="int8")
    refused(run_cli, args, 2, "calibration.toml", "malformed TOML")


def test_int8_without_calibration(conv, tmp_path: Path, run_cli) -> None:
    model, _, _ = conv
    out = tmp_path / "out"
    refused(run_cli, _export(model, "x86-cpu", out, precision="int8"), 2, "--calib", out=out)


def test_bad_input_shape_flag(tmp_path: Path, run_cli) -> None:
    model, _, _, _ = write_model_and_sets(tmp_path, "dynamic")
    out = tmp_path / "o"
    args = _export(model, "x86-cpu", out, "--input-shape", "imagez:1,3,8,8")
    refused(run_cli, args, 2, "not a model input", "Did you mean 'images'?")
    refused(run_cli, _export(model, "x86-cpu", out, "--input-shape", "images:1,3,a,b"), 2, "integers")


def test_verify_bad_artifact_dir(tmp_path: Path, run_cli) -> None:
    refused(run_cli, ["verify", tmp_path, "--val", tmp_path / "v.npz"], 2, "not an edgekit artifact")


def test_failed_gate_exits_1(conv, tmp_path: Path, run_cli) -> None:
    model, calib, val = conv
    more = ["--min-cosine", "0.9999999", "--task", "raw"]  # raw outputs: min_cosine judges
    code, stdout, err = run_cli(
        *export_args(model, "x86-cpu", "int8", calib=calib, val=val, out=tmp_path, more=more)
    )
    assert code == 1, err
    assert "gate failed" in err
    manifest = json.loads(stdout)["manifest"]
    assert manifest["fidelity"]["passed"] is False  # recorded, artifact kept for inspection


def test_unreadable_onnx_gives_no_traceback_in_subprocess(tmp_path: Path) -> None:
    bogus = tmp_path / "x.onnx"
    bogus.write_bytes(b"garbage" * 10)
    proc = subprocess.run(
        [sys.executable, "-m", "edgekit", "inspect", str(bogus)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_help_imports_no_heavy_backend() -> None:
    code = (
        "import sys, json\n"
        "from edgekit.cli import main\n"
        "for args in (['--help'], ['export', '--help'], ['inspect', '--help'], ['verify', '--help'], ['targets']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_missing_backend_extra_exit_3(conv, tmp_path: Path, run_cli, monkeypatch) -> None:
    import importlib.util

    from edgekit.backends.ort import OnnxRuntimeBackend

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a)
    )
    backend = OnnxRuntimeBackend()
    assert backend.missing_modules() == ["onnxruntime"]
    with pytest.raises(Exception) as info:
        backend.require()
    assert info.value.exit_code == 3 and "pip install" in str(info.value)


def test_model_check_failure_message(tmp_path: Path, run_cli) -> None:
    model, _ = conv_net()
    model.graph.node[0].input[0] = "nowhere"
    path = tmp_path / "broken.onnx"
    onnx.save(model, path)
    refused(run_cli, _export(path, "x86-cpu", tmp_path / "o"), 2, "broken.onnx", out=tmp_path / "o")


@pytest.mark.parametrize(
    ("target", "hidden", "extra", "more"),
    [
        ("intel-cpu", "openvino", "openvino", []),
        ("android-arm64", "onnx2tf", "tflite", []),
        ("x86-gpu", "tensorrt", "tensorrt", ["--option", "build_engine=true"]),
    ],
)
def test_missing_extra_is_one_line_exit_3(
    conv, tmp_path: Path, run_cli, monkeypatch, target, hidden, extra, more
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.split(".")[0] == hidden else real(name, *a)
    )
    model, calib, _ = conv
    out = tmp_path / "out"
    refused(
        run_cli,
        _export(model, target, out, "--calib", calib, *more, precision="fp16"),
        3,
        f"edgekit[{extra}]",
        out=out,
    )
    code, stdout, _ = run_cli("targets", "--json")
    row = next(r for r in json.loads(stdout) if r["name"] == target)
    if hidden != "tensorrt":
        assert not row["installed"] and f"edgekit[{extra}]" in row["status"]
