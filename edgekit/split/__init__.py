"""`edgekit split`: plan where to cut a model, write the shards, verify them against the full model.

    from edgekit.split import SplitRequest, split
    record = split(SplitRequest("model.onnx", parts=3, out_dir="model.split"))

(the CLI and the public API call it through edgekit.api.split, which also exports the shards when
the request names targets)
The plan (planner.py) works on a PartitionGraph (graph.py); the shards are written by extract.py and
run in sequence by chain.py for the check; pipeline.json (pipeline.py) describes the result for
export per shard and for `edgekit bench PIPELINE_DIR`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import __version__, analysis
from edgekit.analysis import record_source_sha256
from edgekit.api.records import Progress, SplitRecord, SplitRequest, noop
from edgekit.errors import BadInput, GateFailed
from edgekit.fsio import staged_dir, write_json_atomic
from edgekit.split import chain, extract, measure, planner
from edgekit.split import pipeline as pipeline_file
from edgekit.split.graph import MB, PartitionGraph
from edgekit.split.graph import load as load_graph

log = logging.getLogger(__name__)

#: assumed for a device without link keys in devices.toml (said in the plan's notes)
DEFAULT_LINK_MBPS = 1000.0
DEFAULT_LINK_LATENCY_MS = 1.0


def default_out_dir(model: Path) -> Path:
    return model.with_name(f"{model.stem}.split")


def split(req: SplitRequest, progress: Progress = noop) -> SplitRecord:
    """Plan, extract, verify and describe a split; nothing is left behind when a step fails."""
    req.check()
    model_path = Path(req.model).expanduser()
    val = None
    if req.val is not None:
        from edgekit.calib import CalibrationSet

        val = CalibrationSet.load(req.val, req.val_samples)
    inventory = _inventory(req) if req.devices else None
    progress("reading the model")
    graph = load_graph(model_path, req.input_shapes)
    feeds = _feeds(graph, val, req.verify_samples)
    records = _read_results(req.results)

    progress("planning")
    notes = list(graph.notes)
    local_ms: float | None = None
    shares, shares_source = None, "MACs"
    if req.profile:
        progress("profiling the model's nodes here")
        from edgekit.split import profile

        shares, shares_source = profile.node_shares(graph, feeds[:1])
        local_ms = profile.time_model(model_path, feeds[0])
    if shares is None:
        shares = (graph.macs.astype(np.float64) + 1.0) / (graph.macs.sum() + len(graph))
    overrides = _measured_memory(graph, records)
    memory_fn = _memory_fn(graph, req.precision, overrides, req.memory_margin)
    device_models: list[planner.DeviceModel] = []
    if req.devices:
        device_models = _device_models(graph, req, inventory, shares, local_ms, records, notes)
        plan = planner.plan_devices(graph, device_models, req.objective, req.precision, memory_fn)
    elif req.max_shard_mb is not None:
        plan = planner.plan_max_memory(graph, req.max_shard_mb, req.precision, memory_fn)
        if req.measure_memory and req.precision == "fp32" and measure.available():
            plan = _fit_measured(graph, plan, req, overrides, memory_fn, progress, notes)
    else:
        assert req.parts is not None
        plan = planner.plan_parts(graph, req.parts, req.balance, req.precision, req.tolerance)
    if not device_models:
        total = local_ms if local_ms is not None else None
        device_models = [_host_model(graph, shares, total)] * len(plan.bounds)
        plan.devices = [None] * len(plan.bounds)
    description = describe(graph, plan, req, device_models, shares_source, overrides, memory_fn)
    description["notes"] = notes + description.get("notes", [])

    out_dir = Path(req.out_dir).expanduser() if req.out_dir else default_out_dir(model_path)
    threshold = extract.EXTERNAL_THRESHOLD if req.external_threshold is None else req.external_threshold
    with staged_dir(out_dir) as tmp:
        progress(f"writing {len(plan.bounds)} shards")
        shard_files = []
        for index, (start, end) in enumerate(plan.bounds):
            shard_files.append(extract.write_shard(graph, start, end, index, tmp, threshold))
        for record, shard in zip(description["shards"], shard_files, strict=True):
            record["file"] = shard.path.name
            record["files"] = shard.files
            record["external_data"] = shard.external_data
        progress(f"verifying the shards against the full model on {len(feeds)} samples")
        description["verification"] = verify(graph, tmp, description, feeds, val is not None)
        if not description["verification"]["passed"]:
            raise GateFailed(
                f"the shards do not reproduce the model: max abs difference "
                f"{description['verification']['max_abs_diff']:.3g} > {chain.TOLERANCE:g}; nothing written "
                "(please report this model)"
            )
        write_json_atomic(tmp / pipeline_file.PIPELINE, description)
    return SplitRecord(out_dir, description)


# ---- inputs -------------------------------------------------------------------------------------
def _feeds(graph: PartitionGraph, val: Any, samples: int) -> list[dict[str, np.ndarray]]:
    if val is not None:
        from edgekit.calib import InputInfo

        infos = [
            InputInfo(name, tuple(graph.tensors[name].shape or ()), np.dtype(graph.tensors[name].dtype))
            for name in graph.model_inputs
        ]
        reader = val.validate(infos, "validation set")
        feeds = [dict(feed) for _, feed in zip(range(samples), reader.feeds(1), strict=False)]
        if feeds:
            return feeds
    specs = []
    for name in graph.model_inputs:
        tensor = graph.tensors[name]
        specs.append((name, tensor.shape or [], tensor.dtype))
    return chain.random_feeds(specs, samples)


def _inventory(req: SplitRequest) -> dict[str, Any]:
    from edgekit.api.fleet import load_inventory
    from edgekit.inventory import select_devices

    devices = load_inventory(req.devices_file)
    select_devices(devices, list(req.devices))  # unknown names: one line with a suggestion
    return dict(devices)


# ---- device models --------------------------------------------------------------------------------
def _host_model(graph: PartitionGraph, shares: np.ndarray, total_ms: float | None) -> planner.DeviceModel:
    total = total_ms if total_ms is not None else float("nan")
    prefix = np.concatenate([[0.0], np.cumsum(shares * total)])
    return planner.DeviceModel("this host", prefix, speed_source="timed here" if total_ms else "unknown")


def _device_models(
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
        models.append(model)
    return models


def _source_sha(path: Path) -> str:
    from edgekit import ingest

    return ingest.model_sha256(path)


def _read_results(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
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


def _measured_memory(graph: PartitionGraph, records: list[dict[str, Any]]) -> dict[tuple[int, int], float]:
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


#: plan -> measure the new shards here -> re-plan with the measurements, at most this many times
MEASURE_ROUNDS = 10


def _fit_measured(
    graph: PartitionGraph,
    plan: planner.Plan,
    req: SplitRequest,
    overrides: dict[tuple[int, int], float],
    memory_fn: Callable[..., float],
    progress: Progress,
    notes: list[str],
) -> planner.Plan:
    """`--max-shard-mb`: measure each planned shard's memory here (onnxruntime CPU, fresh process); a
    measurement replaces the estimate (`overrides`, read by `memory_fn`) and the plan is made again
    until every shard is measured and fits."""
    assert req.max_shard_mb is not None
    measured, rounds = 0, 0
    for _ in range(MEASURE_ROUNDS):
        todo = [bounds for bounds in plan.bounds if bounds not in overrides]
        if not todo:
            break
        rounds += 1
        progress(f"measuring the memory of {len(todo)} shard(s) here")
        for bounds, value in zip(todo, measure.shard_memory_mb(graph, todo), strict=True):
            overrides[bounds] = value
            measured += 1
        if all(memory_fn(a, b) <= req.max_shard_mb for a, b in plan.bounds):
            break
        progress(f"re-planning with {measured} measured shard(s)")
        plan = planner.plan_max_memory(graph, req.max_shard_mb, req.precision, memory_fn)
    unmeasured = [bounds for bounds in plan.bounds if bounds not in overrides]
    notes.append(
        f"shard memory measured here ({measure.WHERE}) for {measured} candidate shard(s) in "
        f"{rounds} round(s); a measurement replaces the estimate"
        + (f"; {len(unmeasured)} shard(s) of the final plan kept the estimate" if unmeasured else "")
    )
    return plan


def _memory_fn(
    graph: PartitionGraph, precision: str, overrides: Mapping[tuple[int, int], float], margin: float = 0.0
) -> Callable[..., float]:
    """Shard memory in MB as planned: a measured peak (an earlier pipeline bench, or measured here) for
    a measured shard, else the runtime's estimate plus the safety margin; never less than a measured
    shard it contains (memory only grows with nodes: what the planner's search relies on)."""

    def memory(a: int, b: int, runtime: str = "onnxruntime") -> float:
        if (a, b) in overrides:
            return overrides[(a, b)]
        inside = [value for (c, d), value in overrides.items() if a <= c and d <= b]
        planned = graph.memory(a, b, precision, runtime) / MB * (1.0 + margin)
        return max([planned, *inside])

    return memory


# ---- the plan's description (pipeline.json) ---------------------------------------------------------
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


# ---- verification ---------------------------------------------------------------------------------
def verify(
    graph: PartitionGraph,
    directory: Path,
    description: Mapping[str, Any],
    feeds: list[dict[str, np.ndarray]],
    from_val: bool,
) -> dict[str, Any]:
    """Run the shards in sequence and the full model on the same inputs (onnxruntime CPU, graph
    optimizations off on both sides) and compare every model output."""
    stages = [
        chain.StageSpec(
            directory / s["file"], [i["name"] for i in s["inputs"]], [o["name"] for o in s["outputs"]]
        )
        for s in description["shards"]
    ]
    runner = chain.Chain(stages, graph.model_outputs)
    started = time.perf_counter()
    reference = chain.full_outputs(graph.path, feeds)
    actual = [runner.outputs(feed) for feed in feeds]
    result = chain.compare(reference, actual)
    result.update(
        samples=len(feeds),
        input_source="validation set" if from_val else "random (seed 0)",
        tolerance=chain.TOLERANCE,
        graph_optimizations="off",
        seconds=round(time.perf_counter() - started, 3),
    )
    return result


__all__ = ["SplitRecord", "SplitRequest", "split", "describe", "verify", "default_out_dir", "MB"]
