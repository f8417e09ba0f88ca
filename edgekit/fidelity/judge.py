"""The task's metrics and intervals (`evaluate`, `evaluate_metric`) and the gates that judge them (`judge`).

Which gates judge (Gates in edgekit.targets): raw -> min_cosine on every output and every slice,
min_snr_db, top-1 agreement of classifier-shaped outputs, accuracy drop with labels; classify -> accuracy
drop (labels) and top-1 agreement (min_top1_agreement; 97 when unset and there are no labels), not cosine;
detect -> min_f1; map / segment -> min_mask_iou; embed -> min_embedding_cosine (worst per-sample);
tokens -> top-1 agreement (min_top1_agreement; 90 when unset) and max_kl; a user metric with a verdict
(min_metric, or its own "passed") -> that verdict instead of the task's. Every task also keeps the
min_slice_cosine floor: no feature slice (or output without slices) below it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edgekit.errors import BadInput
from edgekit.fidelity import bootstrap, detection, maps, measures, user
from edgekit.fidelity.report import FidelityReport
from edgekit.fidelity.tasks import TaskSpec
from edgekit.targets import Gates

CLASSIFY_TOP1_DEFAULT = 97.0
TOKENS_TOP1_DEFAULT = 90.0
METRIC_ROUNDS = 200  # a user metric is called once per bootstrap round

#: metric -> (label in summaries and failures, higher is better, digits)
LABELS: dict[str, tuple[str, bool, int]] = {
    "f1": ("detection F1", True, 2),
    "mask_iou": ("mask IoU", True, 3),
    "worst_cosine": ("worst per-sample embedding cosine", True, 4),
    "top1_agreement": ("top-1 agreement", True, 2),
    "accuracy_drop": ("accuracy drop", False, 2),
    "kl": ("next-token KL", False, 4),
    "metric": ("metric", True, 4),
}


def _outputs(task: TaskSpec, reference: Mapping[str, np.ndarray]) -> tuple[str, ...]:
    """The outputs the task reads; all of them must be there (a task of another model is refused)."""
    missing = [n for n in task.outputs if n not in reference]
    if missing and task.kind != "raw":
        raise BadInput(
            f"task {task.kind} reads output {', '.join(repr(m) for m in missing)}, which the FP32 reference "
            f"does not have (it has: {', '.join(reference) or 'none'}); infer the task from the same model"
        )
    return tuple(task.outputs) or tuple(reference)[:1]


def evaluate(
    task: TaskSpec,
    reference: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    labels: np.ndarray | None,
    boxes: np.ndarray | None,
    intervals: bool = True,
) -> dict[str, Any]:
    """The report's `task` entry before gating: kind, source, outputs, metrics, intervals, samples."""
    samples = int(next(iter(reference.values())).shape[0]) if reference else 0
    names = _outputs(task, reference)
    kind = task.kind
    metrics: dict[str, Any] = {}
    stats: dict[str, Callable[[np.ndarray], float]] = {}
    if kind == "detect" or (kind == "segment" and "layout" in task.params):
        metrics, table = detection.metrics(reference, actual, names, task.params, boxes)
        stats["f1"] = table.f1
        if kind == "segment" and len(names) >= 2:  # Ultralytics segment: instance masks too
            params = task.params
            inter, union = detection.instance_mask_sums(
                reference,
                actual,
                names,
                params,
                detection.detect(reference, names, params),
                detection.detect(actual, names, params),
            )
            metrics["mask_iou"] = maps.pooled_iou(inter, union)
            stats["mask_iou"] = lambda i: maps.pooled_iou(inter, union, i)
    elif kind in ("map", "segment"):
        metrics, (inter, union) = maps.metrics(reference[names[0]], actual[names[0]], task.params)
        stats["mask_iou"] = lambda i: maps.pooled_iou(inter, union, i)
    elif kind == "classify":
        metrics, per = measures.classify(
            reference[names[0]], actual[names[0]], labels, int(task.params.get("topk", 5))
        )
        for key in ("top1_agreement", "accuracy_drop"):
            if key in per:
                stats[key] = (lambda v: lambda i: float(v[i].mean()))(per[key])
    elif kind == "embed":
        metrics, per = measures.embed(reference[names[0]], actual[names[0]])
        cos = per["worst_cosine"]
        stats["worst_cosine"] = lambda i: float(cos[i].min())
        stats["mean_cosine"] = lambda i: float(cos[i].mean())
    elif kind == "tokens":
        metrics, per = measures.tokens(reference[names[0]], actual[names[0]])
        for key in ("top1_agreement", "kl"):
            stats[key] = (lambda v: lambda i: float(v[i].mean()))(per[key])
    bounds_by_metric = {}
    for key, stat in stats.items() if intervals else ():
        bounds = bootstrap.interval(stat, samples)
        if bounds is not None:
            bounds_by_metric[key] = [bounds[0], bounds[1]]
    return {
        "kind": kind,
        "source": task.source,
        "outputs": list(names) if kind != "raw" else list(reference),
        "metrics": metrics,
        "intervals": bounds_by_metric,
        "samples": samples,
        "gates": [],
        "undecided": False,
        "summary": None,
    }


