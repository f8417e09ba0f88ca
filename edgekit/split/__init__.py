"""`edgekit split`: plan where to cut a model, write the shards, verify them against the full model.

    from edgekit.split import SplitRequest, split
    record = split(SplitRequest("model.onnx", parts=3, out_dir="model.split"))

(the CLI and the public API call it through edgekit.api.split, which also exports the shards when
the request names targets)
The plan (planner.py) works on a PartitionGraph (partition_graph.py) and, for --devices, on device models
(device_models.py) built from measured records; the shards are written by extract.py and run in sequence by
run_shards.py for the check (run_shards.verify); pipeline.json (pipeline.py, its content from plan_record.py)
describes the result for export per shard and for `edgekit bench PIPELINE_DIR`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import GateFailed
from edgekit.fsio import staged_dir, write_json_atomic
from edgekit.records import Progress, SplitRecord, SplitRequest, noop
from edgekit.split import extract, measure, planner, run_shards
from edgekit.split import pipeline as pipeline_file
from edgekit.split.device_models import build_device_models, host_model, measured_memory, read_ok_results
from edgekit.split.partition_graph import MB, PartitionGraph
from edgekit.split.partition_graph import load as load_graph
from edgekit.split.plan_record import describe
from edgekit.split.run_shards import verify

log = logging.getLogger(__name__)


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
    records = read_ok_results(req.results)

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
    overrides = measured_memory(graph, records)
    memory_fn = _memory_fn(graph, req.precision, overrides, req.memory_margin)
    device_models: list[planner.DeviceModel] = []
    if req.devices:
        device_models = build_device_models(graph, req, inventory, shares, local_ms, records, notes)
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
        device_models = [host_model(graph, shares, total)] * len(plan.bounds)
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
                f"{description['verification']['max_abs_diff']:.3g} > {run_shards.TOLERANCE:g}; nothing written "
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
    return run_shards.random_feeds(specs, samples)


def _inventory(req: SplitRequest) -> dict[str, Any]:
    from edgekit.inventory import load_inventory, select_devices

    devices = load_inventory(req.devices_file)
    select_devices(devices, list(req.devices))  # unknown names: one line with a suggestion
    return dict(devices)


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


__all__ = ["SplitRecord", "SplitRequest", "split", "describe", "verify", "default_out_dir", "MB"]
