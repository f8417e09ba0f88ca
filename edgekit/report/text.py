"""Plain-text and Markdown renderings. The text tables fit a width (80 columns for CI logs): cells
never wrap; the columns that do not fit go into a further table under the same row keys, and failure
reasons are listed under the tables, wrapped to the width."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgekit.report.model import STATE_LABELS, Row

if TYPE_CHECKING:
    from edgekit.report.document import Report

TEXT_STATES = {
    "ok": "ok",
    "unverified": "unverified",
    "verify_failed": "FAIL-verify",
    "failed": "FAILED",
    "skipped": "skipped",
}
MD_STATES = {
    "ok": "✅ verified",
    "unverified": "✅ not verified",
    "verify_failed": "❎ failed verification",
    "failed": "❌ failed",
    "skipped": "➖ skipped",
}


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value:.3f}"
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def fmt_num(value: Any, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def fmt_mb(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else (f"{value:.2f}" if value < 100 else f"{value:.0f}")


def fmt_count(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return str(value)


def fmt_precision(row: Row) -> str:
    return f"{row.precision}>{row.effective_precision}" if row.effective_precision else row.precision


@dataclass
class Column:
    header: str
    cell: Callable[[Row], str]
    key: bool = False
    left: bool = False
    max_width: int = 14


COLUMNS: list[Column] = [
    Column("target", lambda r: r.target, key=True, left=True, max_width=16),
    Column("prec", fmt_precision, key=True, left=True, max_width=10),
    Column("device", lambda r: r.device or "-", key=True, left=True, max_width=12),
    Column("state", lambda r: TEXT_STATES[r.state], left=True, max_width=11),
    Column("timed on", lambda r: "host proxy" if r.host_proxy else "-", left=True, max_width=10),
    Column("p50 ms", lambda r: fmt_ms(r.p50)),
    Column("p90 ms", lambda r: fmt_ms(r.p90)),
    Column("p99 ms", lambda r: fmt_ms(r.p99)),
    Column("FPS", lambda r: fmt_num(r.fps, ".0f" if (r.fps or 0) >= 100 else ".1f")),
    Column("vs fp32", lambda r: fmt_num(r.speedup, ".2f", "x")),
    Column("MB", lambda r: fmt_mb(r.size_mb)),
    Column("ratio", lambda r: fmt_num(r.compression_ratio, ".2f", "x")),
    Column("params", lambda r: fmt_count(r.params)),
    Column("wt MB", lambda r: fmt_mb(r.weight_mb)),
    Column("peak MB", lambda r: fmt_num(r.peak_rss_mb, ".0f")),
    Column("cosine", lambda r: fmt_num(r.cosine, ".5f")),
    Column("top1 %", lambda r: fmt_num(r.top1, ".1f")),
    Column("acc %", lambda r: fmt_num(r.accuracy, ".2f")),
    Column("drop", lambda r: fmt_num(r.accuracy_drop, "+.2f")),
    Column("init ms", lambda r: fmt_ms(r.init_ms)),
    Column("1st ms", lambda r: fmt_ms(r.first_ms)),
    Column("runs", lambda r: str(r.runs) if r.runs else "-"),
    Column("spread", lambda r: fmt_num(r.run_spread_pct or r.block_spread_pct, ".1f", "%")),
    Column("busy", lambda r: fmt_num(r.other_cpu_pct, ".0f", "%")),
]


SHAPE_COLUMN = Column("shape", lambda r: r.shape or "-", key=True, left=True, max_width=24)


def columns_for(rows: Sequence[Row]) -> list[Column]:
    """COLUMNS, with the timed shape as a key column after the device when runs stated shapes (bench
    --input-shape given more than once: latency reads against sequence length, row by row)."""
    if not any(r.shape for r in rows):
        return list(COLUMNS)
    at = next(i for i, c in enumerate(COLUMNS) if c.header == "device") + 1
    return [*COLUMNS[:at], SHAPE_COLUMN, *COLUMNS[at:]]


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def text_table(rows: Sequence[Row], columns: Sequence[Column] = COLUMNS, width: int = 80) -> list[str]:
    """Tables no wider than `width`: the key columns, then as many of the others as fit; the rest
    in further tables with the same keys."""
    cells = {id(c): [_clip(c.cell(r), c.max_width) for r in rows] for c in columns}
    widths = {id(c): max([len(c.header), *(len(v) for v in cells[id(c)])]) for c in columns}
    keys = [c for c in columns if c.key]
    groups: list[list[Column]] = [[]]
    used = sum(widths[id(c)] for c in keys) + 2 * (len(keys) - 1)
    for col in (c for c in columns if not c.key):
        if any(v != "-" for v in cells[id(col)]) is False:
            continue  # a column with no value anywhere says nothing
        if groups[-1] and used + 2 + widths[id(col)] > width:
            groups.append([])
            used = sum(widths[id(c)] for c in keys) + 2 * (len(keys) - 1)
        groups[-1].append(col)
        used += 2 + widths[id(col)]
    lines: list[str] = []
    for group in groups:
        shown = keys + group

        def line(values: list[str], shown: list[Column] = shown) -> str:
            parts = [
                v.ljust(widths[id(c)]) if c.left else v.rjust(widths[id(c)])
                for c, v in zip(shown, values, strict=True)
            ]
            return "  ".join(parts).rstrip()

        if lines:
            lines.append("")
        lines.append(line([c.header for c in shown]))
        lines.append(line(["-" * widths[id(c)] for c in shown]))
        for i in range(len(rows)):
            lines.append(line([cells[id(c)][i] for c in shown]))
    return lines


def reasons(rows: Sequence[Row], width: int = 80) -> list[str]:
    out = []
    for row in rows:
        if row.reason:
            head = f"{TEXT_STATES[row.state]} {row.label}" + (f" ({row.stage})" if row.stage else "") + ": "
            out += textwrap.wrap(head + row.reason, width, initial_indent="  ", subsequent_indent="      ")
    return out


def render_text(report: Report, width: int = 80) -> str:
    lines: list[str] = []
    for table in report.tables:
        title = _clip(f"== {table.model}: {len(table.rows)} row(s) ", width - 2) + " "
        lines.append(title + "=" * max(0, width - len(title)))
        lines += text_table(table.rows, columns_for(table.rows), width=width)
        why = reasons(table.rows, width)
        if why:
            lines += ["", *why]
        lines.append("")
    if report.comparisons is not None:
        lines += comparison_text(report, width)
    lines += textwrap.wrap(summary_line(report), width, subsequent_indent="  ")
    return "\n".join(lines) + "\n"


def comparison_text(report: Report, width: int = 80) -> list[str]:
    assert report.comparisons is not None
    title = "== against the baseline "
    lines = [title + "=" * max(0, width - len(title))]
    for comp in report.comparisons:
        verdict = "REGRESSION" if comp.regressed else (comp.latency.verdict if comp.latency else "-")
        lines += textwrap.wrap(f"{verdict}: {comp.label}", width, subsequent_indent="    ")
        detail = list(comp.regressions)
        if comp.latency is not None and not comp.regressed:
            v = comp.latency
            detail.append(
                f"p50 {v.baseline_p50:.4g} -> {v.new_p50:.4g} ms ({v.change_pct:+.1f}%, CI "
                f"{v.ci_pct[0]:+.1f}..{v.ci_pct[1]:+.1f}%, floor {v.floor_pct:.1f}% from {v.floor_from})"
            )
        detail += comp.notes
        for item in detail:
            lines += textwrap.wrap(item, width, initial_indent="    ", subsequent_indent="      ")
    lines.append("")
    return lines


def summary_line(report: Report) -> str:
    counts: dict[str, int] = {}
    for table in report.tables:
        for row in table.rows:
            counts[row.state] = counts.get(row.state, 0) + 1
    parts = [f"{n} {STATE_LABELS[s]}" for s, n in sorted(counts.items())]
    text = "rows: " + (", ".join(parts) or "none")
    if report.comparisons is not None:
        text += f"; regressions: {len(report.regressions)}"
    return text


# ---- Markdown --------------------------------------------------------------------------------------
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: Report) -> str:
    lines = ["# edgekit report", "", f"Sources: {', '.join(f'`{s}`' for s in report.sources)}", ""]
    for table in report.tables:
        lines += [f"## {_md_escape(table.model)}", ""]
        cols = [c for c in columns_for(table.rows) if c.header != "state"]
        lines.append("| state | " + " | ".join(c.header for c in cols) + " |")
        lines.append("|---|" + "|".join("---" if c.left else "--:" for c in cols) + "|")
        for row in table.rows:
            values = [MD_STATES[row.state], *(_md_escape(c.cell(row)) for c in cols)]
            lines.append("| " + " | ".join(values) + " |")
        failures = [r for r in table.rows if r.reason]
        if failures:
            lines.append("")
            for row in failures:
                stage = f" ({row.stage})" if row.stage else ""
                lines.append(f"- **{_md_escape(row.label)}**{stage}: {_md_escape(row.reason or '')}")
        lines.append("")
    if report.comparisons is not None:
        lines += ["## Against the baseline", "", f"Baseline: {', '.join(report.baseline_sources)}", ""]
        lines.append("| verdict | artifact | p50 change | CI | floor | details |")
        lines.append("|---|---|--:|--:|--:|---|")
        for comp in report.comparisons:
            v = comp.latency
            verdict = "❌ regression" if comp.regressed else (v.verdict if v else "-")
            lines.append(
                "| "
                + " | ".join(
                    [
                        verdict,
                        _md_escape(comp.label),
                        f"{v.change_pct:+.1f}%" if v else "-",
                        f"{v.ci_pct[0]:+.1f}..{v.ci_pct[1]:+.1f}%" if v else "-",
                        f"{v.floor_pct:.1f}%" if v else "-",
                        _md_escape("; ".join(comp.regressions + comp.notes)),
                    ]
                )
                + " |"
            )
        lines.append("")
    lines += [summary_line(report), "", "Plots: see report.html."]
    return "\n".join(lines) + "\n"
