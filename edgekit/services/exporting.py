"""`export`: prepare, export, record and (with a validation set) verify one artifact, atomically.

Everything the request can be refused for (unknown target, precision or backend option, a missing
extra, a missing calibration set) is checked before any work, and nothing is written until the export
succeeds: the artifact is built in a temp directory beside its final place and renamed at the end.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgekit import __version__, ingest, task_options
from edgekit import targets as target_profiles
from edgekit.backends import get_backend
from edgekit.backends.base import ExportJob, ExportOptions
from edgekit.calib import CalibrationReader, CalibrationSet, InputInfo
from edgekit.errors import BadInput
from edgekit.fsio import staged_dir, write_json_atomic
from edgekit.int8 import holdout
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
    metric = task_options.load_metric(req.metric)  # a metric that does not import: refused before work
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
    # what the model is for, decided once here and recorded; the search scores on it under the prepared
    # model's names, verify judges by it under the source's (task_options.task_of)
    task = task_of_prepared(prepared, req.task)
    searches = val_reader is not None and calib_reader is not None and precision == "int8"
    searches = searches and backend.needs_calibration(precision, options)
    plan = None
    if searches:
        assert calib_reader is not None and val_reader is not None
        plan = holdout.plan(calib_reader, val_reader, need_labels=options.max_accuracy_drop is not None)
        if not plan.verdict:
            raise BadInput(
                f"every sample of the validation set {Path(val_reader.source).name} is also one the INT8 "
                "search selects on: pass a validation set with other samples"
            )
        job_calib_reader, job_val_reader = _planned_sets(plan, calib_reader, val_reader)
        verdict_reader = holdout.subset(val_reader, plan.verdict)
    else:
        job_calib_reader, job_val_reader, verdict_reader = calib_reader, val_reader, val_reader
    job_calib = job_calib_reader.renamed(to_prepared) if job_calib_reader is not None else None
    job_val = job_val_reader.renamed(to_prepared) if job_val_reader is not None else None

    final = Path(req.out_dir).expanduser() / artifact_name(model_path, target.name, precision)
    with staged_dir(final) as tmp:
        progress(f"exporting {precision} for {target.name} ({backend.name})")
        started = time.perf_counter()
        # the gates are the INT8 search's goal (edgekit.int8): target's gates with the request's overrides
        gates = gates_for(target, req.gate_overrides)
        job = ExportJob(
            prepared,
            target,
            precision,
            tmp,
            job_calib,
            options,
            job_val,
            gates=gates,
            task=task_options.renamed_task(task, {v: k for k, v in prepared.name_map.items()}),
            metric=task_options.renamed_metric(metric, prepared.name_map),
            scored_on=plan.describe_selection() if plan is not None else None,
        )
        result = backend.export(job)
        export_s = time.perf_counter() - started
        manifest = _manifest(req, options, target, precision, prepared, result, tmp, calib, export_s)
        manifest["task"] = task.to_json()
        manifest["metric"] = task_options.metric_record(req.metric)
        manifest["numerics"] = _numerics(result.details)
        write_json_atomic(tmp / MANIFEST, manifest)
        report = None
        if verdict_reader is not None:
            from edgekit.errors import NotVerifiedHere
            from edgekit.services.verification import not_verified_here, verify_dir

            progress(f"verifying on {len(verdict_reader)} samples")
            try:
                report = verify_dir(
                    tmp, manifest, verdict_reader, model_path, gates, task=task, metric=metric
                )
                manifest["fidelity"] = report.to_json()
            except NotVerifiedHere as exc:  # never a pass: no fidelity, and the manifest says why
                progress(str(exc))
                manifest["verification"] = not_verified_here(exc, manifest)
            manifest["validation"] = verdict_reader.record()
            if plan is not None and report is not None:
                assert calib_reader is not None and val_reader is not None
                manifest["samples"] = plan.record(
                    calib_reader, val_reader, _selection_score(manifest), _verdict_score(report)
                )
            write_json_atomic(tmp / MANIFEST, manifest)
    return ExportRecord(final, manifest, report)


def task_of_prepared(prepared: ingest.PreparedModel, task: str | None) -> Any:
    """infer_task on the prepared model (static shapes), with the source's metadata (Ultralytics'
    task, names, imgsz) where preparation dropped it, under the user's original output names."""
    import onnx

    model = prepared.load()
    if not model.metadata_props:
        try:
            source = onnx.load(str(prepared.source_path), load_external_data=False)
            model.metadata_props.extend(source.metadata_props)
        except Exception:  # noqa: BLE001 - the metadata is a hint; the shapes still decide
            pass
    return task_options.renamed_task(task_options.infer(model, task), prepared.name_map)


def _planned_sets(
    plan: holdout.SamplePlan, calib: CalibrationReader, val: CalibrationReader
) -> tuple[CalibrationReader, CalibrationReader | None]:
    """(what calibrates, what the search selects on) as the plan says: the calibration hold-out (taken
    out of calibration), a part of --val, or (one validation sample) the search's own choice."""
    if plan.selection_set == "validation":
        return calib, holdout.subset(val, plan.selection)
    if plan.calibrate == plan.selection:  # too few to hold out: the search scores on calibration itself
        return calib, None
    return holdout.subset(calib, plan.calibrate), holdout.subset(calib, plan.selection)


def _numerics(details: Mapping[str, Any]) -> dict[str, str] | None:
    """Which Q/DQ numerics produced the INT8 search's scores and host verify's numbers (ONNX Runtime
    targets: this host's kernels, or reference Q/DQ numerics for another architecture's target)."""
    kind = (details or {}).get("qdq_numerics")
    if kind is None:
        return None
    from edgekit.int8.ort_qdq import NUMERICS

    return {"kind": kind, "int8_search": NUMERICS[kind], "verify": NUMERICS[kind]}


def _selection_score(manifest: Mapping[str, Any]) -> Any:
    from edgekit.int8 import search_record

    search = search_record(manifest)
    return None if search is None else {"passed": search.get("passed"), **(search.get("score") or {})}


def _verdict_score(report: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"passed": report.passed, "failures": list(report.failures)}
    if report.task:
        out["task"] = {k: report.task.get(k) for k in ("kind", "metrics", "intervals", "undecided")}
    if report.metric:
        out["metric"] = report.metric
    out["worst_cosine"] = min((o.cosine for o in report.outputs), default=None)
    return out


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
