"""`edgekit bench PIPELINE_DIR`: run an exported split on its devices, as a pipeline.

Each shard runs on its device in a stage server (stage.py, which loads the artifact with the agent's
own runners) reached through the device's transport (local, SSH). Intermediate tensors are relayed
through this host: a stage's outputs come back here and go to the stages that read them. Two passes
over the same samples (the validation set, or seeded random inputs):

- latency: one sample in flight; end-to-end time per sample, each stage's device compute time and
  its relay time (the round trip minus the device's own busy time: transfer in and out, framing);
- throughput: every stage busy at once (samples queued), inferences per second over the run.

The hop between two stages is the relay out of the first plus the relay into the second; each
stage's relay is split between its input and output by their bytes. End-to-end fidelity compares the
pipeline's outputs with the unsplit FP32 model run here. Results go to results.jsonl: one record per
stage (shard latency and peak memory, which later plans read back) and one for the pipeline, with
the plan's predictions next to the measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import struct
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import BadInput, Unreachable
from edgekit.split import chain
from edgekit.split import pipeline as pipeline_file

log = logging.getLogger(__name__)

STAGE_SCRIPT = Path(__file__).resolve().with_name("stage.py")


@dataclass
class PipelineBenchSettings:
    samples: int = 50
    warmup: int = 5
    val: Path | None = None
    val_samples: int | None = None
    threads: int | None = None
    timeout_s: float = 600.0
    seed: int = 0
    #: end-to-end fidelity gates: the last shard's target profile, with these overrides
    gate_overrides: Mapping[str, float | None] = field(default_factory=dict)
    targets_dirs: Sequence[str] = ()


@dataclass
class Stage:
    index: int
    shard: dict[str, Any]
    artifact: Any  # runner.Artifact
    device: Any  # inventory.Device
    transport: Any = None
    process: Any = None
    run_dir: str = ""
    ready: dict[str, Any] | None = None
    done: dict[str, Any] | None = None

    @property
    def inputs(self) -> list[str]:
        return [i["name"] for i in self.shard["inputs"]]


def _encode(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    return buffer.getvalue()


async def _read_frame(stage: Stage, timeout: float) -> tuple[dict[str, Any], bytes]:
    try:
        head = await asyncio.wait_for(stage.process.stdout.readexactly(12), timeout)
        length, meta_len = struct.unpack(">QI", head)
        body = await asyncio.wait_for(stage.process.stdout.readexactly(length - 4), timeout)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        tail = (stage.process.stderr_tail().strip().splitlines() or ["no output"])[-1]
        raise Unreachable(
            f"{stage.device.name}: the stage server for shard {stage.index} stopped: {tail}"
        ) from exc
    except TimeoutError as exc:
        tail = (stage.process.stderr_tail().strip().splitlines() or ["nothing on stderr"])[-1]
        raise Unreachable(
            f"{stage.device.name}: shard {stage.index} did not answer in {timeout:.0f} s ({tail})"
        ) from exc
    meta = json.loads(body[:meta_len].decode("utf-8"))
    if meta.get("status") == "failed":
        raise Unreachable(
            f"{stage.device.name}: shard {stage.index} failed on the device: {meta.get('error')}"
        )
    return meta, body[meta_len:]


async def _start(stage: Stage, settings: PipelineBenchSettings) -> None:
    from edgekit import runner
    from edgekit.digest import file_sha256

    transport = stage.device.make_transport()
    await transport.connect()
    stage.transport = transport
    agent = await transport.ensure_agent()
    script = transport.path(f"stage-{file_sha256(STAGE_SCRIPT)[:12]}.py")
    await transport.upload(STAGE_SCRIPT, script)
    art = stage.artifact
    art_dir = transport.path("artifacts", art.sha256[:16])
    for rel, digest in art.files():
        await transport.upload(art.dir / rel, f"{art_dir}/{rel}", digest)
    job = runner.Job(art, stage.device)
    bench_settings = runner.BenchSettings(threads=settings.threads, timeout_s=settings.timeout_s)
    # the backend says what the device loads (TensorRT builds its engine there) and where it runs
    entry = await art.backend_impl().on_device_entry(transport, job, art_dir, bench_settings, lambda _: None)
    stage.run_dir = transport.path("runs", uuid.uuid4().hex[:12])
    await transport.mkdirs(stage.run_dir)
    spec = runner.job_spec(job, entry, bench_settings)
    with tempfile.TemporaryDirectory(prefix="edgekit-stage-") as tmp:
        local = Path(tmp) / "job.json"
        local.write_text(json.dumps(spec), encoding="utf-8")
        await transport.upload(local, f"{stage.run_dir}/job.json")
    stage.process = await transport.open_process(
        [*transport.python_argv, script, agent, f"{stage.run_dir}/job.json"]
    )
    stage.ready, _ = await _read_frame(stage, settings.timeout_s)


async def _stop(stage: Stage) -> None:
    if stage.process is not None:
        with contextlib.suppress(Exception):
            stage.process.stdin.write(struct.pack(">Q", 0))
            await stage.process.stdin.drain()
            stage.done, _ = await _read_frame(stage, 30)
        with contextlib.suppress(Exception):
            stage.process.stdin.write_eof()
        try:
            await asyncio.wait_for(stage.process.wait(), 10)
        except (TimeoutError, Exception):  # noqa: BLE001
            stage.process.kill()
    if stage.transport is not None:
        if stage.run_dir:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stage.transport.remove(stage.run_dir), 10)
        await stage.transport.close()


async def _call(stage: Stage, values: dict[str, np.ndarray], timeout: float) -> dict[str, float]:
    """Send one sample's inputs to a stage, put its outputs into `values`; returns timings (ms)."""
    payload = _encode({name: values[name] for name in stage.inputs})
    started = time.perf_counter()
    stage.process.stdin.write(struct.pack(">Q", len(payload)) + payload)
    await stage.process.stdin.drain()
    meta, body = await _read_frame(stage, timeout)
    rtt = (time.perf_counter() - started) * 1000.0
    with np.load(io.BytesIO(body)) as data:
        out_bytes = 0
        for name in data.files:
            values[name] = data[name]
            out_bytes += data[name].nbytes
    return {
        "rtt_ms": rtt,
        "compute_ms": float(meta["compute_ms"]),
        "relay_ms": max(0.0, rtt - float(meta["busy_ms"])),
        "in_bytes": float(sum(values[n].nbytes for n in stage.inputs)),
        "out_bytes": float(out_bytes),
    }


