"""Bootstrap intervals over samples (seeded, so the same set gives the same interval): how sure a verdict
is. A gate inside the interval is `undecided` - the set is too small (or the artifact too close to the
gate) to tell pass from fail."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

ROUNDS = 1000
LEVEL = 0.95
SEED = 0


def interval(
    stat: Callable[[np.ndarray], float],
    samples: int,
    rounds: int = ROUNDS,
    seed: int = SEED,
    level: float = LEVEL,
) -> tuple[float, float] | None:
    """The `level` percentile interval of `stat(index)` over `rounds` resamples of the sample indices
    (with replacement); None below 2 samples."""
    if samples < 2:
        return None
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, samples, size=(rounds, samples))
    values = np.array([stat(row) for row in draws], dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    return float(np.percentile(values, tail)), float(np.percentile(values, 100.0 - tail))


def undecided(bounds: tuple[float, float] | None, gate: float | None, higher_is_better: bool = True) -> bool:
    """True when the interval straddles the gate: pass and fail are both within it."""
    if bounds is None or gate is None:
        return False
    lo, hi = bounds
    return lo < gate <= hi if higher_is_better else lo <= gate < hi


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else str(value)


def summary(
    label: str, value: float, bounds: tuple[float, float] | None, samples: int, digits: int = 2
) -> str:
    """'F1 0.97 [0.93, 1.00] on 24 samples'."""
    text = f"{label} {_fmt(value, digits)}"
    if bounds is not None:
        text += f" [{_fmt(bounds[0], digits)}, {_fmt(bounds[1], digits)}]"
    return f"{text} on {samples} samples"
