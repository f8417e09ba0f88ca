"""The Python API behind the CLI: the same verbs (export, verify, bench_local, ...), no printing."""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import __version__, ingest, runner
from edgekit import targets as target_profiles
from edgekit.backends import get_backend
from edgekit.backends.base import ExportJob, ExportOptions
from edgekit.calib import CalibrationReader, CalibrationSet, InputInfo
from edgekit.errors import BadInput
from edgekit.fidelity import FidelityReport, compare
from edgekit.manifest import MANIFEST, read_manifest, replace_dir, timestamp, write_json_atomic
from edgekit.targets import Gates, TargetProfile

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def _noop(_: str) -> None:
    pass


@dataclass
class ExportRequest:
    model: str | Path
    target: str
    precision: str | None = None
    calib: str | Path | None = None
    val: str | Path | None = None
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    out_dir: str | Path = "edgekit-out"
    calib_samples: int | None = None
    val_samples: int | None = None
    simplify: bool = True
    options: ExportOptions = field(default_factory=ExportOptions)
    gate_overrides: dict[str, float] = field(default_factory=dict)
    targets_dirs: Sequence[str | Path] = ()


@dataclass
class ExportOutcome:
    path: Path
    manifest: dict[str, Any]
    fidelity: FidelityReport | None = None


def gates_for(target: TargetProfile, overrides: Mapping[str, float | None]) -> Gates:
    values = dict(target.fidelity.to_json())
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Gates(**values)


def artifact_name(model: Path, target: str, precision: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", model.stem) or "model"
    return f"{stem}.{target}.{precision}"


def export(req: ExportRequest, progress: Progress = _noop) -> ExportOutcome:
    """Prepare, export, record and (with a validation set) verify one artifact, atomically."""
    if req.precision == "auto":  # every precision the target offers; the fastest that passes
        from edgekit.int8.auto import export_auto

        return export_auto(req, progress)
    target = target_profiles.get(req.target, req.targets_dirs)
    backend = get_backend(target.backend)
    backend.require()
    backend.options_of(req.options)  # `--option`s checked (typed, unknown keys refused) before any work
    precision = req.precision or target.default_precision
    if precision not in target.precisions:
        raise BadInput(
            f"target '{target.name}' does not offer {precision}; it offers {', '.join(target.precisions)}"
        )
    model_path = Path(req.model).expanduser()
    calib = CalibrationSet.load(req.calib, req.calib_samples) if req.calib else None
    val = CalibrationSet.load(req.val, req.val_samples) if req.val else None
    if precision == "int8" and calib is None and val is not None and not req.options.dynamic_int8:
        raise BadInput("--int8 needs --calib SET (the validation set is never used to calibrate)")

    progress("preparing model")
    prepared = ingest.prepare(
        model_path,
        ingest.PrepareOptions(
            input_shapes=dict(req.input_shapes),
            static_shapes=backend.needs_static_shapes,
            min_opset=backend.min_opset if precision == "int8" else None,
            max_opset=target.opset_max,
            simplify=req.simplify,
            name_pattern=backend.name_pattern,
        ),
    )
    source_inputs = source_io(prepared)[0]
    calib_reader = calib.validate(source_inputs, "calibration set") if calib is not None else None
    val_reader = val.validate(source_inputs, "validation set") if val is not None else None
    to_prepared = {prepared.source_name(i.name): i.name for i in prepared.inputs}
    job_calib = calib_reader.renamed(to_prepared) if calib_reader is not None else None
    job_val = val_reader.renamed(to_prepared) if val_reader is not None else None

    out_root = Path(req.out_dir).expanduser()
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / artifact_name(model_path, target.name, precision)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=out_root))
    try:
        progress(f"exporting {precision} for {target.name} ({backend.name})")
        started = time.perf_counter()
        gates = gates_for(target, req.gate_overrides)
        job = ExportJob(prepared, target, precision, tmp, job_calib, req.options, job_val, gates=gates)
        result = backend.export(job)
        export_s = time.perf_counter() - started
        manifest = _manifest(req, target, precision, prepared, result, tmp, calib, export_s)
        write_json_atomic(tmp / MANIFEST, manifest)
        report = None
        if val_reader is not None:
            progress(f"verifying on {len(val_reader)} samples")
            report = verify_dir(tmp, manifest, val_reader, model_path, gates_for(target, req.gate_overrides))
            manifest["fidelity"] = report.to_json()
            manifest["validation"] = val_reader.record()
            write_json_atomic(tmp / MANIFEST, manifest)
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportOutcome(final, manifest, report)


def source_io(prepared: ingest.PreparedModel) -> tuple[list[InputInfo], list[InputInfo]]:
    """The prepared model's I/O under the user's original names (shapes as fixed by ingest)."""
    return (
        [InputInfo(prepared.source_name(i.name), i.shape, i.dtype) for i in prepared.inputs],
        [InputInfo(prepared.source_name(o.name), o.shape, o.dtype) for o in prepared.outputs],
    )


