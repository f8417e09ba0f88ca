"""The host side of a pipeline bench's stage servers: start one per shard on its device (stage_server.py,
through the device's transport), send a sample's inputs and read its outputs back (length-prefixed
frames of npz), stop them; and the two passes over the samples (latency, throughput)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import struct
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import Unreachable

STAGE_SCRIPT = Path(__file__).resolve().with_name("stage_server.py")


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
    #: what the unsplit model is for (None: infer_task on it) and a user metric (callable or module:function)
    task: str | None = None
    metric: Any = None


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
    except (TimeoutError, asyncio.TimeoutError) as exc:  # noqa: UP041 - distinct before Python 3.11
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


async def start_stage(stage: Stage, settings: PipelineBenchSettings) -> None:
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


async def stop_stage(stage: Stage) -> None:
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


async def call_stage(stage: Stage, values: dict[str, np.ndarray], timeout: float) -> dict[str, float]:
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


async def latency_pass(
    stages: list[Stage], feeds: list[dict[str, np.ndarray]], timeout: float, outputs: Sequence[str]
) -> tuple[list[float], list[list[dict[str, float]]], list[dict[str, np.ndarray]]]:
    e2e: list[float] = []
    per_stage: list[list[dict[str, float]]] = [[] for _ in stages]
    results = []
    for feed in feeds:
        values = dict(feed)
        started = time.perf_counter()
        for stage in stages:
            per_stage[stage.index].append(await call_stage(stage, values, timeout))
        e2e.append((time.perf_counter() - started) * 1000.0)
        results.append({name: values[name] for name in outputs})
    return e2e, per_stage, results


async def throughput_pass(stages: list[Stage], feeds: list[dict[str, np.ndarray]], timeout: float) -> float:
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
            await call_stage(stage, values, timeout)
            queues[stage.index + 1].put_nowait(values)

    started = time.perf_counter()
    await asyncio.gather(*(worker(stage) for stage in stages))
    return len(feeds) / (time.perf_counter() - started)
