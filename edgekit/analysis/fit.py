"""Does the model fit each device: the fit table of `edgekit inspect --devices`, the devices' memory,
and the runtime memory `edgekit bench` measured (read back from its records)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from edgekit.errors import BadInput
from edgekit.memory_model import DEFAULT_RUNTIME, MB, PRECISIONS

if TYPE_CHECKING:
    from edgekit.analysis.report import ModelReport


# ---- fit table -------------------------------------------------------------------------------------
def local_memory_mb() -> int:
    """Total physical memory of this machine."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MB)


def device_memory_mb(device: Mapping[str, Any]) -> tuple[int | None, str]:
    """(memory in MB, where it came from) for a devices.toml entry: its own `memory_mb`, this
    machine's memory for the local device, else its target profile's `memory_mb`."""
    if device.get("memory_mb") is not None:
        return int(device["memory_mb"]), "devices.toml"
    if device.get("name") == "local" or device.get("transport") == "local":
        return local_memory_mb(), "this machine"
    target = device.get("target")
    if target:
        from edgekit import targets

        profile = targets.get(str(target))
        if profile.memory_mb is not None:
            return int(profile.memory_mb), f"target {profile.name}"
    return None, "unknown"


def fit_table(
    report: ModelReport,
    devices: Sequence[Mapping[str, Any]],
    precisions: Sequence[str] = PRECISIONS,
    measured: Mapping[tuple[str, str], float] | None = None,
) -> list[dict[str, Any]]:
    """One row per device and precision: estimated MB (the memory model of the device target's
    runtime where that runtime was measured, else onnxruntime's, said in `estimate_runtime`), the
    runtime memory `edgekit bench` measured for this model there (it decides `fits` when present),
    device MB, headroom MB and %, fits."""
    rows = []
    measured = measured or {}
    for device in devices:
        memory, source = device_memory_mb(device)
        runtime = _device_runtime(device)
        exportable = _exportable(device)
        model_runtime = runtime if runtime in report.runtime_memory_bytes else DEFAULT_RUNTIME
        for precision in precisions:
            if precision not in report.memory_estimate_bytes:
                raise BadInput(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
            estimate = report.runtime_memory_bytes[model_runtime][precision] / MB
            seen = measured.get((str(device.get("name")), precision))
            basis = estimate if seen is None else seen
            row: dict[str, Any] = {
                "device": device.get("name", "?"),
                "target": device.get("target"),
                "precision": precision,
                "estimated_mb": round(estimate, 1),
                "estimate_runtime": model_runtime
                if model_runtime == runtime or runtime is None
                else f"{model_runtime} ({runtime} not measured)",
                "measured_mb": None if seen is None else round(seen, 1),
                "device_mb": memory,
                "memory_source": source,
                "headroom_mb": None,
                "headroom_pct": None,
                "fits": None,
                "fits_basis": _fits_basis(seen, precision, device, exportable),
            }
            if memory:
                row["headroom_mb"] = round(memory - basis, 1)
                row["headroom_pct"] = round(100.0 * (memory - basis) / memory, 1)
                row["fits"] = basis <= memory
            rows.append(row)
    return rows


def _fits_basis(
    seen: float | None, precision: str, device: Mapping[str, Any], exportable: Sequence[str] | None
) -> str:
    """What `fits` rests on: a bench measurement, or an estimate; an estimate for a precision that no
    target (or not the device's target) can export yet says so: nothing built it, nothing ran it."""
    if seen is not None:
        return "measured"
    if exportable is not None and precision not in exportable:
        return f"estimate: {device.get('target')} cannot export {precision} yet"
    from edgekit.targets import PRECISIONS as EXPORTABLE

    if exportable is None and precision not in EXPORTABLE:
        return f"estimate: no target exports {precision} yet"
    return "estimate"


def _exportable(device: Mapping[str, Any]) -> list[str] | None:
    """The precisions the device's target profile exports (None without a known target)."""
    target = device.get("target")
    if not target:
        return None
    from edgekit import targets

    try:
        return list(targets.get(str(target)).precisions)
    except BadInput:
        return None


def _device_runtime(device: Mapping[str, Any]) -> str | None:
    target = device.get("target")
    if not target:
        return None
    from edgekit import targets

    try:
        return targets.get(str(target)).backend
    except BadInput:
        return None


# ---- measured memory from bench records ------------------------------------------------------------
def record_source_sha256(record: Mapping[str, Any]) -> str | None:
    """The source model's sha256 of a bench record: from the record, or its artifact's manifest."""
    if record.get("kind") in ("pipeline", "pipeline-stage"):
        return None  # a split's records: edgekit.split reads those (by shard nodes)
    art = record.get("artifact") or {}
    if art.get("source_sha256"):
        return str(art["source_sha256"])
    directory = art.get("dir")
    if not directory:
        return None
    try:
        from edgekit.manifest import read_manifest

        return str(read_manifest(directory)["source"]["sha256"])
    except Exception:  # noqa: BLE001 - a moved or deleted artifact: the record cannot be matched
        return None


def measured_growth_mb(record: Mapping[str, Any]) -> float | None:
    """A bench record's runtime memory: peak RSS minus the RSS before the model was loaded (the
    interpreter and runtime import), or the whole process's peak when no baseline was recorded."""
    peak = record.get("peak_rss_mb")
    if peak is None:
        return None
    base = record.get("rss_before_load_mb")
    return float(peak) - float(base) if base is not None else float(peak)


def measured_memory(records: Iterable[Mapping[str, Any]], source_sha256: str) -> dict[tuple[str, str], float]:
    """(device, precision) -> the largest measured runtime memory (MB) of this model's artifacts."""
    out: dict[tuple[str, str], float] = {}
    for record in records:
        if record.get("status") != "ok" or record.get("kind") == "pipeline":
            continue
        if record_source_sha256(record) != source_sha256:
            continue
        growth = measured_growth_mb(record)
        if growth is None:
            continue
        key = (
            str((record.get("device") or {}).get("name")),
            str((record.get("artifact") or {}).get("precision")),
        )
        out[key] = max(out.get(key, 0.0), growth)
    return out
