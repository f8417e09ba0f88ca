"""Exit codes and refusals of the CLI: 1 only for gates, 2 for everything about the user's input
(click's own errors included), 3 for what is missing here, each one line; refusals happen before any
work and write nothing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import click
import pytest
from helpers import assert_one_line, export_args, refused, write_target
from models import write_model_and_sets

from edgekit import ingest
from edgekit.resources import demo_paths


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture
def conv(tmp_path: Path) -> tuple[Path, Path]:
    model, calib, _, _ = write_model_and_sets(tmp_path, "conv")
    return model, calib


@pytest.fixture
def no_prepare(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any model preparation fails the test: what is refused must be refused before that work."""

    def prepare(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was prepared before the request was checked")

    monkeypatch.setattr(ingest, "prepare", prepare)


@pytest.mark.parametrize(
    ("target", "option", "needles"),
    [
        ("android-arm64", "onnx2tf=x", ["onnx2tf takes a JSON object"]),
        ("intel-cpu", "presett=mixed", ["not an option of the openvino backend", "Did you mean 'preset'?"]),
        ("jetson-orin-nano", "max_batch=many", ["max_batch takes an integer"]),
        ("x86-cpu", "preset=mixed", ["not an option of the onnxruntime backend"]),
    ],
)
def test_bad_backend_option_is_one_line_exit_2_before_any_work(
    conv, tmp_path: Path, run_cli, no_prepare, target: str, option: str, needles: list[str]
) -> None:
    model, calib = conv
    out = tmp_path / "fresh" / "out"
    args = export_args(model, target, "fp16", calib=calib, out=out, more=["--option", option])
    refused(run_cli, args, 2, f"--option {option.split('=')[0]}", *needles, out=out)
    assert not (tmp_path / "fresh").exists()


@pytest.mark.parametrize(
    ("target", "module"),
    [
        ("x86-cpu", "onnxruntime"),
        ("intel-cpu", "nncf"),
        ("android-arm64", "onnx2tf"),
        ("jetson-orin-nano", "onnx"),
    ],
)
def test_missing_calibration_is_refused_before_any_work(
    conv, tmp_path: Path, run_cli, no_prepare, target: str, module: str
) -> None:
    if not _has(module):
        pytest.skip(f"{module} not installed: the missing extra (exit 3) is reported first")
    model, _ = conv
    out = tmp_path / "out"
    refused(
        run_cli, export_args(model, target, "int8", out=out), 2, "needs a calibration set", "--calib", out=out
    )


def test_dynamic_int8_needs_no_calibration(conv, tmp_path: Path, run_cli, monkeypatch) -> None:
    """--dynamic on onnxruntime passes the calibration check and goes on to prepare the model."""
    from edgekit.errors import BadInput

    def prepare(*args: object, **kwargs: object) -> None:
        raise BadInput("reached preparation")

    monkeypatch.setattr(ingest, "prepare", prepare)
    model, _ = conv
    args = export_args(model, "x86-cpu", "int8", out=tmp_path / "o", more=["--dynamic"])
    refused(run_cli, args, 2, "reached preparation")


def test_refusal_inside_the_backend_leaves_no_output_directory(conv, tmp_path: Path, run_cli) -> None:
    """The TensorRT backend refuses an int8_mode after the model was prepared: nothing stays behind,
    not even the -o directory the export would have created."""
    model, calib = conv
    out = tmp_path / "new" / "out"
    args = export_args(
        model, "jetson-orin-nano", "int8", calib=calib, out=out, more=["--option", "int8_mode=bogus"]
    )
    refused(run_cli, args, 2, "int8_mode", out=out)
    assert list(tmp_path.glob("new*")) == []


def test_click_errors_exit_2_in_one_line(conv, tmp_path: Path, run_cli) -> None:
    from edgekit.cli import cli

    model, _ = conv
    refused(run_cli, ["export", model], 2, "Missing option '--target'", "edgekit export --help")
    refused(run_cli, ["export", model, "--tagret", "x86-cpu"], 2, "No such option '--tagret'", "Did you mean")
    refused(run_cli, ["bench"], 2, "Missing argument 'ARTIFACTS...'")
    refused(run_cli, ["devices", "chek"], 2, "No such command 'chek'")

    @cli.command("read-config")
    def read_config() -> None:
        raise click.FileError("edgekit.toml", hint="permission denied")

    try:  # a click error that is not a usage error is still about the user's input: 2, not the gate code
        refused(run_cli, ["read-config"], 2, "edgekit.toml", "permission denied")
    finally:
        cli.commands.pop("read-config")


def _demo(run_cli, tmp_path: Path, target: str) -> tuple[int, list[dict], str]:
    code, out, err = run_cli(
        "demo", "--target", target, "-o", tmp_path / "demo", "--iterations", "1", "--json"
    )
    return code, json.loads(out) if out.strip() else [], err


def test_demo_exits_with_the_export_failures_class(tmp_path: Path, run_cli, monkeypatch) -> None:
    """A missing extra is 3, a profile asking the backend for the impossible is 2 (was 4 for both);
    every row says why."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.split(".")[0] == "openvino" else real(name, *a),
    )
    code, rows, err = _demo(run_cli, tmp_path, "intel-cpu")
    assert_one_line(code, err, 3, "some demo exports failed")
    assert rows and all(r["status"] == "export failed" and r["exit_code"] == 3 for r in rows)
    assert all("edgekit[openvino]" in r["error"] for r in rows)

    targets = write_target(tmp_path / "targets", "int3-cpu", precisions=["int8"])
    with (targets / "int3-cpu.toml").open("a", encoding="utf-8") as profile:
        profile.write('[quantization]\nactivation_type = "int3"\n')
    monkeypatch.setenv("EDGEKIT_TARGETS_PATH", str(targets))
    code, rows, err = _demo(run_cli, tmp_path, "int3-cpu")
    assert_one_line(code, err, 2, "some demo exports failed")
    # one row per demo model (the digits CNN and the detector)
    assert [(r["status"], r["exit_code"]) for r in rows] == [("export failed", 2)] * 2
    assert all("int3" in r["error"] for r in rows)


def test_demo_gate_failure_exits_1(tmp_path: Path, run_cli, monkeypatch) -> None:
    # gates nothing passes, whatever the task: the digits CNN is judged as a classifier (not by min_cosine);
    # the slice-cosine floor judges every task
    strict = {"min_cosine": 1.01, "min_slice_cosine": 1.01}
    targets = write_target(tmp_path / "targets", "strict-cpu", precisions=["fp32"], fidelity=strict)
    monkeypatch.setenv("EDGEKIT_TARGETS_PATH", str(targets))
    code, rows, err = _demo(run_cli, tmp_path, "strict-cpu")
    assert_one_line(code, err, 1, "fidelity gate")
    assert [r["status"] for r in rows] == ["verify failed"] * 2  # the digits CNN and the detector
    assert all("< 1.01" in r["error"] for r in rows)
    assert Path(rows[0]["artifact"]).is_dir() and demo_paths()["model"].is_file()
