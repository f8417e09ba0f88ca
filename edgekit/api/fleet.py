"""`bench` and `verify --device`: artifacts run on devices through the agent; a local timing loop.

On-device fidelity: the FP32 reference outputs are computed here once per source model BEFORE the
run (so a missing source or a bad validation set fails before any device is touched); each record is
compared as it arrives and its `fidelity` is written into results.jsonl with it.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import agent, runner
from edgekit.api.exporting import gates_for_artifact
from edgekit.api.records import BenchProgress, BenchRecord, BenchRequest, Progress, VerifyRequest, noop
from edgekit.api.verification import load_validation, reference_outputs, reference_path, source_inputs
from edgekit.backends import get_backend
from edgekit.calib import CalibrationSet
from edgekit.errors import BadInput, Unreachable
from edgekit.fidelity import FidelityReport, compare
from edgekit.inventory import Device, load_devices
from edgekit.manifest import read_manifest, timestamp
from edgekit.targets import Gates

DEFAULT_DEVICES = "devices.toml"


def load_inventory(devices_file: str | Path | None) -> dict[str, Device]:
    """The inventory: `devices_file`, else ./devices.toml when present, else only `local`."""
    if devices_file is None:
        return load_devices(DEFAULT_DEVICES if Path(DEFAULT_DEVICES).is_file() else None)
    if not Path(devices_file).expanduser().is_file():
        raise BadInput(f"devices file not found: {devices_file}")
    return load_devices(devices_file)


def _device_outputs(record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    with np.load(record["outputs_file"]) as data:
        return {k: data[k] for k in data.files}


class _OnDeviceFidelity:
    """Per artifact: the reference outputs (shared per source model) and the gates, prepared before
    the run; `__call__(record)` adds `record["fidelity"]` (the runner calls it before writing)."""

    def __init__(self, artifacts: list[runner.Artifact], req: BenchRequest) -> None:
        assert req.val is not None
        by_model: dict[str, dict[str, np.ndarray]] = {}
        self.val = CalibrationSet.load(req.val)
        self.expected: dict[str, tuple[dict[str, np.ndarray], Gates]] = {}
        for art in artifacts:
            self.val.validate(source_inputs(art.manifest), f"validation set (for {art.name})")
            gates = gates_for_artifact(art.manifest, req.gate_overrides, req.targets_dirs)
            model = reference_path(art.manifest, None)
            if str(model) not in by_model:
                by_model[str(model)] = reference_outputs(model, self.val)
            self.expected[art.sha256] = (by_model[str(model)], gates)

    def __call__(self, record: dict[str, Any]) -> None:
        if record.get("status") != "ok" or not record.get("outputs_file"):
            return
        reference, gates = self.expected[record["artifact"]["sha256"]]
        where = record["device"]["name"]
        try:
            report = compare(reference, _device_outputs(record), self.val.labels, gates, where=where)
        except (BadInput, ValueError, KeyError, OSError) as exc:
            report = FidelityReport(
                samples=0, outputs=[], failures=[f"outputs not comparable: {exc}"], where=where
            )
        record["fidelity"] = report.to_json()


def bench(req: BenchRequest, progress: BenchProgress | None = None) -> BenchRecord:
    """Run artifacts on devices (matched by target, or the named ones) through the device agent."""
    artifacts = runner.load_artifacts(req.artifacts)
    jobs, warnings = runner.plan(artifacts, load_inventory(req.devices_file), req.devices or None)
    if not jobs:
        raise BadInput("nothing to run: no device matches the artifacts' targets; name devices with --device")
    on_record = _OnDeviceFidelity(artifacts, req) if req.val is not None else None
    records = asyncio.run(
        runner.run_bench(
            jobs,
            req.settings(),
            Path(req.results).expanduser(),
            req.resume,
            req.concurrency,
            progress,
            on_record=on_record,
        )
    )
    return BenchRecord(records, warnings)


def verify_on_device(req: VerifyRequest, progress: Progress = noop) -> FidelityReport:
    """Run the validation set through the artifact on `req.device` (the agent returns the outputs) and
    compare with the FP32 source run here: the same metrics and gates as host verify."""
    assert req.device is not None
    artifact_dir = Path(req.artifact_dir).expanduser()
    manifest = read_manifest(artifact_dir)
    reference_model = reference_path(manifest, req.reference)
    val = load_validation(req.val, req.val_samples, manifest)
    gates = gates_for_artifact(manifest, req.gate_overrides, req.targets_dirs)
    jobs, _ = runner.plan(
        runner.load_artifacts([artifact_dir]), load_inventory(req.devices_file), [req.device]
    )
    progress(f"computing the FP32 reference on {len(val)} samples")
    reference = reference_outputs(reference_model, val)
    with tempfile.TemporaryDirectory(prefix="edgekit-verify-") as tmp:
        subset = Path(tmp) / "val.npz"
        arrays: dict[str, Any] = dict(val.arrays)
        np.savez(subset, **arrays)  # the exact samples used here, subset included
        settings = runner.BenchSettings(iterations=1, warmup=0, validation=subset)
        progress(f"running {len(val)} samples on {req.device}")
        (record,) = asyncio.run(runner.run_bench(jobs, settings, Path(tmp) / "results.jsonl"))
        if record["status"] != "ok":
            raise Unreachable(f"{req.device}: {record.get('error') or 'the run failed'}")
        actual = _device_outputs(record)
    return compare(reference, actual, val.labels, gates, where=req.device)


# ---- local timing loop -------------------------------------------------------------------------
def random_feed(manifest: Mapping[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feed = {}
    for spec in manifest["source"]["inputs"]:
        shape = [d if isinstance(d, int) else 1 for d in spec["shape"]]
        dtype = np.dtype(spec["dtype"])
        if np.issubdtype(dtype, np.floating):
            feed[spec["name"]] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feed[spec["name"]] = rng.integers(0, 2, shape).astype(dtype)
        else:
            feed[spec["name"]] = rng.integers(0, 10, shape).astype(dtype)
    return feed


def bench_local(
    artifact_dir: str | Path, iterations: int = 100, warmup: int = 10, threads: int | None = None
) -> dict[str, Any]:
    """An in-process timing loop on this machine with the host runner (the agent measures devices);
    the statistics are the agent's, so host and device numbers are computed alike."""
    artifact_dir = Path(artifact_dir).expanduser()
    manifest = dict(read_manifest(artifact_dir))
    if threads:
        manifest["threads"] = threads
    backend = get_backend(manifest["backend"])
    backend.require()
    feed = random_feed(manifest)
    started = time.perf_counter()
    with backend.open_runner(artifact_dir, manifest) as host_runner:
        init_ms = (time.perf_counter() - started) * 1000.0
        host_runner.infer(feed)
        first_ms = host_runner.last_ms
        for _ in range(warmup):
            host_runner.infer(feed)
        times = []
        for _ in range(iterations):
            host_runner.infer(feed)
            times.append(host_runner.last_ms)
    stats = agent.latency_stats(times)
    return {
        "artifact": {
            "name": manifest.get("name"),
            "target": manifest["target"],
            "precision": manifest["precision"],
        },
        "device": {"name": "local", "host": os.uname().nodename},
        "settings": {"warmup": warmup, "iterations": iterations, "threads": threads, "input": "random"},
        "latency_ms": stats,
        "throughput_fps": 1000.0 / stats["mean"] if stats["mean"] > 0 else None,
        "init_ms": init_ms,
        "first_inference_ms": first_ms,
        "status": "ok",
        "timestamp": timestamp(),
    }
