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
    # with a task: kind, the gated metrics' values ({"f1": 0.97}), worst slice; with a user metric: its value
    task: dict[str, Any] | None = None
    metric: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "passed": self.passed,
            "budget_used": _round(self.budget),
            "cosine": _round(self.cosine, 6),
            "accuracy_drop": _round(self.accuracy_drop),
            "top1_agreement": _round(self.top1_agreement),
            "failures": self.failures,
        }
        if self.task is not None:
            out["task"] = self.task
        if self.metric is not None:
            out["metric"] = _round(self.metric, 6)
        return out

    def summary(self) -> str:
        parts = [f"cosine {self.cosine:.5f}"]
        if self.task is not None and self.task.get("values"):
            parts = [", ".join(f"{k} {v:.4g}" for k, v in self.task["values"].items()), *parts]
        if self.metric is not None:
            parts.insert(0, f"metric {self.metric:.4g}")
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
        return _task_score(outputs, data, gates, task, metric)
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


#: the best value of each gated task metric (higher-is-better ones); lower-is-better ones are budgeted v / gate
_CEILING = {"f1": 1.0, "mask_iou": 1.0, "worst_cosine": 1.0, "top1_agreement": 100.0}


def _task_score(
    outputs: Mapping[str, np.ndarray],
    data: ScoringSet,
    gates: Gates,
    task: TaskSpec | None,
    metric: Callable | None,
) -> Score:
    """The budget from the task's own criteria (judge's gates), the user metric's and the slice floor."""
    report = compare(data.reference, outputs, data.labels, gates, task=task, metric=metric, intervals=False)
    used = [0.0]
    worst_cos = min((o.cosine for o in report.outputs), default=1.0)
    raw = task is None or task.kind == "raw"
    metric_decides = report.metric is not None and (
        gates.min_metric is not None or report.metric.get("passed") is not None
    )
    values: dict[str, float] = {}
    if report.metric is not None and metric_decides:
        value, best = report.metric["value"], report.metric["reference"]
        if report.metric.get("passed") is False:
            used.append(math.inf)
        if gates.min_metric is not None:
            room = best - gates.min_metric
            used.append(
                (best - value) / room if room > 0 else (0.0 if value >= gates.min_metric else math.inf)
            )
    elif raw:
        if gates.min_cosine is not None:
            allowed = max(1.0 - gates.min_cosine, 1e-9)
            worst_slice = min((s["cosine"] for s in report.slices), default=1.0)
            used.append((1.0 - min(worst_cos, worst_slice)) / allowed)
        if gates.min_snr_db is not None:
            worst_snr = min(o.snr_db for o in report.outputs)
            used.append(gates.min_snr_db / worst_snr if worst_snr > 0 else math.inf)
        drop = report.accuracy_drop
        if drop is not None and gates.max_accuracy_drop is not None:
            used.append(max(drop, 0.0) / max(gates.max_accuracy_drop, 1e-9))
    for gate in (report.task or {}).get("gates", []):
        key, value, bound = gate["metric"], float(gate["value"]), float(gate["gate"])
        values[key] = value
        if not gate.get("judges", True):
            continue
        if key in _CEILING:
            top = _CEILING[key]
            used.append((top - value) / max(top - bound, 1e-9))
        else:
            used.append(max(value, 0.0) / max(bound, 1e-9))
    if gates.min_slice_cosine is not None:
        sliced = {s["output"] for s in report.slices}
        floor_cos = [s["cosine"] for s in report.slices] + [
            o.cosine for o in report.outputs if o.name not in sliced
        ]
        worst = min(floor_cos, default=1.0)
        used.append((1.0 - worst) / max(1.0 - gates.min_slice_cosine, 1e-9))
    used = [u if not math.isnan(u) else math.inf for u in used]
    agreement = [o.top1_agreement for o in report.outputs if o.top1_agreement is not None]
    worst_slice = min(report.slices, key=lambda s: s["cosine"], default=None)
    return Score(
        passed=report.passed,
        budget=max(used),
        cosine=worst_cos,
        accuracy_drop=report.accuracy_drop,
        top1_agreement=min(agreement) if agreement else None,
        failures=list(report.failures),
        task=None
        if report.task is None
        else {
            "kind": report.task["kind"],
            "values": values,
            "worst_slice": None
            if worst_slice is None
            else {"where": worst_slice["where"], "cosine": _round(worst_slice["cosine"], 6)},
        },
        metric=None if report.metric is None else report.metric["value"],
    )


def sample_errors(
    outputs: Mapping[str, np.ndarray], data: ScoringSet, task: TaskSpec | None = None
) -> np.ndarray:
    """Per sample: squared error relative to the reference's energy, summed over outputs. Smooth,
    so it ranks samples and reverted nodes where accuracy (a count) would tie. With a task whose outputs
    have slices, each slice is normalised by its own energy (box pixels do not drown class scores)."""
    task = task if task is not None else data.task
    total = np.zeros(len(data), dtype=np.float64)
    if task is not None:
        from edgekit.fidelity.slices import sample_slice_errors
        from edgekit.fidelity.tasks import resolve

        task = resolve(task, data.reference)

        for name, ref in data.reference.items():
            spec = task.slices.get(name)
            if spec:
                total += sample_slice_errors(ref, outputs[name], spec)
                continue
            ref64 = np.asarray(ref, dtype=np.float64).reshape(len(data), -1)
            act = np.asarray(outputs[name], dtype=np.float64).reshape(len(data), -1)
            total += np.sum((act - ref64) ** 2, axis=1) / np.maximum(np.sum(ref64**2, axis=1), 1e-12)
        return total
    for name, ref in data.reference.items():
        ref64 = np.asarray(ref, dtype=np.float64).reshape(len(data), -1)
        act = np.asarray(outputs[name], dtype=np.float64).reshape(len(data), -1)
        energy = np.maximum(np.sum(ref64**2, axis=1), 1e-12)
        total += np.sum((act - ref64) ** 2, axis=1) / energy
    return total
