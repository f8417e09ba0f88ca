"""The fleet: every job of a plan, devices in parallel (each device one job at a time), and the one
way to time an artifact on this machine (`bench_local`: the local device through the same runner and
agent as `edgekit bench --device local`)."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError, InternalError, MissingDependency
from edgekit.runner.job import DeviceSession, run_job
from edgekit.runner.results import ResultWriter, done_pairs
from edgekit.runner.workload import BenchSettings, Job, load_artifacts
from edgekit.transport import TransportError

log = logging.getLogger(__name__)

ProgressHook = Callable[[dict[str, Any]], None]


def shape_label(shapes: dict[str, list[int]]) -> str:
    from edgekit.runner.shapes import label

    return label(shapes)


async def run_bench(
    jobs: list[Job],
    settings: BenchSettings,
    results: str | Path,
    resume: bool = False,
    concurrency: int = 4,
    progress: ProgressHook | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the matrix; returns this run's records (also appended to `results` as each finishes).

    `on_record(record)` runs (in a worker thread) on each finished record before it is written, so
    what it adds (on-device fidelity) is in results.jsonl too.

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
        stated = f" [{shape_label(job.shapes)}]" if job.shapes else ""
        if (job.artifact.sha256, job.device.name + stated) in skip:
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
                if on_record is not None:
                    await asyncio.to_thread(on_record, record)
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


def bench_local(
    artifact_dir: str | Path,
    iterations: int = 100,
    warmup: int = 10,
    threads: int | None = None,
    *,
    min_duration_s: float = 0.0,
    targets_dirs: Sequence[str | Path] = (),
    results: str | Path | None = None,
    shapes: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """Time one artifact on this machine exactly as `edgekit bench --device local` does (the runner,
    the local transport and the device agent's timing loop and statistics), so the two agree.

    Returns the result record; `results` (a results.jsonl) keeps it too. A failed run raises: a
    missing runtime is MissingDependency (exit 3), anything else the error the agent reported."""
    from edgekit.inventory import local_device

    (artifact,) = load_artifacts([artifact_dir], targets_dirs)
    settings = BenchSettings(
        iterations=iterations, warmup=warmup, threads=threads, min_duration_s=min_duration_s
    )
    from edgekit.runner.shapes import resolve

    # `shapes` as `--input-shape` (by input name); a dynamic dim nobody stated is BadInput naming it
    jobs = [Job(artifact, local_device(), shapes=resolve(artifact.manifest["inputs"], shapes or {}))]
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:
        path = Path(results) if results is not None else Path(tmp) / "results.jsonl"
        (record,) = asyncio.run(run_bench(jobs, settings, path))
    if record["status"] != "ok":
        raise _failure(record, artifact.backend_impl())
    return record


def _failure(record: dict[str, Any], backend: Any) -> EdgekitError:
    kind, error = record.get("error_kind"), str(record.get("error") or "the run failed")
    if kind == "missing_runtime":
        module = backend.modules[0] if backend.modules else backend.name
        return MissingDependency(module, backend.extra, f"timing {record['artifact']['name']} here")
    if kind in ("unreachable", "auth", "host_key", "lost", "timeout"):
        return TransportError(error, kind)
    return InternalError(error)
