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

from collections.abc import Callable, Mapping

import numpy as np

from edgekit.errors import BadInput, suggest
from edgekit.fidelity.formulas import (
    accuracy,
    cosine,
    is_classifier,
    output_metrics,
    snr_db,
    top1_agreement,
)
from edgekit.fidelity.report import FidelityReport, OutputMetrics
from edgekit.fidelity.tasks import TASKS, TaskSpec, infer_task
from edgekit.targets import Gates

__all__ = [
    "TASKS",
    "FidelityReport",
    "OutputMetrics",
    "TaskSpec",
    "accuracy",
    "apply_gates",
    "compare",
    "cosine",
    "infer_task",
    "is_classifier",
    "output_metrics",
    "snr_db",
    "top1_agreement",
]


def compare(
    reference: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    labels: np.ndarray | None = None,
    gates: Gates | None = None,
    where: str = "host",
    task: TaskSpec | None = None,
    metric: Callable | None = None,
    *,
    boxes: np.ndarray | None = None,
    intervals: bool = True,
) -> FidelityReport:
    """Metrics for every output (arrays stacked over samples on axis 0) and the gate verdict.

    `task` (from `infer_task`) adds the task's metrics, per-slice numbers and a bootstrap interval, and
    judges by the task (see `apply_gates`); None keeps the raw comparison. `metric` is a user metric
    (`fn(reference, actual, labels) -> float | {"score", "passed"}`, higher is better). `boxes` is a
    detection set's ground truth (the npz key `boxes`: float [S, M, 5] rows (class, x1, y1, x2, y2) in
    model-input pixels, rows with class < 0 are padding): with it, detection also reports real mAP@0.5.
    `intervals=False` skips the bootstrap (the INT8 search scores many candidates; verdicts keep it)."""
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
    if task is not None:
        from edgekit.fidelity import judge, slices
        from edgekit.fidelity.tasks import resolve

        task = resolve(task, reference)

        report.slices = slices.measure(reference, actual, task.slices)
        report.task = judge.evaluate(task, reference, actual, labels, boxes, intervals)
        report.task["params"] = task.to_json()["params"]
    elif boxes is not None:
        raise BadInput("ground-truth boxes need a detection task (--task detect or a detector's metadata)")
    if metric is not None:
        from edgekit.fidelity import judge

        report.metric = judge.evaluate_metric(metric, reference, actual, labels, intervals)
    if gates is not None:
        apply_gates(report, gates)
    return report


def apply_gates(report: FidelityReport, gates: Gates) -> None:
    """The verdict: `report.failures`, one readable line each. Without a task (and user metric) the raw
    gates judge every output as always; with one, the task's gates judge (edgekit.fidelity.judge) and the
    raw gates only for task "raw", which also judges every feature slice."""
    report.gates = gates.to_json()
    report.failures = []
    if report.task is not None or report.metric is not None:
        from edgekit.fidelity import judge

        raw = report.task is None or report.task["kind"] == "raw"
        raw_ran = raw and (report.metric is None or not _metric_decides(report.metric, gates))
        if raw_ran:
            _raw_gates(report, gates)
        detect_layout = bool(report.task and "layout" in (report.task.get("params") or {}))
        report.failures.extend(judge.judge(report, gates, detect_layout, raw_ran))
        return
    _raw_gates(report, gates)


def _metric_decides(metric: dict, gates: Gates) -> bool:
    return gates.min_metric is not None or metric.get("passed") is not None


def _raw_gates(report: FidelityReport, gates: Gates) -> None:
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
