"""Plots for the HTML report, drawn with matplotlib's Agg/SVG backends (no pyplot global state, no
display) and returned as SVG text: deterministic (fixed hash salt, no date) and self-contained
(text as paths, no fonts or files referenced)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from edgekit.errors import require
from edgekit.report.model import Row
from edgekit.report.stats import pareto_front

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PALETTE = {
    "onnxruntime": "#4C72B0",
    "openvino": "#DD8452",
    "tflite": "#55A868",
    "tensorrt": "#C44E52",
}
OTHER = "#8172B3"


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _figure(width: float, height: float) -> Figure:
    require("matplotlib", "report", "report plots")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(fig: Figure, salt: str) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: inline-ready


def latency_distribution(rows: Sequence[Row], title: str, salt: str) -> str | None:
    """Box plots of the per-iteration latencies, one per artifact and device: box = p25..p75,
    line = median, whiskers = p1..p99 (stalls beyond are not drawn)."""
    rows = [r for r in rows if r.latency_samples is not None and r.latency_samples.size]
    if not rows:
        return None
    fig = _figure(7.0, 1.2 + 0.38 * len(rows))
    ax = fig.add_subplot()
    data = [r.latency_samples for r in rows if r.latency_samples is not None]
    parts = ax.boxplot(
        data,
        orientation="horizontal",
        whis=(1, 99),
        showfliers=False,
        patch_artist=True,
        widths=0.6,
        medianprops={"color": "black"},
    )
    for patch, row in zip(parts["boxes"], rows, strict=True):
        patch.set_facecolor(PALETTE.get(row.backend, OTHER))
        patch.set_alpha(0.75)
    ax.set_yticks(range(1, len(rows) + 1), [r.label for r in rows], fontsize=8)
    ax.invert_yaxis()
    low = min(float(d.min()) for d in data)
    high = max(float(d.max()) for d in data)
    if low > 0 and high / low > 20:
        _log_axis(ax.xaxis)
    ax.set_xlabel("latency per inference (ms); box p25-p75, whiskers p1-p99")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig, salt)


def _quality(rows: Sequence[Row]) -> tuple[str, list[float | None]]:
    if any(r.accuracy is not None for r in rows):
        return "task accuracy (%)", [r.accuracy for r in rows]
    if any(r.top1 is not None for r in rows):
        return "top-1 agreement with FP32 (%)", [r.top1 for r in rows]
    return "cosine similarity to FP32", [r.cosine for r in rows]


def tradeoff(rows: Sequence[Row], title: str, salt: str) -> str | None:
    """Latency (x) against accuracy (y), marker area = artifact size; ringed points are on the Pareto
    front of (lower latency, smaller size, higher accuracy), and the dashed line is the front of
    latency and accuracy alone."""
    label, quality = _quality(rows)
    points: list[tuple[Row, float, float, float]] = [  # row, p50, size, quality
        (r, r.p50, r.size_mb, q)
        for r, q in zip(rows, quality, strict=True)
        if r.p50 and q is not None and r.size_mb is not None
    ]
    if len(points) < 2:
        return None
    fig = _figure(7.0, 4.6)
    ax = fig.add_subplot()
    front = pareto_front([(p50, size, q) for _, p50, size, q in points], [False, False, True])
    biggest = max(size for _, _, size, _ in points) or 1.0
    for (row, p50, size, q), on_front in zip(points, front, strict=True):
        area = 40 + 600 * math.sqrt(size / biggest)
        ax.scatter(
            [p50],
            [q],
            s=area,
            marker="X" if row.state == "verify_failed" else "o",
            color=PALETTE.get(row.backend, OTHER),
            alpha=0.7,
            edgecolors="black" if on_front else "none",
            linewidths=2 if on_front else 0,
            zorder=3,
        )
        ax.annotate(
            f"{row.target} {row.precision}",
            (p50, q),
            fontsize=7,
            xytext=(6, 4),
            textcoords="offset points",
        )
    staircase = _front_2d([(p50, q) for _, p50, _, q in points])
    ax.plot([p[0] for p in staircase], [p[1] for p in staircase], "--", color="black", alpha=0.5, zorder=2)
    lat = [p50 for _, p50, _, _ in points]
    if min(lat) > 0 and max(lat) / min(lat) > 20:
        _log_axis(ax.xaxis)
    ax.set_xlabel("p50 latency (ms)")
    ax.set_ylabel(label)
    ax.set_title(title + " (ringed: Pareto front; area: size; X: failed verification)", fontsize=9)
    ax.grid(alpha=0.3)
    handles = _legend(ax, {r.backend for r, _, _, _ in points})
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="best")
    return _svg(fig, salt)


def _log_axis(axis: Any) -> None:
    """A log scale labelled with plain numbers (0.02, 0.1, 5) on its decades only."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.axes.set_xscale("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _front_2d(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other beats on both lower latency and higher quality, as a staircase."""
    best: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not best or y > best[-1][1]:
            best.append((x, y))
    steps: list[tuple[float, float]] = []
    for x, y in best:
        if steps:
            steps.append((x, steps[-1][1]))
        steps.append((x, y))
    return steps


def _legend(ax: Any, backends: set[str]) -> list[Any]:
    from matplotlib.lines import Line2D

    return [
        Line2D([], [], marker="o", linestyle="", color=PALETTE.get(b, OTHER), label=b)
        for b in sorted(b for b in backends if b)
    ]
