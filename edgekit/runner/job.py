"""One (artifact, device) job: connect, upload what the device needs, write the job file, run the agent,
bring its result (and on-device outputs) home, clean the run folder up.

The backend answers every backend question: which files go to the device (`device_files`), which file
the agent loads (`on_device_entry`: TensorRT builds its engine on the device there) and the runtime's
device string (`run_device`: OpenVINO "GPU" / "NPU" from the target profile).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekit.fsio import safe_name
from edgekit.inventory import Device
from edgekit.manifest import now
from edgekit.runner.workload import BenchSettings, Job
from edgekit.transport import Transport, TransportError, sha256_file

SCHEMA = 1
FATAL_KINDS = ("unreachable", "auth", "host_key")  # no point retrying this device in this run
# agent result keys copied into the record as they are (see edgekit/agent.py sample_fields)
STATISTICS_KEYS = (
    "latency_samples_ms",
    "latency_histogram",
    "latency_block_p50_ms",
    "block_spread_pct",
    "repeats",
    "repeat_p50_ms",
    "repeat_counts",
    "run_spread_pct",
    "conditions",
)


def base_record(job: Job, settings: BenchSettings) -> dict[str, Any]:
    art, dev = job.artifact, job.device
    record = _base_record(job, settings)
    if dev.transport == "local":  # this machine: an artifact for another architecture is a host proxy
        from edgekit.targets import host_proxy

        proxy = host_proxy(art.profile)
        if proxy:
            record["host_proxy"] = proxy
            record["warnings"].append(proxy)
    return record


def _base_record(job: Job, settings: BenchSettings) -> dict[str, Any]:
    art, dev = job.artifact, job.device
    return {
        "schema": SCHEMA,
        "timestamp": now(),
        "status": "failed",
        "error": None,
        "error_kind": None,
        "artifact": {
            "sha256": art.sha256,
            "name": art.name,
            "dir": str(art.dir),
            "target": art.target,
            "backend": art.backend,
            "precision": art.precision,
            "model": (art.manifest.get("source") or {}).get("name")
            if isinstance(art.manifest.get("source"), dict)
            else art.manifest.get("model"),
        },
        "device": {
            "name": dev.name,
            "target": dev.target,
            "transport": dev.transport,
            "host": dev.address(),
            "environment": None,
        },
        "settings": {
            "warmup": settings.warmup,
            "iterations": settings.iterations,
            "min_duration_s": settings.min_duration_s,
            "threads": settings.threads or dev.threads,
            "seed": settings.seed,
            "repeats": settings.repeats,
            "input_source": "validation" if settings.validation else f"random(seed={settings.seed})",
            "shapes": job.shapes,  # the shapes stated for this run (None: the artifact's own): --resume's key
        },
        "shapes": job.shapes,  # what was timed, by source input name
        "runtime": None,
        "latency_ms": None,
        "throughput_fps": None,
        "init_ms": None,
        "first_inference_ms": None,
        "peak_rss_mb": None,
        "outputs_file": None,
        "warnings": list(job.warnings),
        "wall_s": None,
    }


class DeviceSession:
    """One device's connection, reused across its jobs; remembers a fatal failure."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.transport: Transport | None = None
        self.fatal: TransportError | None = None
        self.agent = ""

    async def get(self) -> Transport:
        if self.fatal is not None:
            raise self.fatal
        if self.transport is None:
            transport = self.device.make_transport()
            try:
                await transport.connect()
                self.agent = await transport.ensure_agent()
            except TransportError as exc:
                await transport.close()
                if exc.kind in FATAL_KINDS:
                    self.fatal = exc
                raise
            except BaseException:
                await transport.close()
                raise
            self.transport = transport
        return self.transport

    async def drop(self) -> None:
        if self.transport is not None:
            await self.transport.close()
            self.transport = None

    async def close(self) -> None:
        await self.drop()


def job_spec(job: Job, entry: str, settings: BenchSettings) -> dict[str, Any]:
    """The job file the agent reads (see edgekit/agent.py's docstring for its keys)."""
    art = job.artifact
    backend = art.backend_impl()
    inputs = [dict(spec) for spec in art.manifest["inputs"]]
    for spec in inputs:  # the shapes this run times (stated, or left for the agent to refuse by name)
        shape = (job.shapes or {}).get(str(spec.get("source_name", spec["name"])))
        if shape is not None:
            spec["shape"] = list(shape)
    from edgekit.runner.shapes import artifact_ranges

    return {
        "entry": entry,
        "backend": backend.agent_backend(),
        "precision": art.precision,
        "inputs": inputs,
        "input_ranges": artifact_ranges(art.manifest, art.dir),
        "outputs": art.manifest.get("outputs", []),
        "iterations": settings.iterations,
        "warmup": settings.warmup,
        "min_duration_s": settings.min_duration_s,
        "threads": settings.threads or job.device.threads,
        "seed": settings.seed,
        "device": backend.run_device(art.profile, art.manifest),
        "timeout_s": settings.timeout_s,
        "repeats": settings.repeats,
        **decode_spec(art.manifest, settings),
    }


