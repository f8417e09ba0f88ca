"""The split planner's device models (whole-model speed spread over the nodes, memory, link) and
the measured records they read back: `edgekit bench` results of the whole model, and of the shards
and relay of an earlier pipeline bench."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import analysis
from edgekit.analysis import record_source_sha256
from edgekit.errors import BadInput
from edgekit.records import SplitRequest
from edgekit.split import planner
from edgekit.split.partition_graph import PartitionGraph

#: assumed for a device without link keys in devices.toml (said in the plan's notes)
DEFAULT_LINK_MBPS = 1000.0
DEFAULT_LINK_LATENCY_MS = 1.0


def host_model(graph: PartitionGraph, shares: np.ndarray, total_ms: float | None) -> planner.DeviceModel:
    total = total_ms if total_ms is not None else float("nan")
    prefix = np.concatenate([[0.0], np.cumsum(shares * total)])
    return planner.DeviceModel("this host", prefix, speed_source="timed here" if total_ms else "unknown")


def build_device_models(
    graph: PartitionGraph,
    req: SplitRequest,
    inventory: Mapping[str, Any] | None,
    shares: np.ndarray,
    local_ms: float | None,
    records: list[dict[str, Any]],
    notes: list[str],
) -> list[planner.DeviceModel]:
    assert inventory is not None
    from edgekit.analysis import device_memory_mb

    source_sha = _source_sha(graph.path)
    models = []
    for name in req.devices:
        device = inventory[name]
        total, source = _whole_model_ms(records, source_sha, name, req.precision)
        if total is None and device.transport == "local":
            total, source = local_ms, "timed here (onnxruntime CPU, fp32)"
        if total is None:
            raise BadInput(
                f"no measured speed for device '{name}': benchmark the whole model there first "
                f"(edgekit export {graph.path.name} --target {device.target} -o out && edgekit bench "
                f"out/<artifact> --device {name} -o results.jsonl) and pass --results results.jsonl"
            )
        prefix = np.concatenate([[0.0], np.cumsum(shares * total)])
        memory, _ = device_memory_mb({"name": name, **device.to_json()})
        link = device.link_mbps
        latency = device.link_latency_ms
        relayed = _measured_link_mbps(records, name)
        if relayed is not None:  # what an earlier pipeline bench moved over this device's transport
            notes.append(
                f"{name}: link from an earlier pipeline bench: {relayed:.0f} Mbit/s effective through "
                "the host relay (replaces devices.toml's link keys)"
            )
            link, latency = relayed, 0.0
        if device.transport == "local" and relayed is None:
            link = link if link is not None else math.inf
            latency = latency if latency is not None else 0.0
        elif link is None or latency is None:
            notes.append(
                f"{name}: no link_mbps/link_latency_ms in devices.toml; assumed {DEFAULT_LINK_MBPS:g} Mbit/s, "
                f"{DEFAULT_LINK_LATENCY_MS:g} ms"
            )
            link = link if link is not None else DEFAULT_LINK_MBPS
            latency = latency if latency is not None else DEFAULT_LINK_LATENCY_MS
        from edgekit import targets as target_profiles

        model = planner.DeviceModel(
            name,
            prefix,
            runtime=target_profiles.get(device.target).backend,
            memory_mb=float(memory) if memory else None,
            link_mbps=float(link),
            link_latency_ms=float(latency),
            speed_source=source,
        )
        model.exact.update(_measured_shards(records, source_sha, name))
        if model.runtime not in (None, "onnxruntime"):
            notes.append(
                f"{name}: its shard times spread the device's whole-model time by node shares from "
                f"onnxruntime on this host, not from {model.runtime} on the device (its fusions and kernels "
                "differ); bench the pipeline for measured stage times, which later plans read back"
            )
        models.append(model)
    return models


def _source_sha(path: Path) -> str:
    from edgekit import ingest

    return ingest.model_sha256(path)


def read_ok_results(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    from edgekit.runner import read_results

    records: list[dict[str, Any]] = []
    for path in paths:
        if not Path(path).expanduser().is_file():
            raise BadInput(f"results file not found: {path}")
        records.extend(r for r in read_results(Path(path).expanduser()) if r.get("status") == "ok")
    return records


def _whole_model_ms(
    records: list[dict[str, Any]], source_sha: str, device: str, precision: str
) -> tuple[float | None, str]:
    found = [
        r
        for r in records
        if (r.get("device") or {}).get("name") == device
        and not r.get("pipeline")
        and record_source_sha256(r) == source_sha
    ]
    if not found:
        return None, ""
    found.sort(key=lambda r: (r["artifact"].get("precision") != precision, r.get("timestamp", "")))
    best = found[0]
    lat = best.get("latency_ms") or {}
    value = lat.get("p50") or lat.get("mean")
    return (float(value) if value else None), (
        f"edgekit bench record ({best['artifact'].get('name')}, {best['artifact'].get('precision')})"
    )


def _measured_link_mbps(records: list[dict[str, Any]], device: str) -> float | None:
    """Effective megabits per second a device's stage moved in and out in earlier pipeline benches
    (bytes per inference over the relay time's median), or None."""
    rates = [
        r["relay_bytes"] * 8 / (r["relay_ms"]["p50"] / 1000.0) / 1e6
        for r in records
        if r.get("kind") == "pipeline-stage"
        and (r.get("device") or {}).get("name") == device
        and r.get("relay_bytes")
        and (r.get("relay_ms") or {}).get("p50")
    ]
    return float(np.median(rates)) if rates else None


def _measured_shards(
    records: list[dict[str, Any]], source_sha: str, device: str
) -> dict[tuple[int, int], float]:
    """Measured shard latencies from an earlier `edgekit bench PIPELINE_DIR` of the same model."""
    out: dict[tuple[int, int], float] = {}
    for record in records:
        info = record.get("pipeline") or {}
        if info.get("source_sha256") != source_sha or (record.get("device") or {}).get("name") != device:
            continue
        nodes = info.get("nodes")
        lat = record.get("latency_ms") or {}
        if nodes and lat.get("p50"):
            out[(int(nodes[0]), int(nodes[1]))] = float(lat["p50"])
    return out


def measured_memory(graph: PartitionGraph, records: list[dict[str, Any]]) -> dict[tuple[int, int], float]:
    """Measured runtime memory (MB) of shards an earlier pipeline bench ran: it overrides the estimate."""
    if not records:
        return {}
    source_sha = _source_sha(graph.path)
    out: dict[tuple[int, int], float] = {}
    for record in records:
        info = record.get("pipeline") or {}
        nodes = info.get("nodes")
        if info.get("source_sha256") != source_sha or not nodes:
            continue
        growth = analysis.measured_growth_mb(record)
        if growth is not None:
            key = (int(nodes[0]), int(nodes[1]))
            out[key] = max(out.get(key, 0.0), growth)
    return out
