"""One unit of a release build, run in a worker process (local pool or Ray): export one model for one
target and precision into a work folder, and verify it when a validation set is given.

Tasks are plain JSON-able dataclasses so any executor can ship them; the artifact lands in
`<work>/artifact/`, the worker's own output (converters print a lot) in `<work>/build.log`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ARTIFACT = "artifact"
BUILD_LOG = "build.log"


@dataclass
class Task:
    key: str  # export key (cache)
    name: str  # artifact name, <model>.<target>.<precision>
    model: str
    target: str
    precision: str
    targets_dirs: list[str] = field(default_factory=list)
    calib: str | None = None
    calib_samples: int | None = None
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    simplify: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    export: bool = True  # False: the artifact is cached at `artifact_dir`, only verify
    artifact_dir: str | None = None
    verify_key: str | None = None
    val: str | None = None
    val_samples: int | None = None
    gates: dict[str, float] = field(default_factory=dict)
    task: str | None = None  # the model's task (None: inferred at export, then the manifest's)
    metric: str | None = None  # "module:function", imported with `metric_root` on the path
    metric_root: str | None = None  # the release config's folder

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def export_options(options: dict[str, Any]) -> Any:
    """The config's [[target]] options table as ExportOptions: known fields by name, the rest are
    backend options (what `--option KEY=VALUE` sets on the command line)."""
    from edgekit.backends.base import ExportOptions

    known = {f for f in ExportOptions.__dataclass_fields__ if f not in ("extra", "backend_options")}
    values = {k: v for k, v in options.items() if k in known}
    extra = {k: v for k, v in options.items() if k not in known}  # typed values: Options.parse takes them
    return ExportOptions(**values, extra=extra)


@contextlib.contextmanager
def captured_output(log_path: Path) -> Iterator[None]:
    """Point fds 1 and 2 at the task's log: converters and runtimes print from native code."""
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_task(task: Task, work: Path) -> dict[str, Any]:
    """Export (unless cached) and verify. Never raises for a failed build: the result says what failed
    (stage, error); only an interrupt propagates."""
    from edgekit.errors import EdgekitError
    from edgekit.records import ExportRequest, VerifyRequest
    from edgekit.services import exporting, verification

    result: dict[str, Any] = {
        "status": "ok",
        "stage": None,
        "error": None,
        "export_s": None,
        "verify_s": None,
    }
    artifact = work / ARTIFACT
    stage = "export"
    if task.metric_root and task.metric_root not in sys.path:
        sys.path.insert(0, task.metric_root)  # the config's own metric modules (a worker process)
    try:
        if task.export:
            started = time.perf_counter()
            outcome = exporting.export(
                ExportRequest(
                    model=task.model,
                    target=task.target,
                    precision=task.precision,
                    calib=task.calib,
                    calib_samples=task.calib_samples,
                    input_shapes=dict(task.input_shapes),
                    simplify=task.simplify,
                    options=export_options(task.options),
                    out_dir=work / "out",
                    targets_dirs=list(task.targets_dirs),
                    task=task.task,
                    metric=task.metric,
                    gate_overrides=dict(task.gates),  # the INT8 search aims at the release's gates
                )
            )
            os.replace(outcome.path, artifact)
            shutil.rmtree(work / "out", ignore_errors=True)
            result["export_s"] = time.perf_counter() - started
        else:
            artifact = Path(str(task.artifact_dir))
        if task.val is not None:
            stage = "verify"
            started = time.perf_counter()
            from edgekit.errors import NotVerifiedHere
            from edgekit.services.verification import fidelity_json

            try:
                report = verification.verify(
                    VerifyRequest(
                        artifact,
                        task.val,
                        reference=task.model,
                        val_samples=task.val_samples,
                        gate_overrides=dict(task.gates),
                        targets_dirs=list(task.targets_dirs),
                        write=False,
                        task=task.task,
                        metric=task.metric,
                    )
                )
                result["fidelity"] = fidelity_json(report)
            except NotVerifiedHere as exc:  # no fidelity (never a pass); the release record says why
                result["verification"] = {"status": "not verified here", "reason": str(exc)}
            result["verify_s"] = time.perf_counter() - started
    except EdgekitError as exc:
        result.update(status="failed", stage=stage, error=str(exc), error_type=type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 - a converter crash is this artifact's failure, not the release's
        first = (str(exc).strip().splitlines() or [""])[0]
        result.update(status="failed", stage=stage, error=f"internal error: {type(exc).__name__}: {first}")
        result["traceback"] = traceback.format_exc()
    return result


def run_task_logged(task: Task, work: Path) -> dict[str, Any]:
    """run_task with the process's output in `<work>/build.log` (a worker's entry point)."""
    logging.basicConfig(level=logging.WARNING)
    with captured_output(work / BUILD_LOG):
        result = run_task(task, work)
    if result["status"] != "ok":
        tail = (work / BUILD_LOG).read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        result["log_tail"] = tail
    return result