def is_decoder(manifest: dict[str, Any]) -> bool:
    """A decoder with a KV cache: input_ids and past_key_values.N.key/value (or past.N...) inputs."""
    from edgekit.analysis.decoder import PAST

    names = [str(i.get("source_name") or i["name"]) for i in manifest.get("inputs", [])]
    return "input_ids" in names and any(PAST.match(n) for n in names)


def decode_spec(manifest: dict[str, Any], settings: BenchSettings) -> dict[str, Any]:
    """{"decode": ...} for a decoder with a KV cache (cache inputs by name), so the agent times the
    generation loop at the prompt and context lengths; {} for any other model."""
    if not is_decoder(manifest):
        return {}
    logits = next(
        (o for o in manifest.get("outputs", []) if (o.get("source_name") or o["name"]) == "logits"), None
    )
    vocab = logits["shape"][-1] if logits and isinstance(logits["shape"][-1], int) else None
    contexts = list(settings.contexts) or [settings.prompt * 2, settings.prompt * 4]
    return {"decode": {"prompt": settings.prompt, "contexts": contexts, "batch": 1, "vocab": vocab}}


async def run_job(
    session: DeviceSession,
    job: Job,
    settings: BenchSettings,
    outputs_dir: Path,
    emit: Callable[[str], None],
) -> dict[str, Any]:
    record = base_record(job, settings)
    art = job.artifact
    started = time.perf_counter()
    run_dir = ""
    transport: Transport | None = None
    try:
        emit("connecting")
        transport = await session.get()
        emit("uploading")
        art_dir = transport.path("artifacts", art.sha256[:16])
        for rel, digest in art.files():
            await transport.upload(art.dir / rel, f"{art_dir}/{rel}", digest)
        from edgekit.runner.workdir_bound import prune_workdir

        record["warnings"].extend(await prune_workdir(transport, art_dir))  # the device's bound, LRU
        entry = await art.backend_impl().on_device_entry(transport, job, art_dir, settings, emit)
        run_dir = transport.path("runs", uuid.uuid4().hex[:12])
        await transport.mkdirs(run_dir)
        spec = job_spec(job, entry, settings)
        if settings.validation:
            digest = sha256_file(settings.validation)
            remote_val = transport.path("data", f"{digest[:16]}.npz")
            await transport.upload(settings.validation, remote_val, digest)
            spec["validation"] = remote_val
            spec["outputs_file"] = f"{run_dir}/outputs.npz"
        with tempfile.TemporaryDirectory(prefix="edgekit-job-") as tmp:
            local_job = Path(tmp) / "job.json"
            local_job.write_text(json.dumps(spec), encoding="utf-8")
            await transport.upload(local_job, f"{run_dir}/job.json")
        emit("running")
        rc, out, err = await transport.run(
            transport.agent_argv(session.agent, f"{run_dir}/job.json"), timeout=settings.timeout_s
        )
        result = _parse_agent(out)
        if result is None:
            tail = (err.strip().splitlines() or [f"exit {rc}, no output"])[-1]
            raise TransportError(
                f"{job.device.name}: the agent printed no result (exit {rc}): {tail}", "agent"
            )
        record["device"]["environment"] = result.get("environment")
        record["runtime"] = result.get("runtime")
        if result.get("status") != "ok":
            record["error"] = f"{job.device.name}: {result.get('error')}"
            record["error_kind"] = result.get("error_kind", "agent")
        else:
            for key in (
                "latency_ms",
                "throughput_fps",
                "init_ms",
                "first_inference_ms",
                "peak_rss_mb",
                "rss_before_load_mb",  # the runtime's own memory = peak - this (edgekit.analysis)
            ):
                record[key] = result.get(key)
            for key in STATISTICS_KEYS:  # what `edgekit report` needs for its statistics
                if key in result:
                    record[key] = result[key]
            if result.get("decode"):  # the decode loop's figures (prefill, TTFT, per-token, tokens/s)
                record["decode"] = result["decode"]
            record["settings"]["iterations"] = result.get("iterations")
            record["settings"]["input_source"] = result.get("input_source")
            if result.get("shapes"):  # what the agent fed (the stated shapes, a dynamic batch as 1)
                record["shapes"] = result["shapes"]
            if result.get("validation"):
                local_out = outputs_dir / f"{art.sha256[:12]}-{safe_name(job.device.name)}.npz"
                await transport.download(result["validation"]["outputs_file"], local_out)
                record["outputs_file"] = str(local_out)
                record["validation_samples"] = result["validation"].get("samples")
            record["status"] = "ok"
    except TransportError as exc:
        record["error"] = str(exc)
        record["error_kind"] = exc.kind
        if exc.kind in ("lost", "timeout"):
            await session.drop()
    finally:
        if run_dir and transport is not None and session.transport is transport:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(transport.remove(run_dir)), 10)
    record["wall_s"] = time.perf_counter() - started
    record["timestamp"] = now()
    return record


def _parse_agent(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                return json.loads(line)
    return None
