"""The formulas (the only copies in edgekit: backends, benchmarks and tests import these): cosine, SNR,
top-1 agreement, accuracy, and the per-output metrics built from them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edgekit.errors import BadInput
from edgekit.fidelity.report import OutputMetrics


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
