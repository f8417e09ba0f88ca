"""edgekit.api: typed requests in, typed records out; every record round-trips through JSON and is
exactly what `edgekit VERB --json` prints; the CLI module stays light to import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import export_ok, write_target
from models import write_model_and_sets

from edgekit import api
from edgekit.backends.base import ExportOptions
from edgekit.errors import BadInput
from edgekit.fidelity import FidelityReport, OutputMetrics


def _via_json(record: Any) -> Any:
    """record -> to_json -> JSON text -> from_json: what a file or another process would read back."""
    return type(record).from_json(json.loads(json.dumps(record.to_json())))


REQUESTS = [
    api.ExportRequest(
        model=Path("m.onnx"),
        target="x86-cpu",
        precision="int8",
        calib="c.npz",
        input_shapes={"x": (1, 3, 8, 8)},
        options=ExportOptions(calib_method="minmax", ignore=["head*"], extra={"preset": "mixed"}),
        gate_overrides={"min_cosine": 0.98, "max_accuracy_drop": None},
        targets_dirs=[Path("my-targets")],
    ),
    api.VerifyRequest(
        "art", "val.npz", device="board", devices_file="d.toml", gate_overrides={"min_snr_db": 20}
    ),
    api.BenchRequest(["a", Path("b")], devices=["board"], val="v.npz", iterations=5, targets_dirs=["t"]),
    api.TargetsRequest([Path("t")]),
    api.InspectRequest("m.onnx", {"x": [1, 3, 8, 8]}, "d.toml"),
    api.DevicesRequest("d.toml", ["a", "b"]),
    api.DemoRequest("out", ["x86-cpu"], 3),
    api.ReportRequest(
        ["results.jsonl", Path("dist/a-1.0")], baseline=["old.jsonl"], outputs=[Path("r.html")]
    ),
    api.ReleaseRequest(Path("edgekit.toml"), allow_failures=True, executor="ray", address="127.0.0.1:6379"),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_requests_round_trip_through_json(request_: Any) -> None:
    again = _via_json(request_)
    assert again == request_ and again.to_json() == request_.to_json()


def test_request_from_json_refuses_unknown_fields_and_gates() -> None:
    with pytest.raises(BadInput, match="unknown field 'tagret'"):
        api.ExportRequest.from_json({"model": "m.onnx", "tagret": "x86-cpu"})
    with pytest.raises(BadInput, match="unknown gate 'min_cosin'"):
        api.VerifyRequest("art", "val.npz", gate_overrides={"min_cosin": 0.9})


def test_fidelity_report_round_trips_infinite_snr() -> None:
    report = FidelityReport(
        samples=4,
        outputs=[OutputMetrics("y", 1.0, float("inf"), 0.0, 0.0, 100.0)],
        accuracy_reference=75.0,
        accuracy_artifact=75.0,
        gates={"min_cosine": 0.99},
        where="board",
    )
    assert _via_json(report) == report  # identical outputs: SNR is infinite, JSON writes 1e9


def test_export_verify_targets_records_are_what_json_prints(tmp_path: Path, run_cli) -> None:
    model, _, val, _ = write_model_and_sets(tmp_path, "conv")
    printed = export_ok(run_cli, model, "x86-cpu", "fp32", val=val, out=tmp_path / "out")
    record = api.ExportRecord.from_json(printed)
    assert record.fidelity is not None and record.fidelity.passed
    assert record.to_json() == printed and _via_json(record) == record

    code, out, err = run_cli("verify", printed["artifact"], "--val", val, "--json")
    assert code == 0, err
    report = api.verify(api.VerifyRequest(printed["artifact"], str(val), write=False))
    assert json.loads(out) == report.to_json() and _via_json(report) == report

    code, out, err = run_cli("targets", "--json")
    assert code == 0, err
    targets = api.targets(api.TargetsRequest())
    assert json.loads(out) == targets.to_json() and _via_json(targets) == targets
    assert {row.name for row in targets.rows} >= {"x86-cpu", "intel-cpu", "android-arm64", "jetson-nano"}

    code, out, err = run_cli("inspect", model, "--json")
    assert code == 0, err
    inspected = api.inspect(api.InspectRequest(str(model)))
    assert _via_json(inspected) == inspected
    assert json.loads(out)["params"] == inspected.report["params"] and "fit" not in json.loads(out)


def test_unknown_target_of_an_artifact_is_an_error_not_default_gates(tmp_path: Path, run_cli) -> None:
    """Host verify of an artifact built for a user profile: its gates apply; without the profile's
    directory the command says where to point it instead of using default gates."""
    model, _, val, _ = write_model_and_sets(tmp_path, "conv")
    targets = write_target(
        tmp_path / "targets", "strict-cpu", precisions=["fp32"], fidelity={"min_cosine": 1.01}
    )
    # --task raw: the profile's min_cosine judges (a classifier would be judged by top-1 agreement)
    more = ["--targets-dir", targets, "--task", "raw"]
    printed = export_ok(run_cli, model, "strict-cpu", out=tmp_path / "out", more=more)
    artifact = printed["artifact"]
    code, _, err = run_cli("verify", artifact, "--val", val)
    assert code == 2 and "unknown target 'strict-cpu'" in err and "--targets-dir" in err, err
    code, _, err = run_cli("verify", artifact, "--val", val, "--targets-dir", targets)
    assert code == 1 and "cosine" in err and "< 1.01" in err, err


def test_importing_the_cli_loads_no_onnx_numpy_or_backend() -> None:
    heavy = ("onnx", "numpy", "onnxruntime", "tensorflow", "openvino", "tensorrt", "onnx2tf", "nncf", "torch")
    code = (
        "import json, sys\n"
        "import edgekit.cli\n"
        "from edgekit.cli import cli, run\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "codes = [run([*path, '--help']) for path in ([], *([c] for c in cli.commands), "
        "*(['devices', c] for c in cli.commands['devices'].commands))]\n"
        "loaded |= {m.split('.')[0] for m in sys.modules}\n"
        f"print(json.dumps({{'heavy': sorted(loaded & set({heavy!r})), 'codes': codes}}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [] and set(result["codes"]) == {0}
    assert "Memory estimate: runtime memory =" in proc.stdout  # inspect's epilog, without onnx
