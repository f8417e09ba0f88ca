"""`edgekit bench PIPELINE_DIR`: run an exported split on its devices, as a pipeline.

Each shard runs on its device in a stage server (stage_server.py, which loads the artifact with the agent's own
runners) reached through the device's transport (local, SSH; stage_client.py is the host side). Intermediate
tensors are relayed through this host: a stage's outputs come back here and go to the stages that read
them. Two passes over the same samples (the validation set, or seeded random inputs):

- latency: one sample in flight; end-to-end time per sample, each stage's device compute time and
  its relay time (the round trip minus the device's own busy time: transfer in and out, framing);
- throughput: every stage busy at once (samples queued), inferences per second over the run.

The hop between two stages is the relay out of the first plus the relay into the second; each stage's
relay is split between its input and output by their bytes. End-to-end fidelity compares the pipeline's
outputs with the unsplit FP32 model run here. Results go to results.jsonl (bench_records.py): one record
per stage (shard latency and peak memory, which later plans read back) and one for the pipeline, with
the plan's predictions next to the measurements.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import BadInput
from edgekit.split import pipeline as pipeline_file
from edgekit.split import run_shards
from edgekit.split.bench_records import pipeline_records
from edgekit.split.stage_client import (
    PipelineBenchSettings,
    Stage,
    call_stage,
    latency_pass,
    start_stage,
    stop_stage,
    throughput_pass,
)

log = logging.getLogger(__name__)


def load_stages(
    directory: Path, data: Mapping[str, Any], devices: Mapping[str, Any], names: Sequence[str]
) -> list[Stage]:
    from edgekit.runner import Artifact

    shards = data["shards"]
    missing = [s["index"] for s in shards if not s.get("artifact")]
    if missing:
        raise BadInput(
            f"{directory} holds FP32 shards, not exported ones: export them first "
            f"(edgekit export {directory} --target TARGET[,TARGET...]) and bench the .pipeline directory"
        )
    chosen = list(names) or [s.get("device") for s in shards]
    if len(chosen) != len(shards) or not all(chosen):
        raise BadInput(
            f"{directory}: name one device per shard in order ({len(shards)} shards): --device A --device B ..."
        )
    from edgekit.inventory import select_devices

    selected = select_devices(dict(devices), [str(n) for n in chosen])
    return [
        Stage(index, shard, Artifact.load(directory / shard["artifact"]), device)
        for index, (shard, device) in enumerate(zip(shards, selected, strict=True))
    ]


def bench_pipeline(
    directory: str | Path,
    devices: Mapping[str, Any],
    names: Sequence[str] = (),
    settings: PipelineBenchSettings | None = None,
    results: str | Path = "results.jsonl",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the pipeline and append its records to `results`; returns the pipeline record."""
    settings = settings or PipelineBenchSettings()
    directory = Path(directory).expanduser()
    data = pipeline_file.read(directory)
    stages = load_stages(directory, data, devices, names)
    gates = _gates(stages[-1], settings)  # an unknown profile fails before any device is touched
    feeds, labels, boxes = _inputs(data, settings)
    say = progress or (lambda _: None)

    async def run() -> dict[str, Any]:
        try:
            for stage in stages:
                say(f"starting shard {stage.index} on {stage.device.name}")
                await start_stage(stage, settings)
            say("warm-up")
            for feed in feeds[: settings.warmup]:
                values = dict(feed)
                for stage in stages:
                    await call_stage(stage, values, settings.timeout_s)
            say(f"latency: {len(feeds)} samples, one in flight")
            outputs = [o["name"] for o in data["source"]["outputs"]]
            e2e, per_stage, results_out = await latency_pass(stages, feeds, settings.timeout_s, outputs)
            say(f"throughput: {len(feeds)} samples, every stage busy")
            fps = await throughput_pass(stages, feeds, settings.timeout_s)
        finally:
            await asyncio.gather(*(stop_stage(stage) for stage in stages), return_exceptions=True)
        return {"e2e": e2e, "per_stage": per_stage, "outputs": results_out, "fps": fps}

    measured = asyncio.run(run())
    record = pipeline_records(directory, data, stages, measured, settings, results)
    record["fidelity"] = _fidelity(data, feeds, labels, measured["outputs"], gates, settings, boxes)
    from edgekit.runner import ResultWriter

    ResultWriter(results).write(record)
    return record


def _inputs(
    data: Mapping[str, Any], settings: PipelineBenchSettings
) -> tuple[list[dict[str, np.ndarray]], Any, Any]:
    specs = [(i["name"], i["shape"] or [], i["dtype"] or "float32") for i in data["source"]["inputs"]]
    if settings.val is None:
        return run_shards.random_feeds(specs, settings.samples, settings.seed), None, None
    from edgekit.calib import CalibrationSet, InputInfo

    val = CalibrationSet.load(settings.val, settings.val_samples)
    reader = val.validate([InputInfo(n, tuple(s), np.dtype(d)) for n, s, d in specs], "validation set")
    feeds = [dict(f) for f in reader.feeds(1)]
    return feeds, val.labels, val.boxes


def _gates(last: Stage, settings: PipelineBenchSettings) -> Any:
    """The gates of the last shard's target profile (what its outputs are held to), with overrides."""
    from edgekit.targets import gates_for_artifact

    return gates_for_artifact(last.artifact.manifest, settings.gate_overrides, settings.targets_dirs)


def _fidelity(
    data: Mapping[str, Any],
    feeds: list[dict[str, np.ndarray]],
    labels: Any,
    actual: list[dict[str, np.ndarray]],
    gates: Any,
    settings: PipelineBenchSettings | None = None,
    boxes: Any = None,
) -> dict[str, Any]:
    """The pipeline's outputs vs the unsplit FP32 model run here (the same metrics as verify), judged by
    the unsplit model's task (--task overrides what infer_task reads from it); without that model, a
    record that says the fidelity was not measured (passed None: never a pass)."""
    from edgekit import ingest, task_options
    from edgekit.fidelity import compare

    source = Path(data["source"].get("path", ""))
    if not source.is_file() or ingest.model_sha256(source) != data["source"]["sha256"]:
        reason = f"the unsplit model is not at {source} (or changed since the split): no end-to-end fidelity"
        log.warning("%s", reason)
        return {"where": "pipeline", "status": "not measured", "passed": None, "reason": reason}
    reference = run_shards.full_outputs(source, feeds, optimize=True)
    names = list(reference[0])
    ref = {n: np.stack([np.asarray(r[n]) for r in reference]) for n in names}
    act = {
        n: np.stack([np.asarray(a[n], dtype=np.asarray(reference[0][n]).dtype) for a in actual])
        for n in names
    }
    settings = settings or PipelineBenchSettings()
    task = task_options.task_of(None, settings.task, source)
    metric = task_options.load_metric(settings.metric)
    report = compare(ref, act, labels, gates, where="pipeline", task=task, metric=metric, boxes=boxes)
    report.runtime = "the pipeline's stages on their devices, relayed through this host"
    precisions = sorted({str(s["precision"]) for s in data.get("shards", []) if s.get("precision")})
    report.precision = ",".join(precisions) or None
    report.device = "pipeline"
    return report.to_json()
