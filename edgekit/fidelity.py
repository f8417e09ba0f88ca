"""Fidelity metrics and gates: the same numbers for every backend, on the host and on devices.

Per output: cosine similarity (flattened over all samples), SNR in dB (signal = reference energy,
noise = difference energy), max and mean absolute error; top-1 agreement for classifier-shaped outputs
([N, C] or [1, C] with C > 1); accuracy of reference and artifact and the drop (percentage points)
when the set has labels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.targets import Gates


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


def is_classifier(shape: Sequence[int]) -> bool:
    """[N, C] with C > 1 (also [N, 1, C] / [N, C, 1, 1] squeezed)."""
    dims = [d for d in shape[1:] if d != 1]
    return len(dims) == 1 and dims[0] > 1


def output_metrics(name: str, reference: np.ndarray, actual: np.ndarray) -> OutputMetrics:
    ref = np.asarray(reference, dtype=np.float64)
    act = np.asarray(actual, dtype=np.float64)
    if ref.shape != act.shape:
        if ref.size == act.size:
            act = act.reshape(ref.shape)
        else:
            raise ValueError(f"output '{name}': shape {act.shape} differs from the reference {ref.shape}")
    diff = act - ref
    ref_flat, act_flat = ref.ravel(), act.ravel()
    norm = float(np.linalg.norm(ref_flat) * np.linalg.norm(act_flat))
    if norm == 0.0:
        cosine = 1.0 if np.allclose(ref_flat, act_flat) else 0.0
    else:
        cosine = float(np.dot(ref_flat, act_flat) / norm)
    noise = float(np.sum(diff**2))
    signal = float(np.sum(ref**2))
    snr = math.inf if noise == 0.0 else (10.0 * math.log10(signal / noise) if signal > 0 else -math.inf)
    top1 = None
    if ref.ndim >= 2 and is_classifier(ref.shape):
        flat_ref = ref.reshape(ref.shape[0], -1)
        flat_act = act.reshape(act.shape[0], -1)
        top1 = float(np.mean(flat_ref.argmax(axis=1) == flat_act.argmax(axis=1)) * 100.0)
    return OutputMetrics(
        name=name,
        cosine=cosine,
        snr_db=snr,
        max_abs=float(np.max(np.abs(diff))) if diff.size else 0.0,
        mean_abs=float(np.mean(np.abs(diff))) if diff.size else 0.0,
        top1_agreement=top1,
    )


def compare(
    reference: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    labels: np.ndarray | None = None,
    gates: Gates | None = None,
    where: str = "host",
) -> FidelityReport:
    """Metrics for every output (arrays stacked over samples on axis 0) and the gate verdict."""
    outputs = [output_metrics(name, reference[name], actual[name]) for name in reference]
    samples = int(next(iter(reference.values())).shape[0]) if reference else 0
    report = FidelityReport(samples=samples, outputs=outputs, where=where)
    if labels is not None:
        classifier = next((n for n in reference if is_classifier(np.shape(reference[n]))), None)
        if classifier is not None and len(labels) == samples:
            report.accuracy_reference = _accuracy(reference[classifier], labels)
            report.accuracy_artifact = _accuracy(actual[classifier], labels)
    if gates is not None:
        apply_gates(report, gates)
    return report


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    flat = np.asarray(logits).reshape(len(labels), -1)
    return float(np.mean(flat.argmax(axis=1) == np.asarray(labels).reshape(-1)) * 100.0)


def apply_gates(report: FidelityReport, gates: Gates) -> None:
    report.gates = gates.to_json()
    report.failures = []
    for out in report.outputs:
        if gates.min_cosine is not None and not out.cosine >= gates.min_cosine:
            report.failures.append(f"{out.name}: cosine {out.cosine:.5f} < {gates.min_cosine}")
        if gates.min_snr_db is not None and not out.snr_db >= gates.min_snr_db:
            report.failures.append(f"{out.name}: SNR {out.snr_db:.1f} dB < {gates.min_snr_db} dB")
        if (
            gates.min_top1_agreement is not None
            and out.top1_agreement is not None
            and out.top1_agreement < gates.min_top1_agreement
        ):
            report.failures.append(
                f"{out.name}: top-1 agreement {out.top1_agreement:.2f}% < {gates.min_top1_agreement}%"
            )
    drop = report.accuracy_drop
    if drop is not None and gates.max_accuracy_drop is not None and drop > gates.max_accuracy_drop:
        report.failures.append(f"accuracy drop {drop:.2f} points > {gates.max_accuracy_drop}")
