"""Benchmarks of a release's artifacts on the configured devices, through the device agent (the one
timing path), cached by artifact, device and settings."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekit.release.cache import Store, digest
from edgekit.release.config import BenchSpec

log = logging.getLogger(__name__)


def runs_on(device: Any, profile: Any, manifest: dict[str, Any]) -> str | None:
    """None when `device` can time this artifact, else why not. A device runs its own target's
    artifacts; the local machine also runs any artifact whose runtime it has (not GPU/NPU profiles
    nor TensorRT bundles without an engine)."""
    if device.target == profile.name:
        return None
    if device.transport == "local":
        from edgekit.backends import get_backend

        if get_backend(profile.backend).times_here(profile, manifest):
            return None
        return f"{profile.name} artifacts do not run on this machine (it is {device.target})"
    return f"device '{device.name}' is a {device.target}, not a {profile.name}"


def settings_for(spec: BenchSpec) -> Any:
    from edgekit.runner import BenchSettings

    return BenchSettings(
        iterations=spec.iterations,
        warmup=spec.warmup,
        min_duration_s=spec.min_duration_s,
        threads=spec.threads,
        timeout_s=spec.timeout_s,
        repeats=spec.repeats,
    )


def skipped_record(artifact: Any, device: Any, reason: str) -> dict[str, Any]:
    from edgekit.runner import Job, base_record

    record = base_record(Job(artifact, device), settings_for(BenchSpec()))
    record.update(status="skipped", error=reason, error_kind="skipped")
    record["timestamp"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return record


def bench_all(
    artifact_dirs: dict[str, Path],
    profiles: dict[str, Any],
    spec: BenchSpec,
    devices: dict[str, Any],
    store: Store | None,
    results: Path,
    progress: Callable[[str], None],
    rebench: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Records for every (artifact, device) pair in artifact order; cached records are reused.
    Returns (records, cache state "hit"/"miss"/"skip" per `<artifact>@<device>`)."""
    from edgekit import runner

    settings = settings_for(spec)
    by_name = {name: runner.Artifact.load(path) for name, path in artifact_dirs.items()}
    records: dict[tuple[str, str], dict[str, Any]] = {}
    state: dict[str, str] = {}
    jobs = []
    keys: dict[tuple[str, str], str] = {}
    for name, art in by_name.items():
        for device_name in spec.devices:
            device = devices[device_name]
            pair = (name, device_name)
            why = runs_on(device, profiles[art.target], art.manifest)
            if why is not None:
                records[pair] = skipped_record(art, device, why)
                state[f"{name}@{device_name}"] = "skip"
                continue
            key = digest(
                {
                    "kind": "bench",
                    "artifact": art.sha256,
                    "device": device.to_json(),
                    "settings": settings.to_json(),
                }
            )
            keys[pair] = key
            cached = None if (rebench or store is None) else store.get_json(key)
            if cached is not None:
                records[pair] = cached
                state[f"{name}@{device_name}"] = "hit"
            else:
                jobs.append(runner.Job(art, device))
                state[f"{name}@{device_name}"] = "miss"
    if jobs:
        progress(f"benchmarking {len(jobs)} artifact/device pair(s)")

        def show(event: dict[str, Any]) -> None:
            if event.get("stage") in ("ok", "failed"):
                record = event.get("record") or {}
                p50 = (record.get("latency_ms") or {}).get("p50")
                detail = f"p50 {p50:.3f} ms" if p50 is not None else (record.get("error") or "")
                progress(f"  {event['stage']:6} {event['artifact']} on {event['device']}: {detail}")

        scratch = results.with_name(".bench-" + results.name)
        fresh = asyncio.run(runner.run_bench(jobs, settings, scratch, progress=show))
        scratch.unlink(missing_ok=True)
        for record in fresh:
            pair = (record["artifact"]["name"], record["device"]["name"])
            records[pair] = record
            if store is not None and record.get("status") == "ok":
                store.put_json(keys[pair], record)
    ordered = []
    for name, path in artifact_dirs.items():
        for device_name in spec.devices:
            record = dict(records[(name, device_name)])
            record["artifact"] = dict(record["artifact"], dir=f"artifacts/{path.name}")
            record.pop("outputs_file", None)
            ordered.append(record)
    return ordered, state


def latency_gates(spec: BenchSpec, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The [bench] max_p50_ms / max_p90_ms / max_p99_ms limits that apply to this record."""
    device = record["device"]["name"]
    out = []
    for key, limits in spec.limits.items():
        if device not in limits:
            continue
        stat = key.split("_")[1]  # max_p90_ms -> p90
        limit = limits[device]
        gate = f"{key}@{device}"
        if record.get("status") == "skipped":
            continue
        value = (record.get("latency_ms") or {}).get(stat)
        if value is None:
            out.append(
                {
                    "gate": gate,
                    "passed": False,
                    "detail": f"no measurement: {record.get('error') or 'run failed'}",
                }
            )
        else:
            out.append(
                {
                    "gate": gate,
                    "passed": value <= limit,
                    "detail": f"{stat} {value:.3f} ms {'<=' if value <= limit else '>'} {limit:g} ms",
                }
            )
    return out