def _io_json(infos: Sequence[InputInfo]) -> list[dict[str, Any]]:
    return [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype.name} for i in infos]


def _manifest(
    req: ExportRequest,
    target: TargetProfile,
    precision: str,
    prepared: ingest.PreparedModel,
    result: Any,
    directory: Path,
    calib: CalibrationSet | None,
    export_s: float,
) -> dict[str, Any]:
    backend = get_backend(target.backend)
    files = backend.file_records(directory, result.entry)
    artifact_bytes = backend.deployable_bytes(directory, result.entry)
    src_inputs, src_outputs = source_io(prepared)
    source = prepared.record()
    source["path"] = str(prepared.source_path)
    source["inputs"] = _io_json(src_inputs)
    source["outputs"] = _io_json(src_outputs)
    uses_calib = backend.needs_calibration(precision, req.options)
    return {
        "schema": 1,
        "edgekit_version": __version__,
        "created": timestamp(),
        "name": artifact_name(prepared.source_path, target.name, precision),
        "source": source,
        "target": target.name,
        "backend": target.backend,
        "precision": precision,
        "effective_precision": result.effective_precision or precision,
        "entry": result.entry,
        "files": files,
        "size": {
            "source_bytes": prepared.source_bytes,
            "artifact_bytes": artifact_bytes,
            "compression_ratio": round(prepared.source_bytes / artifact_bytes, 3) if artifact_bytes else None,
        },
        "inputs": [s.to_json() for s in result.inputs],
        "outputs": [s.to_json() for s in result.outputs],
        "calibration": calib.record(req.options.calib_method) if (calib is not None and uses_calib) else None,
        "toolchain": {"edgekit": __version__, **result.toolchain},
        "options": {
            "calib_method": req.options.calib_method if uses_calib else None,
            "dynamic_int8": req.options.dynamic_int8,
            "io_dtype": req.options.io_dtype,
            "ignore": req.options.ignore,
            "input_shapes": req.input_shapes,
            "simplify": req.simplify,
        },
        "threads": req.options.threads,
        "name_map": prepared.name_map,
        "details": result.details,
        "export_seconds": round(export_s, 3),
        "fidelity": None,
        "warnings": prepared.warnings + result.warnings,
    }