async def _latency_pass(
    stages: list[Stage], feeds: list[dict[str, np.ndarray]], timeout: float, outputs: Sequence[str]
) -> tuple[list[float], list[list[dict[str, float]]], list[dict[str, np.ndarray]]]:
    e2e: list[float] = []
    per_stage: list[list[dict[str, float]]] = [[] for _ in stages]
    results = []
    for feed in feeds:
        values = dict(feed)
        started = time.perf_counter()
        for stage in stages:
            per_stage[stage.index].append(await _call(stage, values, timeout))
        e2e.append((time.perf_counter() - started) * 1000.0)
        results.append({name: values[name] for name in outputs})
    return e2e, per_stage, results


async def _throughput_pass(stages: list[Stage], feeds: list[dict[str, np.ndarray]], timeout: float) -> float:
    """All stages busy: a queue between consecutive stages; returns inferences per second."""
    queues: list[asyncio.Queue[dict[str, np.ndarray] | None]] = [
        asyncio.Queue() for _ in range(len(stages) + 1)
    ]
    for feed in feeds:
        queues[0].put_nowait(dict(feed))
    queues[0].put_nowait(None)

    async def worker(stage: Stage) -> None:
        while True:
            values = await queues[stage.index].get()
            if values is None:
                queues[stage.index + 1].put_nowait(None)
                return
            await _call(stage, values, timeout)
            queues[stage.index + 1].put_nowait(values)

    started = time.perf_counter()
    await asyncio.gather(*(worker(stage) for stage in stages))
    return len(feeds) / (time.perf_counter() - started)


