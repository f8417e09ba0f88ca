"""bench and verify --device on a `local` transport device (the real agent in a subprocess here):
on-device fidelity lands in results.jsonl, and a user profile's gates apply on devices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import assert_one_line, export_ok, local_device, write_devices, write_target
from models import write_model_and_sets


@pytest.fixture
def setup(tmp_path: Path, run_cli) -> dict[str, Path]:
    """A conv model exported (fp32) for x86-cpu and for a user profile `strict-cpu` whose gate no
    artifact can pass (cosine > 1), and an inventory with one local device per target."""
    model, _, val, _ = write_model_and_sets(tmp_path, "conv")
    targets = write_target(
        tmp_path / "targets",
        "strict-cpu",
        precisions=["fp32"],
        fidelity={"min_cosine": 1.01, "min_slice_cosine": 1.01},
    )
    plain = export_ok(run_cli, model, "x86-cpu", "fp32", out=tmp_path / "out")
    strict = export_ok(run_cli, model, "strict-cpu", out=tmp_path / "out", more=["--targets-dir", targets])
    devices = write_devices(
        tmp_path / "devices.toml",
        local_device("here", "x86-cpu", tmp_path / "work-here", threads=1),
        local_device("strict", "strict-cpu", tmp_path / "work-strict", threads=1),
    )
    return {
        "val": val,
        "targets": targets,
        "devices": devices,
        "plain": Path(plain["artifact"]),
        "strict": Path(strict["artifact"]),
        "tmp": tmp_path,
    }


def _bench(run_cli, setup: dict[str, Path], artifact: str, device: str, results: Path, *more: object):
    return run_cli(
        "bench",
        setup[artifact],
        "--device",
        device,
        "--devices",
        setup["devices"],
        "--val",
        setup["val"],
        "--iterations",
        "3",
        "--warmup",
        "0",
        "-o",
        results,
        "--json",
        *more,
    )


def test_on_device_fidelity_is_written_into_results(setup, run_cli) -> None:
    results = setup["tmp"] / "results.jsonl"
    code, out, err = _bench(run_cli, setup, "plain", "here", results)
    assert code == 0, err
    (printed,) = json.loads(out)
    (on_disk,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert on_disk == printed  # the JSON printed is the record written
    fidelity = on_disk["fidelity"]
    assert on_disk["status"] == "ok" and fidelity["where"] == "here" and fidelity["passed"]
    assert fidelity["samples"] == on_disk["validation_samples"] > 0
    assert fidelity["outputs"] and all(o["cosine"] >= 0.999 for o in fidelity["outputs"])


def test_profile_gates_apply_on_devices(setup, run_cli, monkeypatch) -> None:
    tmp = setup["tmp"]
    results = tmp / "results.jsonl"
    code, out, err = _bench(run_cli, setup, "strict", "strict", results, "--targets-dir", setup["targets"])
    assert_one_line(code, err, 1, "on-device fidelity failed for 1 run(s)")
    (record,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert record["status"] == "ok" and not record["fidelity"]["passed"]
    assert record["fidelity"]["gates"]["min_cosine"] == 1.01 and "< 1.01" in record["fidelity"]["failures"][0]

    verify = [
        "verify",
        setup["strict"],
        "--val",
        setup["val"],
        "--device",
        "strict",
        "--devices",
        setup["devices"],
    ]
    code, _, err = run_cli(*verify, "--targets-dir", setup["targets"])
    assert_one_line(code, err, 1, "cosine", "< 1.01")

    # without the profile's directory: a clear error before any device runs, never default gates
    missing = tmp / "missing.jsonl"
    code, _, err = _bench(run_cli, setup, "strict", "strict", missing)
    assert_one_line(code, err, 2, "unknown target 'strict-cpu'", "--targets-dir", "EDGEKIT_TARGETS_PATH")
    assert not missing.exists()
    code, _, err = run_cli(*verify)
    assert_one_line(code, err, 2, "unknown target 'strict-cpu'", "--targets-dir")

    monkeypatch.setenv("EDGEKIT_TARGETS_PATH", str(setup["targets"]))
    code, _, err = _bench(run_cli, setup, "strict", "strict", tmp / "env.jsonl")
    assert_one_line(code, err, 1, "on-device fidelity failed")
    code, _, err = run_cli(*verify)
    assert code == 1, err
