"""`verify` on this host: the artifact's outputs against its FP32 source's on a validation set."""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit import ingest, task_options
from edgekit.backends import get_backend
from edgekit.calib import CalibrationReader, CalibrationSet, InputInfo
from edgekit.errors import BadInput
from edgekit.fidelity import FidelityReport, compare
from edgekit.manifest import MANIFEST, read_manifest, write_json_atomic
from edgekit.onnx_run import cpu_session, run_chunks
from edgekit.records import PerLayerRecord, Progress, VerifyRequest, noop
from edgekit.targets import Gates, gates_for_artifact

if TYPE_CHECKING:
    from edgekit.fidelity import TaskSpec


def reference_outputs(
    model_path: Path, data: CalibrationReader, progress: Progress = noop
) -> dict[str, np.ndarray]:
    """FP32 outputs of the source model through onnxruntime, stacked over samples."""
    try:
        session = cpu_session(model_path)
    except Exception:  # noqa: BLE001 - models onnxruntime rejects as-is run after ingest's repairs
        prepared = ingest.prepare(model_path, ingest.PrepareOptions(simplify=False))
        session = cpu_session(prepared.path)
    chunks = run_chunks(session, data.feeds(1))
    return {n: data.stack(c) for n, c in chunks.items()}


def artifact_outputs(runner: Any, data: CalibrationReader) -> dict[str, np.ndarray]:
    chunks: dict[str, list[np.ndarray]] = {}
    for feed in data.feeds(1):
        for name, value in runner.infer(feed).items():
            chunks.setdefault(name, []).append(np.asarray(value))
    return {n: data.stack(c) for n, c in chunks.items()}


def verify_dir(
    artifact_dir: Path,
    manifest: Mapping[str, Any],
    val: CalibrationReader,
    reference_model: Path,
    gates: Gates,
    task: TaskSpec | None = None,
    metric: Callable[..., Any] | None = None,
) -> FidelityReport:
    """The artifact run here against its FP32 source, judged by `task` (None: the manifest's, else the
    model's) and the user's `metric`; the report names the runtime, precision and device."""
    backend = get_backend(manifest["backend"])
    backend.require()
    if task is None:
        task = task_options.task_of(manifest, None, reference_model)
    reference = reference_outputs(reference_model, val)
    with backend.open_runner(artifact_dir, manifest) as runner:
        actual = artifact_outputs(runner, val)
    missing = [n for n in reference if n not in actual]
    if missing:
        raise BadInput(f"the artifact does not produce output(s) {', '.join(missing)} of the reference model")
    report = compare(reference, actual, val.labels, gates, task=task, metric=metric, boxes=val.boxes)
    # a runner that names what it ran (TensorRT's: the engine, or onnxruntime on the bundle's ONNX) wins
    report = stamped(
        report, manifest, runner.runtime or host_runtime(manifest), f"this host ({platform.machine()})"
    )
    if runner.precision:
        report.precision = runner.precision
    return report


def host_runtime(manifest: Mapping[str, Any]) -> str:
    """The runtime that ran the artifact here, with the numerics it used for Q/DQ models."""
    backend = str(manifest.get("backend"))
    toolchain = manifest.get("toolchain") or {}
    version = toolchain.get(backend) or next(
        (v for k, v in toolchain.items() if k != "edgekit" and k in backend), None
    )
    text = f"{backend} {version}" if version else backend
    numerics = (manifest.get("numerics") or {}).get("verify")
    return f"{text}, {numerics}" if numerics else text


def stamped(report: FidelityReport, manifest: Mapping[str, Any], runtime: str, device: str) -> FidelityReport:
    """The report with the runtime, precision and device that produced it."""
    report.runtime = runtime
    report.precision = str(manifest.get("effective_precision") or manifest.get("precision"))
    report.device = device
    return report


def fidelity_json(report: FidelityReport) -> dict[str, Any]:
    """The report's JSON with the runtime and precision that produced it."""
    out = report.to_json()
    for key in ("runtime", "precision"):
        if out.get(key) is None and getattr(report, key, None) is not None:
            out[key] = getattr(report, key)
    return out


