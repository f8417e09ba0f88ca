"""What a candidate is scored on, and how: the FP32 reference on a scoring set, the target's gates.

Scores go through `edgekit.fidelity.compare`, the function `verify` uses, so a candidate that passes
here passes verification on the same samples with the same runner.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.fidelity import TaskSpec, compare
from edgekit.targets import Gates

Feed = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]

HOLDOUT_FRACTION = 0.2
MIN_HOLDOUT = 8
MAX_HOLDOUT = 64
MIN_CALIBRATION = 16  # below this many samples, nothing is held out


@dataclass
class ScoringSet:
    """Samples every candidate is scored on, with the FP32 outputs for them (stacked, sample axis 0)."""

    feeds: list[Feed]
    labels: np.ndarray | None
    reference: Outputs
    batched: bool  # samples carry the model's batch axis (concatenate) or not (stack)
    source: str  # for the manifest: what these samples are
    task: TaskSpec | None = None  # what score() judges; None: the raw outputs
    metric: Callable | None = None  # a user metric score() judges by (fn(reference, actual, labels))

    def __len__(self) -> int:
        return len(self.feeds)

    def subset(self, index: Sequence[int]) -> ScoringSet:
        index = list(index)
        return ScoringSet(
            feeds=[self.feeds[i] for i in index],
            labels=None if self.labels is None else self.labels[index],
            reference={k: v[index] for k, v in self.reference.items()},
            batched=self.batched,
            source=f"{len(index)} of {self.source}",
            task=self.task,
            metric=self.metric,
        )


def stack(chunks: list[np.ndarray], batched: bool) -> np.ndarray:
    return np.concatenate(chunks, axis=0) if batched else np.stack(chunks, axis=0)


def split(count: int, has_validation: bool, seed: int = 0) -> tuple[list[int], list[int]]:
    """(calibration indices, held-out indices) of a calibration set of `count` samples. With a
    validation set nothing is held out; a set too small to spare samples is scored on itself."""
    every = list(range(count))
    if has_validation or count < MIN_CALIBRATION:
        return every, ([] if has_validation else every)
    held = min(MAX_HOLDOUT, max(MIN_HOLDOUT, round(count * HOLDOUT_FRACTION)))
    rng = np.random.default_rng(seed)
    holdout = sorted(int(i) for i in rng.choice(count, size=held, replace=False))
    chosen = set(holdout)
    return [i for i in every if i not in chosen], holdout


@dataclass
class Score:
    passed: bool
    budget: float  # share of the gates' error budget used (worst criterion); <= 1 when passing
    cosine: float  # worst output
    accuracy_drop: float | None
    top1_agreement: float | None
    failures: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "budget_used": _round(self.budget),
            "cosine": _round(self.cosine, 6),
            "accuracy_drop": _round(self.accuracy_drop),
            "top1_agreement": _round(self.top1_agreement),
            "failures": self.failures,
        }

    def summary(self) -> str:
        parts = [f"cosine {self.cosine:.5f}"]
        if self.accuracy_drop is not None:
            parts.append(f"accuracy drop {self.accuracy_drop:+.2f} points")
        elif self.top1_agreement is not None:
            parts.append(f"top-1 agreement {self.top1_agreement:.2f}%")
        return ", ".join(parts)


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or not math.isfinite(value):
        return None if value is None or math.isnan(value) else (1e9 if value > 0 else -1e9)
    return round(value, digits)


def score(
    outputs: Mapping[str, np.ndarray],
    data: ScoringSet,
    gates: Gates,
    task: TaskSpec | None = None,
    metric: Callable | None = None,
) -> Score:
    """The gate verdict (fidelity.compare) and how much of each gate's error budget is used. `task` and
    `metric` default to the scoring set's; without either, the raw outputs are judged as before."""
    task = task if task is not None else data.task
    metric = metric if metric is not None else data.metric
    if task is not None or metric is not None:
        raise NotImplementedError("task-aware scoring lands next")
    report = compare(data.reference, outputs, data.labels, gates)
    used = [0.0]
    worst_cos = min((o.cosine for o in report.outputs), default=1.0)
    if gates.min_cosine is not None:
        allowed = max(1.0 - gates.min_cosine, 1e-9)
        used.append((1.0 - worst_cos) / allowed)
    drop = report.accuracy_drop
    if drop is not None and gates.max_accuracy_drop is not None:
        used.append(max(drop, 0.0) / max(gates.max_accuracy_drop, 1e-9))
    if gates.min_snr_db is not None:
        worst_snr = min(o.snr_db for o in report.outputs)
        used.append(gates.min_snr_db / worst_snr if worst_snr > 0 else math.inf)
    agreement = [o.top1_agreement for o in report.outputs if o.top1_agreement is not None]
    if gates.min_top1_agreement is not None and agreement:
        allowed = max(100.0 - gates.min_top1_agreement, 1e-9)
        used.append((100.0 - min(agreement)) / allowed)
    return Score(
        passed=report.passed,
        budget=max(used),
        cosine=worst_cos,
        accuracy_drop=drop,
        top1_agreement=min(agreement) if agreement else None,
        failures=list(report.failures),
    )


def sample_errors(
    outputs: Mapping[str, np.ndarray], data: ScoringSet, task: TaskSpec | None = None
) -> np.ndarray:
    """Per sample: squared error relative to the reference's energy, summed over outputs. Smooth,
    so it ranks samples and reverted nodes where accuracy (a count) would tie. With a task whose outputs
    have slices, each slice is normalised by its own energy (box pixels do not drown class scores)."""
    total = np.zeros(len(data), dtype=np.float64)
    for name, ref in data.reference.items():
        ref64 = np.asarray(ref, dtype=np.float64).reshape(len(data), -1)
        act = np.asarray(outputs[name], dtype=np.float64).reshape(len(data), -1)
        energy = np.maximum(np.sum(ref64**2, axis=1), 1e-12)
        total += np.sum((act - ref64) ** 2, axis=1) / energy
    return total
