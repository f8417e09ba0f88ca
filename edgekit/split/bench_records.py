"""The records a pipeline bench writes to results.jsonl: one per stage (shard latency, relay, peak
memory: what later plans read back) and one for the pipeline, with the plan's predictions."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.split.stage_client import Stage

if TYPE_CHECKING:
    from edgekit.split.stage_client import PipelineBenchSettings


def _stats(values: Sequence[float]) -> dict[str, float]:
    from edgekit.agent import latency_stats

    return latency_stats(list(values))


def pipeline_records(
    directory: Path,
    data: Mapping[str, Any],
    stages: list[Stage],
    measured: Mapping[str, Any],
    settings: PipelineBenchSettings,
    results: str | Path,
) -> dict[str, Any]:
    from edgekit.runner import BenchSettings, Job, ResultWriter, base_record

    writer = ResultWriter(results)
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    source = data["source"]
    stage_rows = []
    for stage in stages:
        calls = measured["per_stage"][stage.index]
        compute = [c["compute_ms"] for c in calls]
        relay = [c["relay_ms"] for c in calls]
        row = base_record(
            Job(stage.artifact, stage.device), BenchSettings(iterations=len(calls), warmup=settings.warmup)
        )
        row.update(
            kind="pipeline-stage",
            status="ok",
            timestamp=now,
            latency_ms=_stats(compute),
            throughput_fps=1000.0 / float(np.mean(compute)) if compute else None,
            relay_ms=_stats(relay),
            relay_bytes=float(np.mean([c["in_bytes"] + c["out_bytes"] for c in calls])) if calls else None,
            init_ms=(stage.ready or {}).get("init_ms"),
            runtime=(stage.ready or {}).get("runtime"),
            peak_rss_mb=(stage.done or {}).get("peak_rss_mb"),
            rss_before_load_mb=(stage.ready or {}).get("rss_before_load_mb"),
            pipeline={
                "dir": str(directory),
                "source_sha256": source["sha256"],
                "shard": stage.index,
                "nodes": stage.shard["nodes"],
                "relay": "host",
            },
        )
        row["settings"]["input_source"] = "validation" if settings.val else f"random(seed={settings.seed})"
        writer.write(row)
        stage_rows.append(
            {
                "shard": stage.index,
                "device": stage.device.name,
                "target": stage.artifact.target,
                "precision": stage.artifact.precision,
                "compute_ms": row["latency_ms"],
                "relay_ms": row["relay_ms"],
                "predicted_ms": stage.shard.get("predicted_ms"),
                "peak_rss_mb": row["peak_rss_mb"],
                "runtime_memory_mb": (row["peak_rss_mb"] - row["rss_before_load_mb"])
                if row["peak_rss_mb"] is not None and row["rss_before_load_mb"] is not None
                else None,
                "memory_estimate_mb": _estimate_mb(stage),
                "in_bytes": float(np.mean([c["in_bytes"] for c in calls])),
                "out_bytes": float(np.mean([c["out_bytes"] for c in calls])),
            }
        )
    hops = []
    for k in range(len(stages) - 1):
        src, dst = stage_rows[k], stage_rows[k + 1]
        out_share = src["out_bytes"] / max(1.0, src["in_bytes"] + src["out_bytes"])
        in_share = dst["in_bytes"] / max(1.0, dst["in_bytes"] + dst["out_bytes"])
        measured_ms = out_share * src["relay_ms"]["p50"] + in_share * dst["relay_ms"]["p50"]
        cut = data["cuts"][k] if k < len(data.get("cuts", [])) else {}
        hops.append(
            {
                "from": k,
                "to": k + 1,
                "bytes": cut.get("bytes"),
                "measured_ms": measured_ms,
                "predicted_ms": cut.get("predicted_ms"),
            }
        )
    e2e = _stats(measured["e2e"])
    predicted = data.get("predicted", {})
    names = [s.device.name for s in stages]
    return {
        "schema": 1,
        "kind": "pipeline",
        "timestamp": now,
        "status": "ok",
        "error": None,
        "artifact": {
            "name": directory.name,
            "dir": str(directory),
            "model": source["name"],
            "target": "+".join(s.artifact.target for s in stages),
            "precision": "+".join(s.artifact.precision for s in stages),
        },
        "device": {"name": "+".join(names), "devices": names},
        "pipeline": {
            "dir": str(directory),
            "source_sha256": source["sha256"],
            "shards": len(stages),
            "relay": "host: each hop downloads a stage's outputs here and uploads them to the next stage",
        },
        "settings": {"samples": len(measured["e2e"]), "warmup": settings.warmup, "threads": settings.threads},
        "latency_ms": e2e,
        "throughput_fps": measured["fps"],
        "stages": stage_rows,
        "hops": hops,
        "predicted": {
            "where": predicted.get("where"),
            "planned_devices": data.get("plan", {}).get("devices"),
            "latency_ms": predicted.get("latency_ms"),
            "throughput_fps": predicted.get("throughput_fps"),
        },
    }


def _estimate_mb(stage: Stage) -> float | None:
    """The memory model of the runtime this stage ran on, where that runtime was measured."""
    from edgekit import analysis

    features = stage.shard.get("memory_features")
    runtime = stage.artifact.backend
    if not features or runtime not in analysis.MEMORY_MODELS:
        return None
    model = analysis.MEMORY_MODELS[runtime]
    return model.estimate(
        features["weight_bytes_by_class"], features["peak_activation_bytes"], features["nodes"]
    ) / (1024 * 1024)