def evaluate_metric(
    fn: Callable,
    reference: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    labels: np.ndarray | None,
    intervals: bool = True,
) -> dict[str, Any]:
    """The report's `metric` entry: name, value, reference (FP32 against itself), passed, interval."""
    value, passed = user.call(fn, reference, actual, labels)
    best, _ = user.call(fn, reference, reference, labels)
    samples = int(next(iter(reference.values())).shape[0]) if reference else 0

    def stat(index: np.ndarray) -> float:
        sub_labels = None if labels is None else np.asarray(labels)[index]
        return user.call(
            fn,
            {k: v[index] for k, v in reference.items()},
            {k: np.asarray(v)[index] for k, v in actual.items()},
            sub_labels,
        )[0]

    try:
        bounds = bootstrap.interval(stat, samples, rounds=METRIC_ROUNDS) if intervals else None
    except BadInput:  # a metric that needs every sample (or distinct ones) has no resampled interval
        bounds = None
    return {
        "name": user.metric_name(fn),
        "value": value,
        "reference": best,
        "passed": passed,
        "interval": list(bounds) if bounds is not None else None,
        "samples": samples,
    }


# ---- gates ------------------------------------------------------------------------------------------------
def _task_gates(
    kind: str, gates: Gates, metrics: Mapping[str, Any], detect_layout: bool
) -> list[tuple[str, float]]:
    """(metric, gate value) pairs that judge this task (lower-is-better metrics: see LABELS)."""
    pairs: list[tuple[str, float]] = []
    if kind == "detect" or (kind == "segment" and detect_layout):
        if gates.min_f1 is not None:
            pairs.append(("f1", gates.min_f1))
        if kind == "segment" and gates.min_mask_iou is not None and "mask_iou" in metrics:
            pairs.append(("mask_iou", gates.min_mask_iou))
    elif kind in ("map", "segment"):
        if gates.min_mask_iou is not None:
            pairs.append(("mask_iou", gates.min_mask_iou))
    elif kind == "embed":
        if gates.min_embedding_cosine is not None:
            pairs.append(("worst_cosine", gates.min_embedding_cosine))
    elif kind == "classify":
        labelled = metrics.get("accuracy_drop") is not None
        if labelled and gates.max_accuracy_drop is not None:
            pairs.append(("accuracy_drop", gates.max_accuracy_drop))
        top1 = gates.min_top1_agreement
        if top1 is None and not labelled:
            top1 = CLASSIFY_TOP1_DEFAULT
        if top1 is not None:
            pairs.append(("top1_agreement", top1))
    elif kind == "tokens":
        top1 = gates.min_top1_agreement if gates.min_top1_agreement is not None else TOKENS_TOP1_DEFAULT
        pairs.append(("top1_agreement", top1))
        if gates.max_kl is not None:
            pairs.append(("kl", gates.max_kl))
    return pairs


