"""How long each compute node takes: onnxruntime's per-node profile on this host.

The profile runs the model with graph optimizations off, so every profiled kernel is one of the
model's own nodes (fused kernels could not be attributed); it gives each node's share of the time.
A device's time for a run of nodes is that share times the device's measured whole-model latency
(this host: timed here with default optimizations; another device: its `edgekit bench` record),
the per-layer-profile approach of Neurosurgeon. Without a profile, shares follow MACs.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

from edgekit.split.partition_graph import PartitionGraph

log = logging.getLogger(__name__)


def _named_copy(graph: PartitionGraph, directory: Path) -> tuple[Path, dict[str, int]]:
    """The model with every compute node renamed to a unique `edgekit_n<index>` (profiles are keyed
    by node name, and exporters leave names empty or repeated)."""
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    wanted = {id(node): index for index, node in enumerate(graph.nodes)}
    by_name: dict[str, int] = {}
    for original, node in zip(graph.model.graph.node, model.graph.node, strict=True):
        index = wanted.get(id(original))
        if index is not None:
            node.name = f"edgekit_n{index}"
            by_name[node.name] = index
    path = directory / "profiled.onnx"
    large = sum(t.ByteSize() for t in model.graph.initializer) > 1_500_000_000
    onnx.save_model(model, str(path), save_as_external_data=large, location="profiled.onnx.data")
    return path, by_name


def node_shares(
    graph: PartitionGraph, feeds: Sequence[Mapping[str, np.ndarray]], runs: int = 5
) -> tuple[np.ndarray, str]:
    """Each compute node's share of the model's time (sums to 1) and where it came from."""
    import onnxruntime as ort

    n = len(graph)
    try:
        with tempfile.TemporaryDirectory(prefix="edgekit-profile-") as tmp:
            path, by_name = _named_copy(graph, Path(tmp))
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tmp) / "profile")
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            names = [i.name for i in session.get_inputs()]
            feed = {k: v for k, v in feeds[0].items() if k in names}
            session.run(None, feed)  # warm-up, dropped below
            session.end_profiling()
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            session.run(None, feed)
            for _ in range(runs):
                session.run(None, feed)
            trace = Path(session.end_profiling())
            events = json.loads(trace.read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001 - the profile is an aid; MACs stand in
        log.warning("per-node profile failed (%s); node times follow MACs", exc)
        return _mac_shares(graph), "MACs (the profile failed)"
    times = np.zeros(n, dtype=np.float64)
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        name = str(event["name"])[: -len("_kernel_time")]
        index = by_name.get(name)
        if index is not None:
            times[index] += float(event.get("dur", 0))
    total = times.sum()
    if total <= 0:
        return _mac_shares(graph), "MACs (the profile was empty)"
    return times / total, "onnxruntime per-node profile on this host"


def _mac_shares(graph: PartitionGraph) -> np.ndarray:
    macs = graph.macs.astype(np.float64) + 1.0  # every node costs something
    return macs / macs.sum()


def time_model(
    model_path: Path, feed: Mapping[str, np.ndarray], seconds: float = 1.0, min_runs: int = 5
) -> float:
    """Mean latency (ms) of the whole model here with default session options."""
    from edgekit.split.run_shards import session

    sess = session(model_path, optimize=True)
    names = [i.name for i in sess.get_inputs()]
    feed = {k: v for k, v in feed.items() if k in names}
    sess.run(None, feed)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1000.0)
        if len(times) >= 1000:
            break
    return float(np.median(times))
