"""`export`: prepare, export, record and (with a validation set) verify one artifact, atomically.

Everything the request can be refused for (unknown target, precision or backend option, a missing
extra, a missing calibration set) is checked before any work, and nothing is written until the export
succeeds: the artifact is built in a temp directory beside its final place and renamed at the end.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekit import __version__, ingest
from edgekit import targets as target_profiles
from edgekit.backends import get_backend
from edgekit.backends.base import ExportJob, ExportOptions
from edgekit.calib import CalibrationSet, InputInfo
from edgekit.errors import BadInput
from edgekit.fsio import staged_dir, write_json_atomic
from edgekit.manifest import MANIFEST, timestamp
from edgekit.records import ExportRecord, ExportRequest, Progress, noop
from edgekit.targets import TargetProfile, gates_for


def artifact_name(model: Path, target: str, precision: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", model.stem) or "model"
    return f"{stem}.{target}.{precision}"


def export(req: ExportRequest, progress: Progress = noop) -> ExportRecord:
    """Prepare, export, record and (with a validation set) verify one artifact, atomically.
    `precision="auto"`: every precision the target offers, the fastest here that passes the gate."""
    if req.precision == "auto":
        from edgekit.services.precision import export_auto

        return export_auto(req, progress, export)
    target = target_profiles.get(req.target, req.targets_dirs)
    backend = get_backend(target.backend)
    precision = req.precision or target.default_precision
    if precision not in target.precisions:
        raise BadInput(
            f"target '{target.name}' does not offer {precision}; it offers {', '.join(target.precisions)}"
        )
    options = dataclasses.replace(req.options, extra=dict(req.options.extra))  # the request stays as given
    backend.options_of(options)  # `--option`s typed and checked (unknown keys refused)
    backend.require()
    if req.calib is None and backend.needs_calibration(precision, options):
        unused = " (the validation set is never used to calibrate)" if req.val else ""
        raise BadInput(
            f"--int8 for target '{target.name}' ({backend.name}) needs a calibration set: pass --calib SET "
            f"(.npz or image directory){unused}"
        )
    model_path = Path(req.model).expanduser()
    calib = CalibrationSet.load(req.calib, req.calib_samples) if req.calib else None
    val = CalibrationSet.load(req.val, req.val_samples) if req.val else None

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

    final = Path(req.out_dir).expanduser() / artifact_name(model_path, target.name, precision)
    with staged_dir(final) as tmp:
        progress(f"exporting {precision} for {target.name} ({backend.name})")
        started = time.perf_counter()
        # the gates are the INT8 search's goal (edgekit.int8): target's gates with the request's overrides
        gates = gates_for(target, req.gate_overrides)
        result = backend.export(
            ExportJob(prepared, target, precision, tmp, job_calib, options, job_val, gates=gates)
        )
        export_s = time.perf_counter() - started
        manifest = _manifest(req, options, target, precision, prepared, result, tmp, calib, export_s)
        write_json_atomic(tmp / MANIFEST, manifest)
        report = None
        if val_reader is not None:
            from edgekit.services.verification import verify_dir

            progress(f"verifying on {len(val_reader)} samples")
            report = verify_dir(tmp, manifest, val_reader, model_path, gates)
            manifest["fidelity"] = report.to_json()
            manifest["validation"] = val_reader.record()
            write_json_atomic(tmp / MANIFEST, manifest)
    return ExportRecord(final, manifest, report)


def _search_options(options: ExportOptions) -> dict[str, Any]:
    """What bounded the INT8 search (edgekit.int8), so a manifest says how to reproduce it."""
    return {
        "int8_search": options.search,
        "max_revert": options.max_revert,
        "search_budget_s": options.search_budget_s,
        "allow_float_ops": options.allow_float_ops,
    }


def _weight_only_options(options: ExportOptions, precision: str) -> dict[str, Any]:
    """What weight-only quantization (edgekit.int4) was asked for."""
    out: dict[str, Any] = {"weights_only": True}
    if precision == "int4":
        out.update(
            int4_group_size=options.int4_group_size,
            int4_symmetric=options.int4_symmetric,
            int4_ratio=options.int4_ratio,
            int4_method=options.int4_method,
        )
    return {**out, "search": options.search, "max_revert": options.max_revert}


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
    options: ExportOptions,
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
    weight_only = precision == "int4" or (precision == "int8" and options.weights_only)
    uses_calib = backend.needs_calibration(precision, options) or (weight_only and calib is not None)
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
        "calibration": calib.record(options.calib_method) if (calib is not None and uses_calib) else None,
        "toolchain": {"edgekit": __version__, **result.toolchain},
        "options": {
            "calib_method": options.calib_method if uses_calib else None,
            "dynamic_int8": options.dynamic_int8,
            "io_dtype": options.io_dtype,
            "ignore": options.ignore,
            "input_shapes": req.input_shapes,
            "simplify": req.simplify,
            **(_search_options(options) if uses_calib and precision == "int8" else {}),
            **(_weight_only_options(options, precision) if weight_only else {}),
        },
        "threads": options.threads,
        "name_map": prepared.name_map,
        "details": result.details,
        "export_seconds": round(export_s, 3),
        "fidelity": None,
        "warnings": prepared.warnings + result.warnings,
    }