def _line(key: str, value: float, gate: float, task: Mapping[str, Any]) -> str:
    label, higher, digits = LABELS[key]
    unit = "%" if key == "top1_agreement" else (" points" if key == "accuracy_drop" else "")
    op = "<" if higher else ">"
    names = task.get("outputs") or []
    word = "output" if len(names) == 1 else "outputs"
    context = "vs FP32" if key == "f1" else (f"{word} {', '.join(names)}" if names else "")
    extra = f"{context}, " if context else ""
    return f"{label} {value:.{digits}f}{unit} {op} {gate:.{digits}f}{unit} ({extra}{task['samples']} samples)"


def judge(
    report: FidelityReport, gates: Gates, detect_layout: bool = False, raw_ran: bool = False
) -> list[str]:
    """The failures of the task's gates, the user metric's and the slice floor; fills in the task's
    `gates`, `undecided` and `summary`. The raw per-output gates are the caller's (apply_gates);
    `raw_ran` says they ran, so whole outputs they judged are not judged twice."""
    failures: list[str] = []
    task = report.task
    samples = report.samples
    metric_verdict = False
    if report.metric is not None:
        m = report.metric
        decided = []
        if gates.min_metric is not None:
            ok = m["value"] >= gates.min_metric
            decided.append(ok)
            if not ok:
                failures.append(
                    f"metric {m['name']} {m['value']:.4g} < {gates.min_metric:g} ({samples} samples)"
                )
            m["undecided"] = bootstrap.undecided(
                tuple(m["interval"]) if m.get("interval") else None, gates.min_metric
            )
        if m.get("passed") is False:
            failures.append(f"metric {m['name']} says failed (score {m['value']:.4g}, {samples} samples)")
        metric_verdict = bool(decided) or m.get("passed") is not None
        bounds = tuple(m["interval"]) if m.get("interval") else None
        m["summary"] = bootstrap.summary(f"metric {m['name']}", m["value"], bounds, samples, 4)
    if task is not None:
        task["gates"], task["undecided"] = [], False
        pairs = _task_gates(task["kind"], gates, task["metrics"], detect_layout)
        summaries = []
        for key, gate in pairs:
            value = task["metrics"].get(key)
            if value is None:
                continue
            label, higher, digits = LABELS[key]
            bounds = tuple(task["intervals"][key]) if key in task.get("intervals", {}) else None
            passed = bool(value >= gate) if higher else bool(value <= gate)
            unsure = bootstrap.undecided(bounds, gate, higher)
            task["gates"].append(
                {
                    "metric": key,
                    "gate": gate,
                    "value": value,
                    "passed": passed,
                    "judges": not metric_verdict,
                    "undecided": unsure,
                }
            )
            task["undecided"] = task["undecided"] or (unsure and not metric_verdict)
            text = bootstrap.summary(
                label[:1].upper() + label[1:] if key != "f1" else "F1", value, bounds, samples, digits
            )
            if unsure:
                text += f" (undecided: the gate {gate:g} lies inside the interval; more samples decide)"
            elif bounds is None and samples < 2:
                text += " (too few samples for an interval)"
            summaries.append(text)
            if not passed and not metric_verdict:
                failures.append(_line(key, value, gate, task))
        task["summary"] = "; ".join(summaries) if summaries else None
    strict = task is not None and task["kind"] == "raw" and not metric_verdict
    failures.extend(slice_floor(report, gates, strict, raw_ran))
    return failures


def slice_floor(report: FidelityReport, gates: Gates, strict: bool, raw_ran: bool = False) -> list[str]:
    """No slice (or output without slices) below min_slice_cosine; with `strict` (raw), no slice below
    min_cosine either (whole outputs are the raw gate's own lines)."""
    failures = []
    floor = gates.min_slice_cosine
    bar = max(v for v in (floor, gates.min_cosine if strict else None, -2.0) if v is not None)
    sliced = {s["output"] for s in report.slices}
    for s in report.slices:
        cos = s["cosine"]
        if not cos >= bar:
            failures.append(f"{s['where']}: cosine {cos:.5f} < {bar:g} ({report.samples} samples)")
    if floor is not None and not (raw_ran and gates.min_cosine is not None and gates.min_cosine >= floor):
        for out in report.outputs:
            if out.name not in sliced and not out.cosine >= floor:
                failures.append(
                    f"{out.name}: cosine {out.cosine:.5f} < {floor:g} (the floor every task keeps, "
                    f"{report.samples} samples)"
                )
    return failures