def _stats(values: Sequence[float]) -> dict[str, float]:
    from edgekit.agent import latency_stats

    return latency_stats(list(values))


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
    feeds, labels = _inputs(data, settings)
    say = progress or (lambda _: None)

    async def run() -> dict[str, Any]:
        try:
            for stage in stages:
                say(f"starting shard {stage.index} on {stage.device.name}")
                await _start(stage, settings)
            say("warm-up")
            for feed in feeds[: settings.warmup]:
                values = dict(feed)
                for stage in stages:
                    await _call(stage, values, settings.timeout_s)
            say(f"latency: {len(feeds)} samples, one in flight")
            outputs = [o["name"] for o in data["source"]["outputs"]]
            e2e, per_stage, results_out = await _latency_pass(stages, feeds, settings.timeout_s, outputs)
            say(f"throughput: {len(feeds)} samples, every stage busy")
            fps = await _throughput_pass(stages, feeds, settings.timeout_s)
        finally:
            await asyncio.gather(*(_stop(stage) for stage in stages), return_exceptions=True)
        return {"e2e": e2e, "per_stage": per_stage, "outputs": results_out, "fps": fps}

    measured = asyncio.run(run())
    record = _records(directory, data, stages, measured, settings, results)
    record["fidelity"] = _fidelity(data, feeds, labels, measured["outputs"], gates)
    from edgekit.runner import ResultWriter

    ResultWriter(results).write(record)
    return record


def _inputs(
    data: Mapping[str, Any], settings: PipelineBenchSettings
) -> tuple[list[dict[str, np.ndarray]], Any]:
    specs = [(i["name"], i["shape"] or [], i["dtype"] or "float32") for i in data["source"]["inputs"]]
    if settings.val is None:
        return chain.random_feeds(specs, settings.samples, settings.seed), None
    from edgekit.calib import CalibrationSet, InputInfo

    val = CalibrationSet.load(settings.val, settings.val_samples)
    reader = val.validate([InputInfo(n, tuple(s), np.dtype(d)) for n, s, d in specs], "validation set")
    feeds = [dict(f) for f in reader.feeds(1)]
    return feeds, val.labels


def _records(
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


def _gates(last: Stage, settings: PipelineBenchSettings) -> Any:
    """The gates of the last shard's target profile (what its outputs are held to), with overrides."""
    from edgekit.api.exporting import gates_for_artifact

    return gates_for_artifact(last.artifact.manifest, settings.gate_overrides, settings.targets_dirs)


def _fidelity(
    data: Mapping[str, Any],
    feeds: list[dict[str, np.ndarray]],
    labels: Any,
    actual: list[dict[str, np.ndarray]],
    gates: Any,
) -> dict[str, Any] | None:
    """The pipeline's outputs vs the unsplit FP32 model run here (the same metrics as verify)."""
    from edgekit import ingest
    from edgekit.fidelity import compare

    source = Path(data["source"].get("path", ""))
    if not source.is_file() or ingest.model_sha256(source) != data["source"]["sha256"]:
        log.warning("the unsplit model is not at %s (or changed): no end-to-end fidelity", source)
        return None
    reference = chain.full_outputs(source, feeds, optimize=True)
    names = list(reference[0])
    ref = {n: np.stack([np.asarray(r[n]) for r in reference]) for n in names}
    act = {
        n: np.stack([np.asarray(a[n], dtype=np.asarray(reference[0][n]).dtype) for a in actual])
        for n in names
    }
    report = compare(ref, act, labels, gates, where="pipeline")
    return report.to_json()
