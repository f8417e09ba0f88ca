"""Per-slice raw metrics: each output cut along its feature axis (the axis its head concatenates on), so
quantities of different scales are judged apart. The whole-tensor cosine of a YOLO head is the cosine of
its box pixels (0-320); its class scores (0-1) do not move it. Per slice, zeroed scores show as cosine 0."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgekit.fidelity.formulas import cosine, snr_db


def _where(output: str, axis: int, start: int, stop: int, label: str) -> str:
    """'output0 channels 4-21 (classes)'."""
    word = "channels" if axis == 1 else f"axis {axis}"
    text = f"{output} {word} {start}-{stop - 1}"
    if label and not label.startswith(("channels", "axis")):
        text += f" ({label})"
    return text


def _offset(array: np.ndarray, spec: Mapping[str, Any]) -> int | None:
    """0 when samples were concatenated on the model's batch axis, 1 when stacked before it (the
    array has one more axis): the one whose axis holds exactly the slices; None when neither does."""
    total = max(int(stop) for _, stop, _ in spec["ranges"])
    offsets = [o for o in (0, 1) if int(spec["axis"]) + o < array.ndim]
    exact = [o for o in offsets if array.shape[int(spec["axis"]) + o] == total]
    if exact:
        return exact[0]
    # the ranges need not cover the axis (a head's rows after the classes may be unnamed)
    wide = [o for o in offsets if array.shape[int(spec["axis"]) + o] > total]
    return wide[0] if wide and array.ndim - wide[0] >= int(spec["axis"]) + 1 else None


def _cut(array: np.ndarray, axis: int, start: int, stop: int, offset: int) -> np.ndarray:
    return np.take(array, np.arange(start, stop), axis=axis + offset)


def measure(
    reference: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    slices: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """One record per slice: output, axis, range [start, stop), label, where (for messages), cosine, snr_db."""
    found: list[dict[str, Any]] = []
    for output, spec in slices.items():
        if output not in reference or output not in actual:
            continue
        ref = np.asarray(reference[output], dtype=np.float64)
        act = np.asarray(actual[output], dtype=np.float64).reshape(ref.shape)
        axis = int(spec["axis"])
        offset = _offset(ref, spec)
        if offset is None:
            continue
        for start, stop, label in spec["ranges"]:
            r = _cut(ref, axis, int(start), int(stop), offset)
            a = _cut(act, axis, int(start), int(stop), offset)
            found.append(
                {
                    "output": output,
                    "axis": axis,
                    "range": [int(start), int(stop)],
                    "label": str(label),
                    "where": _where(output, axis, int(start), int(stop), str(label)),
                    "cosine": cosine(r, a),
                    "snr_db": snr_db(r, a),
                }
            )
    return found


def sample_slice_errors(
    reference: np.ndarray, actual: np.ndarray, spec: Mapping[str, Any] | None
) -> np.ndarray:
    """Per sample: squared error of each slice relative to that slice's mean per-sample energy, summed over
    slices (one slice, the whole output, without a spec)."""
    ref = np.asarray(reference, dtype=np.float64)
    act = np.asarray(actual, dtype=np.float64).reshape(ref.shape)
    samples = ref.shape[0]
    parts = []
    offset = _offset(ref, spec) if spec else None
    if spec and offset is not None:
        for start, stop, _ in spec["ranges"]:
            axis = int(spec["axis"])
            parts.append(
                (
                    _cut(ref, axis, int(start), int(stop), offset),
                    _cut(act, axis, int(start), int(stop), offset),
                )
            )
    if not parts:
        parts = [(ref, act)]
    total = np.zeros(samples)
    for r, a in parts:
        r2, a2 = r.reshape(samples, -1), a.reshape(samples, -1)
        energy = max(float(np.mean(np.sum(r2**2, axis=1))), 1e-12)
        total += np.sum((a2 - r2) ** 2, axis=1) / energy
    return total
