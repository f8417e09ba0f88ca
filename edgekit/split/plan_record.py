"""pipeline.json's content: the plan, its shards and cuts, with what each costs and the predictions."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from edgekit import __version__
from edgekit.records import SplitRequest
from edgekit.split import pipeline as pipeline_file
from edgekit.split import planner
from edgekit.split.partition_graph import PartitionGraph


def describe(
    graph: PartitionGraph,
    plan: planner.Plan,
    req: SplitRequest,
    devices: Sequence[planner.DeviceModel],
    shares_source: str,
    overrides: Mapping[tuple[int, int], float],
    memory_fn: Callable[[int, int], float],
) -> dict[str, Any]:
    from edgekit import ingest

    bounds = plan.bounds
    owner = {}
    for index, name in enumerate(plan.devices):
        owner[index] = name
    by_name = {d.name: d for d in devices}

    def model_of(index: int) -> planner.DeviceModel:
        name = plan.devices[index] if index < len(plan.devices) else None
        return by_name[name] if name else devices[index]

    produced_by: dict[str, int] = {}
    shards = []
    for index, (start, end) in enumerate(bounds):
        stats = graph.segment(start, end, req.precision)
        device_name = owner.get(index)
        predicted = model_of(index).shard_ms(start, end)
        measured_memory = overrides.get((start, end))
        for name in stats.outputs:
            produced_by[name] = index
        shards.append(
            {
                "index": index,
                "nodes": [start, end],
                "node_count": end - start,
                "first_node": graph.node_label(start),
                "last_node": graph.node_label(end - 1),
                "device": device_name,
                "inputs": [_io(graph, name, produced_by.get(name, "model")) for name in stats.inputs],
                "outputs": [_io(graph, name, None) for name in stats.outputs],
                "weight_bytes": stats.weight_bytes,
                "macs": stats.macs,
                "peak_activation_bytes": stats.peak_activation_bytes,
                "memory_estimate_mb": round(stats.memory_mb, 2),
                "memory_features": {
                    "weight_bytes_by_class": stats.weight_bytes_by_class,
                    "peak_activation_bytes": stats.peak_activation_bytes,
                    "nodes": stats.nodes,
                    "precision": req.precision,
                },
                "memory_measured_mb": round(measured_memory, 2) if measured_memory is not None else None,
                "memory_mb": round(memory_fn(start, end), 2),
                "predicted_ms": _finite(predicted),
                "predicted_from": "this shard measured in an earlier pipeline bench"
                if (start, end) in model_of(index).exact
                else f"node time shares ({shares_source}) x {model_of(index).speed_source or 'MACs'}",
            }
        )
    for shard in shards:  # who reads each output
        for out in shard["outputs"]:
            out["to"] = [s["index"] for s in shards if any(i["name"] == out["name"] for i in s["inputs"])]
            out["model_output"] = out["name"] in graph.model_outputs
    cuts = []
    hops = []
    for index, (_, end) in enumerate(bounds[:-1]):
        names = graph.crossing(end)
        tensors = [graph.describe_tensor(name) for name in names]
        nbytes = int(sum(t["bytes"] for t in tensors))
        hop = planner.hop_ms(model_of(index), model_of(index + 1), nbytes) if req.devices else None
        cuts.append(
            {
                "after_shard": index,
                "position": end,
                "tensors": tensors,
                "bytes": nbytes,
                "predicted_ms": _finite(hop),
            }
        )
        hops.append(hop or 0.0)
    stage_ms = [s["predicted_ms"] or 0.0 for s in shards]
    in_bytes = sum(graph.tensors[t].nbytes for t in graph.model_inputs)
    out_bytes = sum(graph.tensors[t].nbytes for t in graph.model_outputs if t in graph.tensors)
    io_ms = [model_of(0).link_ms(in_bytes), model_of(len(bounds) - 1).link_ms(out_bytes)]
    known = all(s["predicted_ms"] is not None for s in shards)
    latency = sum(stage_ms) + sum(hops) + sum(io_ms) if known else None
    bottleneck = max(stage_ms + hops + io_ms) if (stage_ms and known) else None
    sha = ingest.model_sha256(graph.path)
    return {
        "schema": pipeline_file.SCHEMA,
        "edgekit_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": {
            "name": graph.path.name,
            "path": str(graph.path.resolve()),
            "sha256": sha,
            "bytes": ingest.model_bytes(graph.path),
            "nodes": len(graph),
            "inputs": [_io(graph, name, None) for name in graph.model_inputs],
            "outputs": [
                _io(graph, name, produced_by.get(name, len(bounds) - 1)) for name in graph.model_outputs
            ],
            "input_shapes": dict(req.input_shapes),
        },
        "plan": {
            "mode": "devices"
            if req.devices
            else ("max_shard_mb" if req.max_shard_mb is not None else "parts"),
            "objective": plan.objective,
            "parts": len(bounds),
            "requested_parts": req.parts,
            "max_shard_mb": req.max_shard_mb,
            "balance": req.balance if req.parts is not None else None,
            "precision": req.precision,
            "devices": list(plan.devices),
            "details": {k: _finite(v) for k, v in plan.details.items()},
            "planning_s": round(plan.planning_s, 4),
            "speed_source": [d.speed_source for d in devices][: len(bounds)]
            if req.devices
            else shares_source,
            "node_times": shares_source,
            "memory_model": "edgekit.analysis (per measured runtime); measured peak RSS of earlier pipeline benches overrides it",
            "memory_margin": req.memory_margin,
        },
        "shards": shards,
        "cuts": cuts,
        "predicted": {
            "where": "the planned devices"
            if req.devices
            else "this host (one device per shard, no link cost)",
            "basis": _basis(shares_source, devices, shards),
            "latency_ms": _finite(latency),
            "throughput_fps": _finite(1000.0 / bottleneck) if bottleneck else None,
            "bottleneck_ms": _finite(bottleneck),
            "stages_ms": [_finite(x) for x in stage_ms],
            "hops_ms": [_finite(x) for x in hops],
            "input_ms": _finite(io_ms[0]),
            "output_ms": _finite(io_ms[1]),
            "relay": "host-relayed: a hop downloads the tensors from one device and uploads them to the next",
        },
        "notes": [],
    }


def _basis(shares_source: str, devices: Sequence[planner.DeviceModel], shards: list[dict[str, Any]]) -> str:
    """Where the predictions come from: each node's share of the time (onnxruntime's per-node profile on
    this host with optimisations off, or MACs) times each device's whole-model time, except shards
    that an earlier pipeline bench measured."""
    speeds = sorted({f"{d.name}: {d.speed_source or 'unknown'}" for d in devices})
    measured = [s["index"] for s in shards if s["predicted_from"].startswith("this shard measured")]
    text = (
        f"node time shares from {shares_source}"
        + (
            " (onnxruntime with graph optimisations off, on this host)"
            if "onnxruntime" in shares_source
            else " (not profiled; this host's onnxruntime was not run)"
        )
        + f", scaled to each device's whole-model time ({'; '.join(speeds)})"
    )
    if measured:
        text += f"; shard(s) {', '.join(map(str, measured))} measured in an earlier pipeline bench"
    return text


def _io(graph: PartitionGraph, name: str, source: Any) -> dict[str, Any]:
    tensor = graph.tensors.get(name)
    row: dict[str, Any] = {
        "name": name,
        "shape": tensor.shape if tensor is not None else None,
        "dtype": tensor.dtype if tensor is not None else None,
        "bytes": tensor.nbytes if tensor is not None else None,
    }
    if source is not None:
        row["from"] = source
    return row


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value
