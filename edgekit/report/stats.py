"""Latency statistics for reports and regression checks, on the agent's per-iteration samples.

Regressions are judged with a bootstrap confidence interval on the ratio of medians (new / baseline):
- the median, not the mean: latency distributions are skewed with rare long stalls (page faults, a
  preempted thread), which move the mean and hardly the median;
- a confidence interval, not a rank test: Mann-Whitney's p-value goes to zero for any shift, however
  small, once there are a few hundred samples, and says nothing of its size. The interval bounds the
  size ("at least 7% slower, 95% confident"), which is what a CI gate compares with a threshold;
- the ratio, so one threshold in percent serves a 0.1 ms model and a 100 ms one.
Samples of one run are not independent (a run shares its process, its memory layout, the machine's
load at that time), so an interval from one run's samples is narrower than the run-to-run truth. Hence
an effect-size floor: a change counts only when the whole interval lies beyond the larger of the
configured threshold and the spread already seen between repeated runs or within a run (medians of
consecutive blocks). Two runs of the same artifact on the same device then differ by less than the
floor; a real slowdown clears it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
MAX_BOOTSTRAP_SAMPLES = 5000  # larger runs are thinned evenly (keeps order effects, bounds time)


def record_samples(record: Mapping[str, Any]) -> np.ndarray | None:
    """The per-iteration latencies (ms) of a results.jsonl record: the samples themselves, or values
    expanded from the agent's log-bucket histogram (each bucket at its geometric centre)."""
    values = record.get("latency_samples_ms")
    if values:
        return np.asarray(values, dtype=np.float64)
    hist = record.get("latency_histogram")
    if hist and hist.get("buckets"):
        step = float(hist.get("step", 1.001))
        index = np.asarray([b[0] for b in hist["buckets"]], dtype=np.float64)
        counts = np.asarray([b[1] for b in hist["buckets"]], dtype=np.int64)
        centres = step ** (index + 0.5)
        return np.repeat(centres, counts)
    return None


