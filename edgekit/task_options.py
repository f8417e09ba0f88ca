"""What a user says about a model's task and metric (`--task`, `--metric module:function`, the release
config's `task`/`metric`), checked before any work, and the task an artifact is judged by.

The task itself (TaskSpec, infer_task, the metrics) is edgekit.fidelity's; this module only turns the
user's words into its arguments, and keeps one rule for every verb: an explicit task wins, then the
task recorded in the artifact's manifest at export, then what infer_task reads from the FP32 model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import BadInput, suggest

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import onnx

    from edgekit.fidelity import TaskSpec

# the kinds edgekit.fidelity.tasks.TASKS knows (repeated here so `--help` and config checks need no import
# of the metrics); test_task_options checks that the two agree
TASKS = ("detect", "segment", "classify", "embed", "map", "tokens", "raw")
# gates a user may set (CLI flags, API gate_overrides, the release config's [gates])
GATE_KEYS = (
    "min_cosine",
    "max_accuracy_drop",
    "min_snr_db",
    "min_top1_agreement",
    "min_f1",
    "min_mask_iou",
    "min_embedding_cosine",
    "min_metric",
    "min_slice_cosine",
    "max_kl",
)

Metric = Callable[..., Any]


def check_task(task: str | None, where: str = "--task") -> str | None:
    """`task` when it names a task kind (None stays None); else BadInput listing the kinds."""
    if task is None:
        return None
    if not isinstance(task, str) or task not in TASKS:
        hint = suggest(str(task), TASKS)
        raise BadInput(f"{where} '{task}' is not a task.{hint} Valid: {', '.join(TASKS)}")
    return task


def check_metric_spec(spec: Any, where: str = "--metric") -> None:
    """A metric is a callable, or 'module:function' (the import is tried when it is used)."""
    if spec is None or callable(spec):
        return
    if not isinstance(spec, str):
        raise BadInput(f"{where} must be 'module:function' or a callable, got {type(spec).__name__}")
    module, sep, function = spec.partition(":")
    if not sep or not module or not function or not all(p.isidentifier() for p in function.split(".")):
        raise BadInput(
            f"{where} '{spec}' must be 'module:function' (e.g. mymetrics:map50), a function taking "
            "(reference, actual, labels) and returning a number, higher is better"
        )


def load_metric(spec: str | Metric | None, where: str = "--metric") -> Metric | None:
    """The user's metric: a callable as given, or 'module:function' imported (edgekit.fidelity.user) from
    the current directory too, as `python -m` would. BadInput, one line, when it cannot be found."""
    if spec is None or callable(spec):
        return spec
    check_metric_spec(spec, where)
    import sys

    from edgekit.fidelity.user import load_metric as import_metric

    cwd = str(Path.cwd())
    added = "" not in sys.path and cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return import_metric(spec)
    except BadInput as exc:
        text = str(exc)
        raise BadInput(where + text[len("--metric") :] if text.startswith("--metric") else text) from None
    finally:
        if added:
            sys.path.remove(cwd)


def metric_record(spec: str | Metric | None) -> str | dict[str, str] | None:
    """What the manifest records: the 'module:function' given (verify imports it again), or for a
    callable {"callable": "module:qualname"} (named only: verify needs it passed again)."""
    if spec is None or isinstance(spec, str):
        return spec
    return {"callable": f"{getattr(spec, '__module__', '?')}:{getattr(spec, '__qualname__', repr(spec))}"}


def renamed_metric(metric: Metric | None, to_source: Mapping[str, str]) -> Metric | None:
    """The user's metric as the INT8 search calls it (outputs under the prepared model's names),
    seeing the source model's names, as it does in verify."""
    if metric is None or not any(k != v for k, v in to_source.items()):
        return metric

    def call(reference: Mapping[str, Any], actual: Mapping[str, Any], labels: Any = None) -> Any:
        return metric(
            {to_source.get(k, k): v for k, v in reference.items()},
            {to_source.get(k, k): v for k, v in actual.items()},
            labels,
        )

    call.__name__ = getattr(metric, "__name__", "metric")
    call.__qualname__ = getattr(metric, "__qualname__", call.__name__)
    call.__module__ = getattr(metric, "__module__", __name__)
    return call


def renamed_task(task: TaskSpec, mapping: Mapping[str, str]) -> TaskSpec:
    """The task with its output names (and slices' keys) mapped old -> new."""
    from edgekit.fidelity import TaskSpec

    data = task.to_json()
    data["outputs"] = [mapping.get(n, n) for n in data.get("outputs") or []]
    data["slices"] = {mapping.get(k, k): v for k, v in (data.get("slices") or {}).items()}
    return TaskSpec.from_json(data)


def infer(model: onnx.ModelProto | str | Path, task: str | None = None) -> TaskSpec:
    """edgekit.fidelity.infer_task on a model (a path is loaded without its external weights)."""
    import onnx

    from edgekit.fidelity import infer_task

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    return infer_task(model, check_task(task))


def task_of(
    manifest: Mapping[str, Any] | None, override: str | None, reference_model: str | Path | None
) -> TaskSpec:
    """The task an artifact is judged by: `override` (--task) from the FP32 model, else the one its
    manifest recorded at export, else what the FP32 model says."""
    from edgekit.fidelity import TaskSpec

    check_task(override)
    recorded = (manifest or {}).get("task")
    if override is None and isinstance(recorded, Mapping):
        return TaskSpec.from_json(dict(recorded))
    if reference_model is None:
        raise BadInput("no model to infer the task from: pass --task")
    return infer(reference_model, override)


def metric_of(manifest: Mapping[str, Any] | None, override: str | Metric | None) -> Metric | None:
    """The user's metric: `override`, else the 'module:function' recorded at export (None: none)."""
    if override is not None:
        return load_metric(override)
    recorded = (manifest or {}).get("metric")
    if isinstance(recorded, str):
        return load_metric(recorded, "the metric recorded at export (pass --metric to replace it)")
    if isinstance(recorded, Mapping):
        log.warning(
            "the export was judged by a Python callable (%s) that cannot be imported again: pass it (metric=) "
            "to judge by it here",
            recorded.get("callable"),
        )
    return None