# ---- verification ------------------------------------------------------------------------------
def reference_outputs(
    model_path: Path, data: CalibrationReader, progress: Progress = _noop
) -> dict[str, np.ndarray]:
    """FP32 outputs of the source model through onnxruntime, stacked over samples."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - models onnxruntime rejects as-is run after ingest's repairs
        prepared = ingest.prepare(model_path, ingest.PrepareOptions(simplify=False))
        session = ort.InferenceSession(str(prepared.path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in data.feeds(1):
        for name, value in zip(names, session.run(names, feed), strict=True):
            chunks[name].append(np.asarray(value))
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
) -> FidelityReport:
    backend = get_backend(manifest["backend"])
    backend.require()
    reference = reference_outputs(reference_model, val)
    with backend.open_runner(artifact_dir, manifest) as runner:
        actual = artifact_outputs(runner, val)
    missing = [n for n in reference if n not in actual]
    if missing:
        raise BadInput(f"the artifact does not produce output(s) {', '.join(missing)} of the reference model")
    return compare(reference, actual, val.labels, gates)


def verify(
    artifact_dir: str | Path,
    val_path: str | Path,
    *,
    reference: str | Path | None = None,
    samples: int | None = None,
    gate_overrides: Mapping[str, float | None] | None = None,
    targets_dirs: Sequence[str | Path] = (),
    write: bool = True,
) -> tuple[FidelityReport, dict[str, Any]]:
    """Verify an exported artifact against its FP32 source on a validation set."""
    artifact_dir = Path(artifact_dir).expanduser()
    manifest = read_manifest(artifact_dir)
    reference_model = _reference_path(manifest, reference)
    val = CalibrationSet.load(val_path, samples).validate(
        _infos(manifest["source"]["inputs"]), "validation set"
    )
    try:
        target = target_profiles.get(manifest["target"], targets_dirs)
        base = gates_for(target, gate_overrides or {})
    except BadInput:
        base = Gates(**{k: v for k, v in (gate_overrides or {}).items() if v is not None})
    report = verify_dir(artifact_dir, manifest, val, reference_model, base)
    if write:
        manifest["fidelity"] = report.to_json()
        manifest["validation"] = val.record()
        write_json_atomic(artifact_dir / MANIFEST, manifest)
    return report, manifest


def _infos(items: Sequence[Mapping[str, Any]]) -> list[InputInfo]:
    return [InputInfo(i["name"], tuple(i["shape"]), np.dtype(i["dtype"])) for i in items]


def _reference_path(manifest: Mapping[str, Any], reference: str | Path | None) -> Path:
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


# ---- local timing ------------------------------------------------------------------------------
def bench_local(
    artifact_dir: str | Path, iterations: int = 100, warmup: int = 10, threads: int | None = None
) -> dict[str, Any]:
    """Time an artifact on this machine through the same path as `edgekit bench --device local` (the
    runner, the local transport and the device agent's timing loop and statistics)."""
    return runner.bench_local(artifact_dir, iterations=iterations, warmup=warmup, threads=threads)


# ---- fleet benchmark and on-device fidelity ------------------------------------------------------
@dataclass
class BenchOutcome:
    records: list[dict[str, Any]]
    warnings: list[str]
    results: Path
    fidelity: dict[int, FidelityReport] = field(default_factory=dict)  # id(record) -> report


def bench(
    artifact_dirs: Sequence[str | Path],
    devices: Mapping[str, Any],
    names: Sequence[str],
    settings: runner.BenchSettings,
    results: str | Path = "results.jsonl",
    *,
    resume: bool = False,
    concurrency: int = 4,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> BenchOutcome:
    """Run artifacts on devices (matched by target, or the named ones) through the device agent;
    with `settings.validation`, compute on-device fidelity against the FP32 source run here."""
    import asyncio

    artifacts = runner.load_artifacts(artifact_dirs)
    jobs, warnings = runner.plan(artifacts, dict(devices), list(names) or None)
    if not jobs:
        raise BadInput("nothing to run: no device matches the artifacts' targets; name devices with --device")
    val = None
    bound: dict[str, CalibrationReader] = {}  # artifact sha256 -> the set bound to its source inputs
    if settings.validation is not None:
        val = CalibrationSet.load(settings.validation)
        for artifact in artifacts:
            bound[artifact.sha256] = val.validate(
                _infos(artifact.manifest["source"]["inputs"]), "validation set"
            )
    results = Path(results).expanduser()
    records = asyncio.run(runner.run_bench(jobs, settings, results, resume, concurrency, progress))
    outcome = BenchOutcome(records, warnings, results)
    if val is not None:
        references: dict[str, dict[str, np.ndarray]] = {}
        for record in records:
            if record["status"] != "ok" or not record.get("outputs_file"):
                continue
            art = next(a for a in artifacts if a.sha256 == record["artifact"]["sha256"])
            model = _reference_path(art.manifest, None)
            if str(model) not in references:
                references[str(model)] = reference_outputs(model, bound[art.sha256])
            with np.load(record["outputs_file"]) as data:
                actual = {k: data[k] for k in data.files}
            gates = _gates_for_manifest(art.manifest, {})
            report = compare(
                references[str(model)], actual, val.labels, gates, where=record["device"]["name"]
            )
            outcome.fidelity[id(record)] = report
    return outcome


def _gates_for_manifest(manifest: Mapping[str, Any], overrides: Mapping[str, float | None]) -> Gates:
    try:
        return gates_for(target_profiles.get(manifest["target"]), overrides)
    except BadInput:
        return Gates(**{k: v for k, v in overrides.items() if v is not None})


def verify_on_device(
    artifact_dir: str | Path,
    val_path: str | Path,
    devices: Mapping[str, Any],
    device: str,
    *,
    reference: str | Path | None = None,
    samples: int | None = None,
    gate_overrides: Mapping[str, float | None] | None = None,
) -> FidelityReport:
    """Run the validation set through the artifact on a device (the agent returns the outputs) and
    compare with the FP32 source run here: the same metrics as host verify."""
    import asyncio

    artifact_dir = Path(artifact_dir).expanduser()
    manifest = read_manifest(artifact_dir)
    reference_model = _reference_path(manifest, reference)
    val = CalibrationSet.load(val_path, samples).validate(
        _infos(manifest["source"]["inputs"]), "validation set"
    )
    artifacts = runner.load_artifacts([artifact_dir])
    jobs, _ = runner.plan(artifacts, dict(devices), [device])
    with tempfile.TemporaryDirectory(prefix="edgekit-verify-") as tmp:
        subset = Path(tmp) / "val.npz"
        np.savez(subset, **val.arrays)  # the exact samples used here, subset included
        settings = runner.BenchSettings(iterations=1, warmup=0, validation=subset)
        records = asyncio.run(runner.run_bench(jobs, settings, Path(tmp) / "results.jsonl"))
        record = records[0]
        if record["status"] != "ok":
            from edgekit.errors import Unreachable

            raise Unreachable(f"{device}: {record.get('error') or 'the run failed'}")
        with np.load(record["outputs_file"]) as data:
            actual = {k: data[k] for k in data.files}
    gates = _gates_for_manifest(manifest, gate_overrides or {})
    return compare(reference_outputs(reference_model, val), actual, val.labels, gates, where=device)
