"""The records a comparison produces: per-output metrics and the fidelity report (plain to/from JSON)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class OutputMetrics:
    name: str
    cosine: float
    snr_db: float
    max_abs: float
    mean_abs: float
    top1_agreement: float | None = None  # percent

    def to_json(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutputMetrics:
        return cls(**{k: _infinite(data.get(k)) for k in cls.__dataclass_fields__})


@dataclass
class FidelityReport:
    samples: int
    outputs: list[OutputMetrics]
    accuracy_reference: float | None = None  # percent
    accuracy_artifact: float | None = None
    gates: dict[str, float | None] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    where: str = "host"
    # what the model is for and how the artifact does at it (kind, source, outputs, metrics, intervals,
    # gate, undecided, samples, summary); None when no task was given (the raw comparison only)
    task: dict[str, Any] | None = None
    # every feature slice of every output: output, axis, range [start, stop), label, cosine, snr_db
    slices: list[dict[str, Any]] = field(default_factory=list)
    # a user metric: name, value, reference (the metric of FP32 against itself), passed, interval
    metric: dict[str, Any] | None = None
    runtime: str | None = None
    precision: str | None = None
    device: str | None = None

    @property
    def accuracy_drop(self) -> float | None:
        if self.accuracy_reference is None or self.accuracy_artifact is None:
            return None
        return self.accuracy_reference - self.accuracy_artifact

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "samples": self.samples,
            "passed": self.passed,
            "outputs": [o.to_json() for o in self.outputs],
            "accuracy_reference": self.accuracy_reference,
            "accuracy_artifact": self.accuracy_artifact,
            "accuracy_drop": self.accuracy_drop,
            "gates": self.gates,
            "failures": self.failures,
            "task": _deep_finite(self.task),
            "slices": [{k: _finite(v) for k, v in s.items()} for s in self.slices],
            "metric": _deep_finite(self.metric),
            "runtime": self.runtime,
            "precision": self.precision,
            "device": self.device,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FidelityReport:
        """The report back from `to_json` (accuracy_drop and passed are derived, not stored)."""
        return cls(
            samples=int(data["samples"]),
            outputs=[OutputMetrics.from_json(o) for o in data.get("outputs", [])],
            accuracy_reference=data.get("accuracy_reference"),
            accuracy_artifact=data.get("accuracy_artifact"),
            gates=dict(data.get("gates") or {}),
            failures=list(data.get("failures") or []),
            where=str(data.get("where", "host")),
            task=dict(data["task"]) if data.get("task") else None,
            slices=[{k: _infinite(v) for k, v in s.items()} for s in data.get("slices") or []],
            metric=dict(data["metric"]) if data.get("metric") else None,
            runtime=data.get("runtime"),
            precision=data.get("precision"),
            device=data.get("device"),
        )


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e9 if value > 0 else -1e9)
    return value


def _infinite(value: Any) -> Any:
    """The inverse of `_finite`: JSON has no infinity, so +-1e9 stands for it (an SNR of identical outputs)."""
    if isinstance(value, float) and abs(value) == 1e9:
        return math.copysign(math.inf, value)
    return value


def _deep_finite(value: Any) -> Any:
    """`_finite` through dicts and lists (task metrics, intervals), numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {k: _deep_finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deep_finite(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()
    return _finite(value)
