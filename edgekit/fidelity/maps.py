"""Map fidelity: IoU of the thresholded masks, the way users of a probability or segmentation map judge it.

A probability map [N, 1, H, W] (or any single-channel map) is thresholded at `threshold` (0.5 for maps in
[0, 1]; 0 for logit maps with values outside it); a class map [N, C, H, W] (C > 1) is reduced to its
per-pixel arg-max and judged per class (mean IoU over the classes either side predicts). The IoU pools
pixels over the samples (intersection and union summed), so empty masks do not count as perfect or as zero;
the per-sample sums are kept for the bootstrap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAP_THRESHOLD = 0.5


def threshold_for(reference: np.ndarray, threshold: float | None) -> float:
    if threshold is not None:
        return float(threshold)
    ref = np.asarray(reference)
    return MAP_THRESHOLD if ref.size == 0 or (np.nanmin(ref) >= 0.0 and np.nanmax(ref) <= 1.0) else 0.0


def _class_axis(reference: np.ndarray) -> int | None:
    """The channel axis of a [N, C, H, W] class map (C > 1), else None."""
    return 1 if reference.ndim == 4 and reference.shape[1] > 1 else None


def mask_sums(
    reference: np.ndarray, actual: np.ndarray, threshold: float | None, multilabel: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample (and class): intersection and union pixel counts, each [S, K]. `multilabel`: each
    channel of a class map is thresholded on its own (independent sigmoid masks)."""
    ref = np.asarray(reference, dtype=np.float64)
    act = np.asarray(actual, dtype=np.float64).reshape(ref.shape)
    samples = ref.shape[0]
    axis = _class_axis(ref)
    if axis is None or multilabel:
        cut = threshold_for(ref, threshold)
        channels = ref.shape[1] if axis is not None else 1
        rm = (ref >= cut).reshape(samples, channels, -1)
        am = (np.nan_to_num(act, nan=-np.inf) >= cut).reshape(samples, channels, -1)
        inter = np.sum(rm & am, axis=2)
        union = np.sum(rm | am, axis=2)
        return inter.astype(np.float64), union.astype(np.float64)
    classes = ref.shape[axis]
    rl = ref.argmax(axis=axis).reshape(samples, -1)
    al = np.nan_to_num(act, nan=-np.inf).argmax(axis=axis).reshape(samples, -1)
    inter = np.stack([np.sum((rl == c) & (al == c), axis=1) for c in range(classes)], axis=1)
    union = np.stack([np.sum((rl == c) | (al == c), axis=1) for c in range(classes)], axis=1)
    return inter.astype(np.float64), union.astype(np.float64)


def pooled_iou(inter: np.ndarray, union: np.ndarray, index: np.ndarray | None = None) -> float:
    """Mean over classes with any pixels of (sum intersection / sum union); 1.0 when both are empty."""
    pick = slice(None) if index is None else index
    i, u = inter[pick].sum(axis=0), union[pick].sum(axis=0)
    present = u > 0
    return float(np.mean(i[present] / u[present])) if present.any() else 1.0


def metrics(reference: np.ndarray, actual: np.ndarray, params: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    multilabel = bool(params.get("multilabel"))
    inter, union = mask_sums(reference, actual, params.get("threshold"), multilabel)
    thresholded = multilabel or _class_axis(np.asarray(reference)) is None
    out = {
        "mask_iou": pooled_iou(inter, union),
        "threshold": threshold_for(reference, params.get("threshold")) if thresholded else None,
    }
    return out, (inter, union)