def percentiles(samples: np.ndarray, qs: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    """Linear interpolation between closest ranks, as the agent computes them."""
    return {f"p{q:g}": float(np.percentile(samples, q)) for q in qs}


def spread_pct(values: Sequence[float | None]) -> float | None:
    """The agent's spread ((max - min) / median, percent) of the finite values; None for fewer than two."""
    from edgekit.agent import spread_pct as agent_spread_pct

    return agent_spread_pct([v for v in values if v is not None and math.isfinite(v)])


def record_clusters(record: Mapping[str, Any]) -> list[np.ndarray]:
    """The record's samples split into its sessions (the agent's `repeats`, in order); one cluster
    when the run had one session or only a histogram survived."""
    samples = record_samples(record)
    if samples is None:
        return []
    counts = record.get("repeat_counts") or []
    if len(counts) > 1 and sum(counts) == samples.size and record.get("latency_samples_ms"):
        return [part for part in np.split(samples, np.cumsum(counts)[:-1]) if part.size]
    return [samples]


def _thin(samples: np.ndarray, limit: int) -> np.ndarray:
    if samples.size <= limit:
        return samples
    index = np.linspace(0, samples.size - 1, limit).round().astype(np.int64)
    return samples[index]


def _resampled_medians(
    clusters: Sequence[np.ndarray], resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Medians of a two-level bootstrap: sessions drawn with replacement, then samples within each
    drawn session. Sessions are the independent units (a session's samples share its load, cores
    and memory layout); with one session this is the ordinary bootstrap."""
    per = max(1, min(min(c.size for c in clusters), MAX_BOOTSTRAP_SAMPLES // len(clusters)))
    table = np.stack([_thin(np.asarray(c, dtype=np.float64), per) for c in clusters])  # (k, m)
    k, m = table.shape
    out = np.empty(resamples)
    chunk = max(1, 4_000_000 // (k * m))
    for start in range(0, resamples, chunk):
        n = min(resamples, start + chunk) - start
        which = rng.integers(0, k, size=(n, k, 1))
        pos = rng.integers(0, m, size=(n, k, m))
        out[start : start + n] = np.median(table[which, pos].reshape(n, k * m), axis=1)
    return out


def bootstrap_median_ratio(
    baseline: np.ndarray | Sequence[np.ndarray],
    new: np.ndarray | Sequence[np.ndarray],
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(ratio, low, high): median(new) / median(baseline) and its two-sided percentile-bootstrap
    interval. Each side is an array of samples or a list of sessions' arrays (two-level bootstrap).
    Seeded, so the same inputs always give the same verdict."""
    a = [baseline] if isinstance(baseline, np.ndarray) else list(baseline)
    b = [new] if isinstance(new, np.ndarray) else list(new)
    if not a or not b or any(c.size == 0 for c in a + b):
        raise ValueError("bootstrap needs samples on both sides")
    rng = np.random.default_rng(seed)
    ratios = _resampled_medians(b, resamples, rng) / _resampled_medians(a, resamples, rng)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(ratios, [tail, 100.0 - tail])
    point = float(np.median(np.concatenate(b)) / np.median(np.concatenate(a)))
    return point, float(low), float(high)


@dataclass
class LatencyVerdict:
    """A latency comparison. `change_pct` is the median's change (positive = slower); `ci_pct` its
    interval; `floor_pct` the smallest change that counts; `verdict` slower | faster | unchanged |
    inconclusive (the point estimate passes the floor but the interval does not)."""

    baseline_p50: float
    new_p50: float
    change_pct: float
    ci_pct: tuple[float, float]
    floor_pct: float
    floor_from: str
    confidence: float
    baseline_n: int
    new_n: int
    verdict: str

    @property
    def regression(self) -> bool:
        return self.verdict == "slower"

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline_p50_ms": self.baseline_p50,
            "new_p50_ms": self.new_p50,
            "change_pct": round(self.change_pct, 3),
            "ci_pct": [round(self.ci_pct[0], 3), round(self.ci_pct[1], 3)],
            "floor_pct": round(self.floor_pct, 3),
            "floor_from": self.floor_from,
            "confidence": self.confidence,
            "baseline_samples": self.baseline_n,
            "new_samples": self.new_n,
            "verdict": self.verdict,
            "regression": self.regression,
        }


def compare_latency(
    baseline: np.ndarray | Sequence[np.ndarray],
    new: np.ndarray | Sequence[np.ndarray],
    threshold_pct: float = 10.0,
    noise_pct: Mapping[str, float | None] | None = None,
    confidence: float = 0.95,
) -> LatencyVerdict:
    """Judge `new` against `baseline` (per-iteration ms). `noise_pct` names the spreads observed on
    either side (e.g. {"baseline run-to-run": 4.2, "new within-run": 3.1}); the largest of them and
    `threshold_pct` is the floor a change must clear with its whole confidence interval."""
    ratio, low, high = bootstrap_median_ratio(baseline, new, confidence)
    floor, source = threshold_pct, "threshold"
    for name, value in (noise_pct or {}).items():
        if value is not None and math.isfinite(value) and value > floor:
            floor, source = value, name
    change, lo, hi = (ratio - 1) * 100, (low - 1) * 100, (high - 1) * 100
    if lo > floor:
        verdict = "slower"
    elif hi < -floor:
        verdict = "faster"
    elif abs(change) > floor:
        verdict = "inconclusive"
    else:
        verdict = "unchanged"
    a = baseline if isinstance(baseline, np.ndarray) else np.concatenate(list(baseline))
    b = new if isinstance(new, np.ndarray) else np.concatenate(list(new))
    return LatencyVerdict(
        baseline_p50=float(np.median(a)),
        new_p50=float(np.median(b)),
        change_pct=change,
        ci_pct=(lo, hi),
        floor_pct=floor,
        floor_from=source,
        confidence=confidence,
        baseline_n=int(a.size),
        new_n=int(b.size),
        verdict=verdict,
    )


def pareto_front(points: Sequence[tuple[float, ...]], maximize: Sequence[bool]) -> list[bool]:
    """Which points no other point dominates (at least as good in every coordinate, better in one).
    `maximize[i]` says whether coordinate i is better when larger."""
    signs = [(-1.0 if m else 1.0) for m in maximize]
    costs = [tuple(s * v for s, v in zip(signs, p, strict=True)) for p in points]
    front = []
    for i, ci in enumerate(costs):
        dominated = any(
            all(o <= c for o, c in zip(cj, ci, strict=True))
            and any(o < c for o, c in zip(cj, ci, strict=True))
            for j, cj in enumerate(costs)
            if j != i
        )
        front.append(not dominated)
    return front
