"""`edgekit bench`: run every artifact on every matching device, as a fleet, robustly.

Flow per (artifact, device) job: connect (one connection per device, reused), send the agent and the
artifact files (content-addressed under `<workdir>/artifacts/<sha>/`, skipped when already there), write
a job file into a private run folder `<workdir>/runs/<id>/`, run the agent, parse its JSON, fetch the
outputs file when a validation set was given, delete the run folder. Each finished job is appended to
results.jsonl at once (flush + fsync), so a dead run loses nothing and `resume=True` redoes only what
is missing. A failing device is recorded `failed` with its reason; the other devices go on.

On-device fidelity: with `BenchSettings.validation` set, the agent runs every validation sample and
the outputs come home as an .npz next to results.jsonl (`<results>.outputs/<artifact-sha12>-<device>.npz`,
keyed by the model's SOURCE output names, float32, first axis = samples). Its path is the record's
`outputs_file`; the CLI feeds `numpy.load(path)` to `edgekit.fidelity.compare(reference, outputs, labels)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from edgekit.errors import BadInput
from edgekit.inventory import Device
from edgekit.manifest import MANIFEST, file_records, manifest_sha256, read_manifest, write_json_atomic
from edgekit.transport import Transport, TransportError, sha256_file

log = logging.getLogger(__name__)

SCHEMA = 1
ENGINES_DIR = "engines"  # <artifact>/engines/<device>/: TensorRT engines built on each device
FATAL_KINDS = ("unreachable", "auth", "host_key")  # no point retrying this device in this run
ProgressHook = Callable[[dict[str, Any]], None]


@dataclass
class Artifact:
    dir: Path
    manifest: dict[str, Any]
    sha256: str  # of manifest.json: names the artifact (it lists every file's sha256)

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def target(self) -> str:
        return str(self.manifest.get("target", ""))

    @property
    def backend(self) -> str:
        return str(self.manifest.get("backend", ""))

    @property
    def precision(self) -> str:
        return str(self.manifest.get("precision", ""))

    @classmethod
    def load(cls, directory: str | Path) -> Artifact:
        directory = Path(directory)
        artifact = cls(directory, read_manifest(directory), manifest_sha256(directory))
        for rel, _ in artifact.files():
            if not (directory / rel).is_file():
                raise BadInput(f"{directory}: file '{rel}' listed in manifest.json is missing")
        return artifact

    def files(self) -> list[tuple[str, str | None]]:
        """(relative posix path, sha256 or None) of every file the device needs; entry included."""
        # engines built on devices stay home: each device gets only its own (see device_engine)
        listed = [
            (str(f["path"]), f.get("sha256"))
            for f in self.manifest.get("files", [])
            if not str(f["path"]).startswith(f"{ENGINES_DIR}/")
        ]
        if not any(p == self.manifest["entry"] for p, _ in listed):
            listed.append((str(self.manifest["entry"]), None))
        for rel, _ in listed:
            pure = PurePosixPath(rel)
            if pure.is_absolute() or ".." in pure.parts or not rel:
                raise BadInput(
                    f"{self.dir}/manifest.json: file path '{rel}' must be relative, inside the artifact"
                )
        return listed


@dataclass
class BenchSettings:
    iterations: int = 100
    warmup: int = 10
    min_duration_s: float = 0.0
    threads: int | None = None
    seed: int = 0
    timeout_s: float = 600.0
    validation: Path | None = None  # .npz: on-device fidelity (outputs come home)
    ov_device: str = "CPU"

    def to_json(self) -> dict[str, Any]:
        return {
            "iterations": self.iterations,
            "warmup": self.warmup,
            "min_duration_s": self.min_duration_s,
            "threads": self.threads,
            "seed": self.seed,
            "timeout_s": self.timeout_s,
            "validation": str(self.validation) if self.validation else None,
        }


@dataclass
class Job:
    artifact: Artifact
    device: Device
    warnings: list[str] = field(default_factory=list)


def load_artifacts(dirs: Iterable[str | Path]) -> list[Artifact]:
    artifacts = [Artifact.load(d) for d in dirs]
    if not artifacts:
        raise BadInput("no artifact directories given")
    return artifacts


def plan(
    artifacts: list[Artifact], devices: dict[str, Device], explicit: list[str] | None = None
) -> tuple[list[Job], list[str]]:
    """Pair artifacts with devices: by target, or every artifact on each explicitly named device
    (warning when the device's target differs). Returns (jobs, warnings)."""
    jobs: list[Job] = []
    warnings: list[str] = []
    if explicit:
        from edgekit.inventory import select_devices

        for device in select_devices(devices, explicit):
            for art in artifacts:
                job = Job(art, device)
                if device.target != art.target:
                    msg = (
                        f"{art.name} is built for target '{art.target}' but device '{device.name}' "
                        f"is '{device.target}'"
                    )
                    job.warnings.append(msg)
                    warnings.append(msg)
                jobs.append(job)
        return jobs, warnings
    for art in artifacts:
        matching = [d for d in devices.values() if d.target == art.target]
        if not matching:
            warnings.append(
                f"{art.name}: no device with target '{art.target}' in the inventory; name one with --device"
            )
        jobs.extend(Job(art, d) for d in matching)
    return jobs, warnings


# ----------------------------------------------------------------------------- results.jsonl


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Records of a results.jsonl; a torn last line (a run that died mid-write) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            log.warning("%s:%d: skipping an unreadable line (interrupted write?)", path, number)
    return records


def done_pairs(path: str | Path) -> set[tuple[str, str]]:
    return {
        (r["artifact"]["sha256"], r["device"]["name"])
        for r in read_results(path)
        if r.get("status") == "ok" and "artifact" in r and "device" in r
    }


class ResultWriter:
    """Appends one JSON line per record, flushed and fsynced before returning."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A torn last line from a killed run must not glue onto our first record.
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                needs_newline = fh.read(1) != b"\n"
            if needs_newline:
                self._append("\n")

    def _append(self, text: str) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def write(self, record: dict[str, Any]) -> None:
        self._append(json.dumps(record, default=str) + "\n")


# ----------------------------------------------------------------------------- one job


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "device"


def base_record(job: Job, settings: BenchSettings) -> dict[str, Any]:
    art, dev = job.artifact, job.device
    return {
        "schema": SCHEMA,
        "timestamp": _now(),
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
            "host": f"{dev.hostname or dev.host}:{dev.port}" if dev.transport == "ssh" else "localhost",
            "environment": None,
        },
        "settings": {
            "warmup": settings.warmup,
            "iterations": settings.iterations,
            "min_duration_s": settings.min_duration_s,
            "threads": settings.threads or dev.threads,
            "seed": settings.seed,
            "input_source": "validation" if settings.validation else f"random(seed={settings.seed})",
        },
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
        entry = f"{art_dir}/{art.manifest['entry']}"
        if art.backend == "tensorrt":
            entry = await device_engine(transport, job, art_dir, settings, emit)
        run_dir = transport.path("runs", uuid.uuid4().hex[:12])
        await transport.mkdirs(run_dir)
        job_spec: dict[str, Any] = {
            "entry": entry,
            "backend": art.backend,
            "precision": art.precision,
            "inputs": art.manifest["inputs"],
            "outputs": art.manifest.get("outputs", []),
            "iterations": settings.iterations,
            "warmup": settings.warmup,
            "min_duration_s": settings.min_duration_s,
            "threads": settings.threads or job.device.threads,
            "seed": settings.seed,
            "device": settings.ov_device,
            "timeout_s": settings.timeout_s,
        }
        if settings.validation:
            digest = sha256_file(settings.validation)
            remote_val = transport.path("data", f"{digest[:16]}.npz")
            await transport.upload(settings.validation, remote_val, digest)
            job_spec["validation"] = remote_val
            job_spec["outputs_file"] = f"{run_dir}/outputs.npz"
        with tempfile.TemporaryDirectory(prefix="edgekit-job-") as tmp:
            local_job = Path(tmp) / "job.json"
            local_job.write_text(json.dumps(job_spec), encoding="utf-8")
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
            record["settings"]["iterations"] = result.get("iterations")
            record["settings"]["input_source"] = result.get("input_source")
            if result.get("validation"):
                local_out = outputs_dir / f"{art.sha256[:12]}-{_safe(job.device.name)}.npz"
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
    record["timestamp"] = _now()
    return record


async def device_engine(
    transport: Transport, job: Job, art_dir: str, settings: BenchSettings, emit: Callable[[str], None]
) -> str:
    """The remote path of this device's TensorRT engine for a TensorRT bundle.

    TensorRT engines are tied to the GPU and TensorRT version that built them, so each device builds
    its own from the bundle's recipe (`build.sh`: trtexec with the calibration cache or the Q/DQ ONNX).
    The engine and the build log come home into `<artifact>/engines/<device>/`, and the device's
    TensorRT version and GPU (parsed from trtexec's banner) go into the manifest under
    `details.device_builds`. An engine already there is uploaded (skipped when the device has it).
    """
    art, device = job.artifact, job.device
    local_dir = art.dir / ENGINES_DIR / _safe(device.name)
    engine_name = ((art.manifest.get("details") or {}).get("build") or {}).get("engine") or "model.engine"
    if (local_dir / engine_name).is_file():
        remote = f"{art_dir}/{ENGINES_DIR}/{_safe(device.name)}/{engine_name}"
        await transport.upload(local_dir / engine_name, remote)
        return remote
    if not (art.dir / "build.sh").is_file():
        raise TransportError(
            f"{art.name}: no build.sh recipe in the bundle to build the engine with", "build"
        )
    emit("building")
    rc, out, err = await transport.run(["sh", f"{art_dir}/build.sh"], timeout=settings.timeout_s)
    log_text = out + ("\n" + err if err else "")
    local_dir.mkdir(parents=True, exist_ok=True)
    (local_dir / "build.log").write_text(log_text, encoding="utf-8")
    if rc != 0:
        last = next((line for line in reversed(log_text.splitlines()) if line.strip()), f"exit {rc}")
        raise TransportError(f"{device.name}: TensorRT engine build failed: {last.strip()[-300:]}", "build")
    remote = f"{art_dir}/{engine_name}"
    tmp_engine = local_dir / f".{engine_name}.part"
    await transport.download(remote, tmp_engine)
    os.replace(tmp_engine, local_dir / engine_name)
    record_device_build(art, device.name, log_text, local_dir / engine_name)
    return remote


def record_device_build(art: Artifact, device_name: str, log_text: str, engine: Path) -> None:
    """Add the engine and the device's TensorRT facts to the artifact's manifest (atomically)."""
    from edgekit import trt_formats

    facts = trt_formats.parse_trtexec_log(log_text)
    manifest = json.loads((art.dir / MANIFEST).read_text(encoding="utf-8"))
    details = manifest.setdefault("details", {})
    details.setdefault("device_builds", {})[device_name] = {
        "engine": engine.relative_to(art.dir).as_posix(),
        "engine_sha256": sha256_file(engine),
        "engine_bytes": engine.stat().st_size,
        "tensorrt": facts.get("tensorrt"),
        "gpu": facts.get("device"),
        "built": _now(),
        "log": (engine.parent / "build.log").relative_to(art.dir).as_posix(),
    }
    manifest["files"] = file_records(art.dir, manifest["entry"])
    write_json_atomic(art.dir / MANIFEST, manifest)
    art.manifest = manifest


def _parse_agent(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                return json.loads(line)
    return None


# ----------------------------------------------------------------------------- the fleet


async def run_bench(
    jobs: list[Job],
    settings: BenchSettings,
    results: str | Path,
    resume: bool = False,
    concurrency: int = 4,
    progress: ProgressHook | None = None,
) -> list[dict[str, Any]]:
    """Run the matrix; returns this run's records (also appended to `results` as each finishes).

    Devices run concurrently (at most `concurrency` at once), each device one job at a time.
    Cancelling the task (Ctrl-C) stops the jobs, deletes their device-side run folders and closes
    the connections; records already written stay.
    """
    results = Path(results)
    writer = ResultWriter(results)
    outputs_dir = results.with_name(results.name + ".outputs")
    skip = done_pairs(results) if resume else set()
    gate = asyncio.Semaphore(max(1, concurrency))
    records: list[dict[str, Any]] = []

    def notify(event: dict[str, Any]) -> None:
        if progress is not None:
            try:
                progress(event)
            except Exception:  # noqa: BLE001 - a broken progress view must not stop the fleet
                log.exception("progress hook failed")

    by_device: dict[str, list[Job]] = {}
    for job in jobs:
        if (job.artifact.sha256, job.device.name) in skip:
            notify({"stage": "skipped", "device": job.device.name, "artifact": job.artifact.name})
            continue
        by_device.setdefault(job.device.name, []).append(job)

    async def device_worker(device_jobs: list[Job]) -> None:
        session = DeviceSession(device_jobs[0].device)
        try:
            for job in device_jobs:
                async with gate:

                    def emit(stage: str, job: Job = job) -> None:
                        notify({"stage": stage, "device": job.device.name, "artifact": job.artifact.name})

                    record = await run_job(session, job, settings, outputs_dir, emit)
                writer.write(record)
                records.append(record)
                notify(
                    {
                        "stage": record["status"],
                        "device": job.device.name,
                        "artifact": job.artifact.name,
                        "record": record,
                    }
                )
        finally:
            await session.close()

    for name, device_jobs in by_device.items():
        for job in device_jobs:
            notify({"stage": "queued", "device": name, "artifact": job.artifact.name})
    tasks = [asyncio.ensure_future(device_worker(js)) for js in by_device.values()]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return records


def table_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per record for the final table (CLI renders it with rich)."""
    rows = []
    for r in records:
        lat = r.get("latency_ms") or {}
        rows.append(
            {
                "artifact": r["artifact"]["name"],
                "precision": r["artifact"].get("precision"),
                "device": r["device"]["name"],
                "status": r["status"],
                "p50_ms": lat.get("p50"),
                "p95_ms": lat.get("p95"),
                "mean_ms": lat.get("mean"),
                "fps": r.get("throughput_fps"),
                "init_ms": r.get("init_ms"),
                "peak_rss_mb": r.get("peak_rss_mb"),
                "error": r.get("error"),
            }
        )
    return rows


def any_failed(records: list[dict[str, Any]]) -> bool:
    return any(r.get("status") == "failed" for r in records)
