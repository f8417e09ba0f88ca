"""What every request and record shares: the Request base (to_json / from_json), progress hooks and
the argument normalisers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from edgekit.errors import BadInput

if TYPE_CHECKING:
    from edgekit.backends.base import ExportOptions


GATE_FLAGS = ("min_cosine", "max_accuracy_drop", "min_snr_db")  # the first gates; all: GATE_KEYS
R = TypeVar("R", bound="Request")
Progress = Callable[[str], None]  # one line per step ("preparing model", ...)
BenchProgress = Callable[[dict[str, Any]], None]  # fleet events: {"stage", "device", "artifact", ...}


def noop(_: str) -> None:
    """The default progress hook: say nothing."""


def as_path(value: str | Path | None) -> str | None:
    return None if value is None else str(value)


def as_paths(values: Sequence[str | Path]) -> list[str]:
    return [str(v) for v in values]


def checked_gates(values: Mapping[str, float | None]) -> dict[str, float | None]:
    from edgekit.errors import suggest
    from edgekit.task_options import GATE_KEYS

    unknown = sorted(set(values) - set(GATE_KEYS))
    if unknown:
        raise BadInput(
            f"unknown gate '{unknown[0]}'.{suggest(unknown[0], GATE_KEYS)} Gates are {', '.join(GATE_KEYS)}"
        )
    out: dict[str, float | None] = {}
    for key, value in values.items():
        try:
            out[key] = None if value is None else float(value)
        except (TypeError, ValueError):
            raise BadInput(f"gate {key} must be a number, got {value!r}") from None
    return out


def checked_task(task: str | None, metric: Any) -> None:
    """A request's task names a task kind and its metric is a callable or 'module:function'."""
    from edgekit.task_options import check_metric_spec, check_task

    check_task(task, "task")
    check_metric_spec(metric, "metric")


def task_json(data: dict[str, Any]) -> dict[str, Any]:
    """A request's JSON: a callable metric by its name (it cannot travel as JSON)."""
    from edgekit.task_options import metric_record

    if "metric" in data:
        data["metric"] = metric_record(data["metric"])
        if isinstance(data["metric"], dict):
            data["metric"] = data["metric"]["callable"]
    return data


class Request:
    """to_json / from_json for a dataclass of JSON-native fields (nested dataclasses via `_nested`)."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls: type[R], data: Mapping[str, Any]) -> R:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise BadInput(f"{cls.__name__}: unknown field '{unknown[0]}'")
        return cls(**cls._nested(dict(data)))

    @classmethod
    def _nested(cls, data: dict[str, Any]) -> dict[str, Any]:
        return data


def default_options() -> ExportOptions:
    from edgekit.backends.base import ExportOptions

    return ExportOptions()
