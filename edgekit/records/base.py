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


GATE_FLAGS = ("min_cosine", "max_accuracy_drop", "min_snr_db")
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
    unknown = sorted(set(values) - set(GATE_FLAGS) - {"min_top1_agreement"})
    if unknown:
        raise BadInput(f"unknown gate '{unknown[0]}'; gates are {', '.join(GATE_FLAGS)}, min_top1_agreement")
    return {k: (None if v is None else float(v)) for k, v in values.items()}


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
