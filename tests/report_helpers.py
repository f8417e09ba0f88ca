"""Helpers for the report tests: real artifacts (tests/artifacts.py) timed by the real agent through
the local transport, and edits of their manifests for the states a report must show."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.artifacts import make_artifact


def artifact(directory: Path, **manifest: Any) -> Path:
    """A tiny ONNX artifact whose manifest gets `manifest` merged in (precision, fidelity, size...)."""
    width = manifest.pop("width", 16)
    depth = manifest.pop("depth", 2)
    art = make_artifact(directory, width=width, depth=depth)
    data = json.loads((art / "manifest.json").read_text())
    data.update(manifest)
    data.setdefault("name", directory.name)
    (art / "manifest.json").write_text(json.dumps(data, indent=2))
    return art


def fidelity(passed: bool, cosine: float, accuracy: float, reference: float = 99.0) -> dict[str, Any]:
    return {
        "where": "host",
        "samples": 100,
        "passed": passed,
        "outputs": [{"name": "y", "cosine": cosine, "top1_agreement": 98.0}],
        "accuracy_reference": reference,
        "accuracy_artifact": accuracy,
        "accuracy_drop": reference - accuracy,
        "failures": [] if passed else [f"y: cosine {cosine} < 0.99"],
    }


def bench(arts: list[Path], results: Path, work: Path, **settings: Any) -> list[dict[str, Any]]:
    """Time `arts` on this machine with the device agent (local transport); append to `results`."""
    from edgekit import runner
    from edgekit.inventory import load_devices

    devices = load_devices(None)
    devices["local"].workdir = str(work)
    jobs, _ = runner.plan(runner.load_artifacts(arts), devices, ["local"])
    options = {"iterations": 60, "warmup": 5, "threads": 1}
    options.update(settings)
    return asyncio.run(runner.run_bench(jobs, runner.BenchSettings(**options), results))


def append(results: Path, record: dict[str, Any]) -> None:
    with open(results, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def failed_record(art: Path, device: str, status: str, error: str) -> dict[str, Any]:
    """A record as the runner writes one for a run that failed or was skipped."""
    from edgekit import runner
    from edgekit.inventory import Device

    job = runner.Job(runner.Artifact.load(art), Device(name=device, target="x86-cpu"))
    record = runner.base_record(job, runner.BenchSettings())
    record.update(status=status, error=error, error_kind=status)
    return record