def not_verified_here(exc: Exception, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's `verification` entry for an artifact this host cannot run as its device does."""
    return {
        "status": "not verified here",
        "reason": str(exc),
        "precision": manifest.get("effective_precision") or manifest.get("precision"),
        "backend": manifest.get("backend"),
    }


def verify(req: VerifyRequest, progress: Progress = noop) -> FidelityReport:
    """Verify an exported artifact against its FP32 source on a validation set on this host
    (`edgekit.api.verify` sends a request naming a `device` to the device instead)."""
    if req.device is not None:
        raise BadInput(f"verifying on device {req.device} goes through edgekit.api.verify")
    artifact_dir = Path(req.artifact_dir).expanduser()
    manifest = read_manifest(artifact_dir)
    reference_model = reference_path(manifest, req.reference)
    val = load_validation(req.val, req.val_samples, manifest)
    gates = gates_for_artifact(manifest, req.gate_overrides, req.targets_dirs)
    task = task_options.task_of(manifest, req.task, reference_model)
    metric = task_options.metric_of(manifest, req.metric)
    progress(f"running {len(val)} samples through {artifact_dir.name} and its FP32 source")
    report = verify_dir(artifact_dir, manifest, val, reference_model, gates, task, metric)
    if req.write:
        manifest["fidelity"] = fidelity_json(report)
        manifest["validation"] = val.record()
        write_json_atomic(artifact_dir / MANIFEST, manifest)
    return report


def verify_layers(req: VerifyRequest, progress: Progress = noop) -> PerLayerRecord:
    """Per-layer error of an ONNX artifact against its FP32 source on the validation set (on this
    host), with the export's INT8 sensitivity ranking; written to the artifact's per_layer.json."""
    from edgekit.int8 import layers

    artifact_dir = Path(req.artifact_dir).expanduser()
    manifest = read_manifest(artifact_dir)
    record = PerLayerRecord(
        str(artifact_dir),
        method="relative noise energy ||artifact - fp32||^2 / ||fp32||^2 of each node's output as the next "
        "node reads it; added_error subtracts the worst error of its inputs",
        sensitivity=layers.export_sensitivity(artifact_dir),
    )
    entry = layers.onnx_entry(artifact_dir, manifest)
    if entry is None:
        record.notes.append(
            f"per-layer comparison needs an ONNX artifact; {manifest['backend']}'s {manifest.get('entry')} "
            "is compared as a whole"
            + ("; the INT8 search's ranking from the export is shown" if record.sensitivity else "")
        )
    else:
        val = load_validation(req.val, req.val_samples, manifest)
        progress(f"comparing every layer of {entry.name} with FP32 on {len(val)} samples")
        # exact Q/DQ semantics where its runner verifies so: TensorRT, another architecture's ORT target
        numerics = (manifest.get("numerics") or {}).get("kind")
        reference_qdq = manifest["backend"] == "tensorrt" or numerics == "reference"
        record.layers = layers.per_layer(
            entry, reference_path(manifest, req.reference), val, manifest.get("name_map") or {}, reference_qdq
        )
        if not record.layers:
            record.notes.append("the artifact shares no intermediate tensor name with its source")
    if req.write:
        write_json_atomic(artifact_dir / "per_layer.json", record.to_json())
    return record


def load_validation(path: str | Path, samples: int | None, manifest: Mapping[str, Any]) -> CalibrationReader:
    """The validation set, bound to the source model's inputs recorded in the manifest."""
    return CalibrationSet.load(path, samples).validate(source_inputs(manifest), "validation set")


def source_inputs(manifest: Mapping[str, Any]) -> list[InputInfo]:
    return infos(manifest["source"]["inputs"])


def infos(items: Sequence[Mapping[str, Any]]) -> list[InputInfo]:
    return [InputInfo(i["name"], tuple(i["shape"]), np.dtype(i["dtype"])) for i in items]


def reference_path(manifest: Mapping[str, Any], reference: str | Path | None) -> Path:
    """The FP32 source: `reference` when given, else the manifest's path if the file is unchanged."""
    if reference is not None:
        path = Path(reference).expanduser()
        if not path.exists():
            raise BadInput(f"reference model not found: {path}")
        return path
    recorded = Path(manifest["source"].get("path", ""))
    if recorded.is_file() and ingest.model_sha256(recorded) == manifest["source"]["sha256"]:
        return recorded
    raise BadInput(
        f"the FP32 source model {manifest['source'].get('name')} is not at {recorded} (or changed since export); "
        "pass it with --reference MODEL"
    )
