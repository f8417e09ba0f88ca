"""Where a release's build tasks run: a local process pool, or an existing Ray cluster.

Each task runs in a fresh process (pool workers and Ray workers serve one task, then exit): the
converters keep process-wide state (OpenVINO numbers the nodes it creates with a global counter, so
an export's layer names would depend on what the process built before) and some leak memory.
A pool worker dies with its parent (PR_SET_PDEATHSIG), so a killed release leaves no converters running.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import signal
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edgekit import lifecycle
from edgekit.errors import BadInput, Unreachable, require
from edgekit.release.build import ARTIFACT, Task, run_task_logged

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
TaskResult = tuple[Task, Path, dict[str, Any]]  # task, its work folder (holds artifact/), result


def _local_task(task: Task, work: str, conn: Any, parent: int) -> None:
    """A pool process: build one task, send the result up the pipe, exit."""
    lifecycle.die_with_parent(parent)  # a killed release leaves no converters running
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        result = run_task_logged(task, Path(work))
    except BaseException as exc:  # noqa: BLE001 - whatever happens, the parent gets an answer
        result = {
            "status": "failed",
            "stage": "export",
            "error": f"build process failed: {type(exc).__name__}: {exc}",
        }
    conn.send(result)
    conn.close()


class LocalExecutor:
    """Processes on this machine, `jobs` at once, one fresh process per task (spawned, so no state
    of this process leaks into a build)."""

    name = "local"

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, jobs)

    def describe(self) -> str:
        return f"local processes ({self.jobs} at once)"

    def run(self, chains: Sequence[Sequence[tuple[Task, Path]]]) -> Iterator[TaskResult]:
        """Run chains in parallel, the tasks of one chain one after the other (each in a fresh
        process): a chain's later exports find what its first one left in the converters' caches."""
        from multiprocessing.connection import wait as wait_any

        queues = [list(chain) for chain in chains if chain]
        context = multiprocessing.get_context("spawn")
        running: dict[
            Any, tuple[int, Task, Path, Any, Any]
        ] = {}  # sentinel -> (chain, task, work, proc, pipe)
        ready = list(range(len(queues)))

        def start(index: int) -> None:
            task, work = queues[index].pop(0)
            parent, child = context.Pipe(duplex=False)
            proc = context.Process(
                target=_local_task,
                args=(task, str(work), child, os.getpid()),
                name=f"edgekit-build-{task.name}",
            )
            proc.start()
            child.close()
            running[proc.sentinel] = (index, task, work, proc, parent)

        try:
            while ready or running:
                while ready and len(running) < self.jobs:
                    start(ready.pop(0))
                sentinels = list(running)
                pipes = {running[s][4]: s for s in sentinels}
                finished = wait_any(sentinels + list(pipes))
                for handle in finished:
                    sentinel = pipes.get(handle, handle)
                    if sentinel not in running:
                        continue
                    index, task, work, proc, pipe = running.pop(sentinel)
                    result = None
                    if pipe.poll():
                        try:
                            result = pipe.recv()
                        except (EOFError, OSError):
                            result = None
                    proc.join()
                    pipe.close()
                    if result is None:
                        result = {
                            "status": "failed",
                            "stage": "export",
                            "error": f"build process died (exit code {proc.exitcode}; out of memory?)",
                        }
                    if queues[index]:
                        ready.append(index)
                    yield task, work, result
        finally:
            for _, _, _, proc, pipe in running.values():
                if proc.is_alive():
                    proc.kill()
                proc.join()
                pipe.close()


# ---- Ray -------------------------------------------------------------------------------------------
def _pack(path: Path, names: Sequence[Path] | None = None) -> bytes:
    """A file, its siblings `names`, or a folder, as tar bytes (arcnames relative to the parent). Links
    are followed: a model cache (the Hugging Face hub's) stores every file as a link into its blobs,
    and the worker needs the bytes under the link's name, not a link to a path it does not have."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", dereference=True) as tar:
        for item in names or [path]:
            tar.add(str(item), arcname=item.name)
    return buf.getvalue()


def _unpack(data: bytes, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")


def _ray_task(
    task_json: dict[str, Any], names: list[str], *blobs: bytes
) -> tuple[dict[str, Any], bytes | None]:
    """On a Ray worker: materialize the inputs shipped with the task (`names[i]` is the driver's path
    of `blobs[i]`; top-level arguments, so Ray resolves them), build, send the artifact back."""
    work = Path(tempfile.mkdtemp(prefix="edgekit-ray-"))
    try:
        paths: dict[str, str] = {}
        for index, (original, shipped) in enumerate(zip(names, blobs, strict=True)):
            folder = work / "inputs" / str(index)
            _unpack(shipped, folder)
            paths[original] = str(folder / Path(original).name)
        task = Task(**task_json)
        for attr in ("model", "calib", "val", "artifact_dir"):
            value = getattr(task, attr)
            if value is not None:
                setattr(task, attr, paths.get(value, value))
        task.targets_dirs = [paths.get(d, d) for d in task.targets_dirs]
        (work / "build").mkdir()
        result = run_task_logged(task, work / "build")
        result["worker"] = os.uname().nodename
        artifact = work / "build" / ARTIFACT
        blob = _pack(artifact) if task.export and artifact.is_dir() else None
        return result, blob
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


class RayExecutor:
    """Tasks as Ray remote functions on an existing cluster (`--address HOST:PORT`, the head's GCS
    address, or `ray://HOST:PORT` for Ray Client). Inputs travel through Ray's object store and the
    artifacts come back the same way, so workers need edgekit's dependencies, not a shared disk;
    this edgekit's own code is shipped with the job (runtime_env py_modules)."""

    name = "ray"

    def __init__(self, address: str | None) -> None:
        if not address:
            raise BadInput(
                "--executor ray needs --address HOST:PORT (the Ray head; `ray start --head` prints it)"
            )
        self.address = address
        self.ray: Any = None

    def describe(self) -> str:
        return f"Ray cluster at {self.address}"

    def connect(self) -> None:
        ray = require("ray", "ray", "--executor ray")
        import edgekit

        try:
            ray.init(
                address=self.address,
                runtime_env={"py_modules": [str(Path(edgekit.__file__).parent)]},
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise Unreachable(f"cannot reach the Ray cluster at {self.address}: {exc}") from exc
        self.ray = ray

    def run(self, chains: Sequence[Sequence[tuple[Task, Path]]]) -> Iterator[TaskResult]:
        """Chains in parallel on the cluster, each chain's tasks in order (see LocalExecutor.run)."""
        queues = [list(chain) for chain in chains if chain]
        if not queues:
            return
        if self.ray is None:
            self.connect()
        ray = self.ray
        remote = ray.remote(num_cpus=1, max_calls=1)(_ray_task)
        shipped: dict[str, Any] = {}

        def ship(path: str, siblings: Sequence[Path] | None = None) -> Any:
            if path not in shipped:
                shipped[path] = ray.put(_pack(Path(path), siblings))
            return shipped[path]

        running: dict[Any, tuple[int, Task, Path]] = {}

        def submit(index: int) -> None:
            from edgekit.graph import model_files

            task, work = queues[index].pop(0)
            inputs = {task.model: ship(task.model, model_files(task.model))}
            for value in (task.calib, task.val, task.artifact_dir, *task.targets_dirs):
                if value is not None:
                    inputs[value] = ship(value)
            names = sorted(inputs)
            running[remote.remote(task.to_json(), names, *(inputs[n] for n in names))] = (index, task, work)

        try:
            for index in range(len(queues)):
                submit(index)
            while running:
                done, _ = ray.wait(list(running), num_returns=1)
                index, task, work = running.pop(done[0])
                try:
                    result, blob = ray.get(done[0])
                except Exception as exc:  # noqa: BLE001 - a lost worker fails its task
                    result, blob = (
                        {"status": "failed", "stage": "export", "error": f"Ray task failed: {exc}"},
                        None,
                    )
                if blob is not None:
                    _unpack(blob, work)
                if queues[index]:
                    submit(index)
                yield task, work, result
        finally:
            for ref in running:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - finished tasks cannot be cancelled
                    pass

    def close(self) -> None:
        if self.ray is not None:
            self.ray.shutdown()


def make_executor(name: str, jobs: int, address: str | None) -> LocalExecutor | RayExecutor:
    if name == "local":
        return LocalExecutor(jobs)
    if name == "ray":
        return RayExecutor(address)
    from edgekit.errors import suggest

    raise BadInput(f"unknown executor '{name}'.{suggest(name, EXECUTORS)} Valid: {', '.join(EXECUTORS)}")
