"""`bench` and `verify --device`: artifacts run on devices through the agent; `bench_local` times one
on this machine through the same path.

On-device fidelity: the FP32 reference outputs are computed here once per source model BEFORE the
run (so a missing source or a bad validation set fails before any device is touched); each record is
compared as it arrives and its `fidelity` is written into results.jsonl with it.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import runner, task_options
from edgekit.calib import CalibrationSet
from edgekit.errors import BadInput, Unreachable
from edgekit.fidelity import FidelityReport, compare
from edgekit.inventory import load_inventory
from edgekit.manifest import read_manifest
from edgekit.records import BenchProgress, BenchRecord, BenchRequest, Progress, VerifyRequest, noop
from edgekit.services import verification
from edgekit.services.verification import (
    load_validation,
    reference_outputs,
    reference_path,
    source_inputs,
    stamped,
)
from edgekit.targets import Gates, gates_for_artifact


def _device_outputs(record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    with np.load(record["outputs_file"]) as data:
        return {k: data[k] for k in data.files}


class _OnDeviceFidelity:
    """Per artifact: the reference outputs (shared per source model) and the gates, prepared before
    the run; `__call__(record)` adds `record["fidelity"]` (the runner calls it before writing)."""

    def __init__(self, artifacts: list[runner.Artifact], req: BenchRequest) -> None:
        assert req.val is not None
        by_model: dict[str, dict[str, np.ndarray]] = {}
        val = CalibrationSet.load(req.val)
        self.labels = val.labels
        self.boxes = val.boxes
        self.expected: dict[str, _Expected] = {}
        for art in artifacts:
            bound = val.validate(source_inputs(art.manifest), f"validation set (for {art.name})")
            gates = gates_for_artifact(art.manifest, req.gate_overrides, req.targets_dirs)
            model = reference_path(art.manifest, None)
            if str(model) not in by_model:
                by_model[str(model)] = reference_outputs(model, bound)
            # judged by the task recorded at export (--task overrides) and the user's metric
            task = task_options.task_of(art.manifest, req.task, model)
            metric = task_options.metric_of(art.manifest, req.metric)
            self.expected[art.sha256] = _Expected(by_model[str(model)], gates, task, metric, art.manifest)

    def __call__(self, record: dict[str, Any]) -> None:
        if record.get("status") != "ok" or not record.get("outputs_file"):
            return
        expected = self.expected[record["artifact"]["sha256"]]
        where = record["device"]["name"]
        try:
            report = compare(
                expected.reference,
                _device_outputs(record),
                self.labels,
                expected.gates,
                where=where,
                task=expected.task,
                metric=expected.metric,
                boxes=self.boxes,
            )
        except (BadInput, ValueError, KeyError, OSError) as exc:
            report = FidelityReport(
                samples=0, outputs=[], failures=[f"outputs not comparable: {exc}"], where=where
            )
        record["fidelity"] = device_stamped(report, expected.manifest, record).to_json()


@dataclass
class _Expected:
    reference: dict[str, np.ndarray]
    gates: Gates
    task: Any
    metric: Any
    manifest: Mapping[str, Any]


def device_stamped(
    report: FidelityReport, manifest: Mapping[str, Any], record: Mapping[str, Any]
) -> FidelityReport:
    """The report with the runtime the agent ran on the device (its reported version), the precision
    and the device."""
    device = record.get("device") or {}
    environment = device.get("environment") or {}
    runtimes = environment.get("runtimes") if isinstance(environment, Mapping) else None
    ran = [f"{k} {v}" for k, v in (runtimes or {}).items() if k != "numpy"]
    runtime = ran[0] if ran else str(manifest.get("backend"))
    if environment.get("machine"):
        runtime += f" on {environment['machine']}"
    name = str(device.get("name", "device"))
    target = device.get("target")
    return stamped(report, manifest, runtime, f"{name} ({target})" if target else name)


def bench(req: BenchRequest, progress: BenchProgress | None = None) -> BenchRecord:
    """Run artifacts on devices (matched by target, or the named ones) through the device agent.
    Split pipelines run through `bench_pipeline` (edgekit.api.splitting)."""
    from edgekit.split.pipeline import is_pipeline_dir

    if any(is_pipeline_dir(a) for a in req.artifacts):
        raise BadInput(
            "a split pipeline directory is benchmarked with api.bench_pipeline (the CLI chooses it)"
        )
    artifacts = runner.load_artifacts(req.artifacts, req.targets_dirs)
    jobs, warnings = runner.plan(artifacts, load_inventory(req.devices_file), req.devices or None)
    if not jobs:
        raise BadInput("nothing to run: no device matches the artifacts' targets; name devices with --device")
    jobs = _with_shapes(jobs, req.input_shapes)
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


def verify(req: VerifyRequest, progress: Progress = noop) -> FidelityReport:
    """Verify an exported artifact against its FP32 source on a validation set: here, or on
    `req.device` (the agent runs the set there; the outputs are compared here)."""
    if req.device is not None:
        return verify_on_device(req, progress)
    return verification.verify(req, progress)


def _with_shapes(jobs: list[runner.Job], specs: list[str]) -> list[runner.Job]:
    """One job per stated shape set (`--input-shape` given more than once), each with every input's
    shape resolved: a dynamic dimension nobody stated is BadInput naming it (never a silent 1)."""
    import dataclasses

    from edgekit.runner.shapes import parse_shape_sets, resolve

    sets = parse_shape_sets(specs)
    out = []
    for job in jobs:
        if not specs and runner.is_decoder(job.artifact.manifest):
            out.append(job)  # the decode loop states its shapes: --prompt and --context lengths
            continue
        for given in sets:
            shapes = resolve(job.artifact.manifest["inputs"], given)
            out.append(dataclasses.replace(job, shapes=shapes, warnings=list(job.warnings)))
    return out


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
    task = task_options.task_of(manifest, req.task, reference_model)
    metric = task_options.metric_of(manifest, req.metric)
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
    report = compare(
        reference, actual, val.labels, gates, where=req.device, task=task, metric=metric, boxes=val.boxes
    )
    return device_stamped(report, manifest, record)


# ---- local timing ------------------------------------------------------------------------------
def bench_local(
    artifact_dir: str | Path,
    iterations: int = 100,
    warmup: int = 10,
    threads: int | None = None,
    shapes: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """Time an artifact on this machine through the same path as `edgekit bench --device local` (the
    runner, the local transport and the device agent's timing loop and statistics); `shapes` states
    the shape of inputs with dynamic dims (by input name)."""
    return runner.bench_local(
        artifact_dir, iterations=iterations, warmup=warmup, threads=threads, shapes=shapes
    )
