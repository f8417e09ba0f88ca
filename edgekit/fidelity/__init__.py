"""Fidelity metrics and gates: the same numbers for every backend, on the host and on devices.

Per output: cosine similarity (flattened over all samples), SNR in dB (signal = reference energy,
noise = difference energy), max and mean absolute error; top-1 agreement for classifier-shaped outputs
([N, C] or [1, C] with C > 1); accuracy of reference and artifact and the drop (percentage points)
when the set has labels. The formulas are public (`cosine`, `snr_db`, `top1_agreement`, `accuracy`):
they exist here only. Outputs are compared as they are: a shape that differs from the reference's
(other than by size-1 axes) is a layout the runner failed to undo, refused with BadInput - reshaping
it would compare unrelated values and hide the runner's bug.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.errors import BadInput, suggest
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


# ---- the formulas (the only copies in edgekit: backends, benchmarks and tests import these) -------------
def cosine(reference: np.ndarray, actual: np.ndarray) -> float:
    """Cosine similarity of the two arrays flattened; 1.0 when both are all zero, 0.0 when one is."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    act = np.asarray(actual, dtype=np.float64).ravel()
    norm = float(np.linalg.norm(ref) * np.linalg.norm(act))
    if norm == 0.0:
        return 1.0 if np.allclose(ref, act) else 0.0
    return float(np.dot(ref, act) / norm)


def snr_db(reference: np.ndarray, actual: np.ndarray) -> float:
    """10·log10(reference energy / difference energy); +inf when equal, -inf for a zero reference."""
    ref = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((np.asarray(actual, dtype=np.float64) - ref) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def top1_agreement(reference: np.ndarray, actual: np.ndarray) -> float | None:
    """Percent of samples (axis 0) whose arg-max class agrees; None unless the output is classifier-shaped."""
    ref, act = np.asarray(reference), np.asarray(actual)
    if ref.ndim < 2 or not is_classifier(ref.shape):
        return None
    flat_ref = ref.reshape(ref.shape[0], -1)
    flat_act = act.reshape(act.shape[0], -1)
    return float(np.mean(flat_ref.argmax(axis=1) == flat_act.argmax(axis=1)) * 100.0)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Percent of samples whose arg-max class is the label."""
    labels = np.asarray(labels).reshape(-1)
    flat = np.asarray(logits).reshape(len(labels), -1)
    return float(np.mean(flat.argmax(axis=1) == labels) * 100.0)


def _comparable(name: str, ref: np.ndarray, act: np.ndarray) -> np.ndarray:
    """`act` in `ref`'s shape when they differ only by size-1 axes (the same values in the same order);
    any other difference is a layout the runner should have undone: refused, never reshaped."""
    if act.shape == ref.shape:
        return act
    if [d for d in act.shape if d != 1] == [d for d in ref.shape if d != 1]:
        return act.reshape(ref.shape)
    what = "a different layout" if act.size == ref.size else "a different size"
    raise BadInput(
        f"output '{name}': the artifact gives shape {list(act.shape)} but the FP32 reference "
        f"{list(ref.shape)} ({what}); the backend's runner must return outputs in the source model's "
        "layout - compare outputs of the same model"
    )


def output_metrics(name: str, reference: np.ndarray, actual: np.ndarray) -> OutputMetrics:
    ref = np.asarray(reference, dtype=np.float64)
    act = _comparable(name, ref, np.asarray(actual, dtype=np.float64))
    diff = np.abs(act - ref)
    return OutputMetrics(
        name=name,
        cosine=cosine(ref, act),
        snr_db=snr_db(ref, act),
        max_abs=float(np.max(diff)) if diff.size else 0.0,
        mean_abs=float(np.mean(diff)) if diff.size else 0.0,
        top1_agreement=top1_agreement(ref, act),
    )


def compare(
    reference: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    labels: np.ndarray | None = None,
    gates: Gates | None = None,
    where: str = "host",
) -> FidelityReport:
    """Metrics for every output (arrays stacked over samples on axis 0) and the gate verdict."""
    missing = [name for name in reference if name not in actual]
    if missing:
        have = ", ".join(actual) or "none"
        raise BadInput(
            f"the artifact gives no output {', '.join(repr(m) for m in missing)} of the FP32 reference "
            f"(it gives: {have}){suggest(missing[0], actual)}"
        )
    outputs = [output_metrics(name, reference[name], actual[name]) for name in reference]
    samples = int(next(iter(reference.values())).shape[0]) if reference else 0
    report = FidelityReport(samples=samples, outputs=outputs, where=where)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != samples:
            raise BadInput(
                f"the set has {len(labels)} labels for {samples} samples; give one label per sample"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise BadInput(f"labels must be integer class ids, got {labels.dtype}")
        classifier = next((n for n in reference if is_classifier(np.shape(reference[n]))), None)
        if classifier is not None:
            report.accuracy_reference = accuracy(reference[classifier], labels)
            report.accuracy_artifact = accuracy(actual[classifier], labels)
    if gates is not None:
        apply_gates(report, gates)
    return report


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
