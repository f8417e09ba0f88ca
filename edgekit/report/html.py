"""The HTML report: one self-contained file (inline CSS, plots as data: URIs, no scripts, no network:
a Content-Security-Policy forbids every fetch), readable on a phone (tables scroll sideways with the
artifact column pinned, plots scale to the screen)."""

from __future__ import annotations

import base64
import html
import logging
import re
from typing import TYPE_CHECKING

from edgekit import __version__
from edgekit.report import plots
from edgekit.report.model import STATE_LABELS, Row
from edgekit.report.text import COLUMNS, summary_line

if TYPE_CHECKING:
    from edgekit.report.document import Report

log = logging.getLogger(__name__)

HTML_STATES = {
    "ok": "verified",
    "unverified": "not verified",
    "verify_failed": "failed verification",
    "failed": "failed",
    "skipped": "skipped",
}
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
:root { color-scheme: light dark; --bad: #c0392b; --warn: #b9770e; --ok: #1e8449; --line: #8884; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 12px; }
h1 { font-size: 1.4em; margin: .2em 0; } h2 { font-size: 1.2em; margin-top: 1.6em; }
.summary { margin: .3em 0 1em; } .badge { display: inline-block; padding: 1px 8px; border-radius: 10px;
       border: 1px solid var(--line); margin: 2px 4px 2px 0; white-space: nowrap; }
.badge.bad { border-color: var(--bad); color: var(--bad); } .badge.ok { border-color: var(--ok); color: var(--ok); }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; font-size: 13px; white-space: nowrap; width: 100%; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: right; }
th { position: sticky; top: 0; background: Canvas; font-weight: 600; }
td.l, th.l { text-align: left; } td.key, th.key { position: sticky; left: 0; background: Canvas; z-index: 1; }
tr.failed td { color: var(--bad); } tr.verify_failed td { color: var(--warn); } tr.skipped td { opacity: .6; }
tr.reason td { text-align: left; font-size: 12px; padding-top: 0; }
.why { position: sticky; left: 8px; display: block; white-space: normal; max-width: calc(100vw - 48px); }
.st { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; color: #fff; }
.st.ok { background: var(--ok); } .st.unverified { background: #2e86c1; } .st.skipped { background: #7f8c8d; }
.st.verify_failed { background: var(--warn); } .st.failed { background: var(--bad); }
figure { margin: 1em 0; } figure img { width: 100%; max-width: 760px; height: auto; display: block;
       background: #fff; border-radius: 6px; }
figcaption { font-size: 12px; opacity: .8; }
ul.cmp li.reg { color: var(--bad); } footer { margin-top: 2em; font-size: 12px; opacity: .7; }
@media (max-width: 600px) { body { padding: 6px; font-size: 14px; } table { font-size: 12px; } }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _slug(text: str, index: int) -> str:
    return f"m{index}-" + re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:40]


def _img(svg: str, alt: str) -> str:
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/svg+xml;base64,{data}">'


def _table(rows: list[Row]) -> str:
    cols = [c for c in COLUMNS if c.header != "state"]
    head = '<th class="l key">artifact</th><th class="l">state</th>' + "".join(
        f'<th class="{"l" if c.left else ""}">{_e(c.header)}</th>'
        for c in cols
        if c.header not in ("target", "prec")
    )
    body = []
    span = 2 + len(cols) - 2
    for row in rows:
        cells = [
            f'<td class="l key">{_e(row.target)} {_e(row.precision)}'
            + (f" <small>(runs {_e(row.effective_precision)})</small>" if row.effective_precision else "")
            + "</td>",
            f'<td class="l" title="{_e(STATE_LABELS[row.state])}"><span class="st {row.state}">'
            f"{_e(HTML_STATES[row.state])}</span></td>",
        ]
        cells += [
            f'<td class="{"l" if c.left else ""}">{_e(c.cell(row))}</td>'
            for c in cols
            if c.header not in ("target", "prec")
        ]
        body.append(f'<tr class="{row.state}">' + "".join(cells) + "</tr>")
        if row.reason:
            stage = f" ({row.stage})" if row.stage else ""
            body.append(
                f'<tr class="reason {row.state}"><td colspan="{span}"><span class="why">'
                f"{_e(STATE_LABELS[row.state])}{_e(stage)}: {_e(row.reason)}</span></td></tr>"
            )
    return (
        '<div class="scroll"><table class="results"><thead><tr>'
        + head
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table></div>"
    )


def _plots(rows: list[Row], model: str, index: int) -> str:
    if not plots.available():
        return "<p><em>Plots need matplotlib: pip install 'edgekit[report]'.</em></p>"
    out = []
    svg = plots.latency_distribution(
        rows, f"{model}: latency per artifact and device", f"edgekit-{index}-lat"
    )
    if svg:
        out.append(
            f"<figure>{_img(svg, f'latency distribution of {model}')}"
            "<figcaption>Latency distribution: box p25–p75, line median, whiskers p1–p99.</figcaption></figure>"
        )
    devices = sorted({r.device for r in rows if r.device and r.p50})
    for d_index, device in enumerate(devices):
        svg = plots.tradeoff(
            [r for r in rows if r.device == device],
            f"{model} on {device}",
            f"edgekit-{index}-{d_index}-pareto",
        )
        if svg:
            out.append(
                f"<figure>{_img(svg, f'size, latency and accuracy trade-off of {model} on {device}')}"
                "<figcaption>Trade-off: latency vs accuracy, marker area = size; ringed = Pareto front "
                "(no other artifact is faster, smaller and at least as accurate).</figcaption></figure>"
            )
    return "".join(out)


def _comparisons(report: Report) -> str:
    assert report.comparisons is not None
    items = []
    for comp in report.comparisons:
        v = comp.latency
        parts = list(comp.regressions)
        if v is not None and not comp.regressed:
            parts.append(
                f"p50 {v.baseline_p50:.4g} → {v.new_p50:.4g} ms ({v.change_pct:+.1f}%, "
                f"{v.confidence:.0%} CI {v.ci_pct[0]:+.1f}…{v.ci_pct[1]:+.1f}%, floor {v.floor_pct:.1f}% "
                f"from {v.floor_from}): {v.verdict}"
            )
        parts += comp.notes
        cls = ' class="reg"' if comp.regressed else ""
        mark = "❌ " if comp.regressed else ""
        items.append(f"<li{cls}>{mark}<b>{_e(comp.label)}</b>: {_e('; '.join(parts) or 'compared')}</li>")
    t = report.thresholds
    return (
        '<section id="baseline"><h2>Against the baseline</h2>'
        f"<p>Baseline: {_e(', '.join(report.baseline_sources))}. A latency change counts when its whole "
        f"{t.confidence:.0%} bootstrap interval (ratio of medians) lies beyond max({t.max_slowdown_pct:g}%, "
        f"the observed run spread); accuracy loss &gt; {t.max_accuracy_loss:g} points or cosine loss &gt; "
        f"{t.max_cosine_loss:g} counts as a fidelity regression.</p>"
        f'<ul class="cmp">{"".join(items)}</ul></section>'
    )


def _devices(report: Report) -> str:
    if not report.devices:
        return ""
    rows = []
    for name, env in sorted(report.devices.items()):
        runtimes = ", ".join(f"{k} {v}" for k, v in (env.get("runtimes") or {}).items())
        load = env.get("load_avg")
        rows.append(
            "<tr>"
            + "".join(
                f'<td class="l">{_e(v if v is not None else "-")}</td>'
                for v in (
                    name,
                    env.get("target"),
                    env.get("cpu"),
                    env.get("cpu_count"),
                    env.get("os"),
                    env.get("governor"),
                    f"{load[0]:.2f}" if load else None,
                    runtimes,
                )
            )
            + "</tr>"
        )
    head = "".join(
        f'<th class="l">{h}</th>'
        for h in ("device", "target", "CPU", "cores", "OS", "governor", "load", "runtimes")
    )
    return (
        '<section id="devices"><h2>Devices</h2><div class="scroll"><table><thead><tr>'
        + head
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div></section>"
    )


def render_html(report: Report) -> str:
    badges = []
    for table in report.tables:
        for state in ("ok", "unverified", "verify_failed", "failed", "skipped"):
            n = sum(1 for r in table.rows if r.state == state)
            if n:
                cls = "bad" if state in ("failed", "verify_failed") else ("ok" if state == "ok" else "")
                badges.append(
                    f'<span class="badge {cls}">{_e(table.model)}: {n} {_e(STATE_LABELS[state])}</span>'
                )
    if report.comparisons is not None:
        n = len(report.regressions)
        badges.append(
            f'<span class="badge {"bad" if n else "ok"}">{n} regression(s) against the baseline</span>'
        )
    nav = " · ".join(f'<a href="#{_slug(t.model, i)}">{_e(t.model)}</a>' for i, t in enumerate(report.tables))
    sections = []
    for i, table in enumerate(report.tables):
        sections.append(
            f'<section id="{_slug(table.model, i)}"><h2>{_e(table.model)}</h2>'
            + _table(table.rows)
            + _plots(table.rows, table.model, i)
            + "</section>"
        )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>{_e(report.title)}</title><style>{STYLE}</style></head><body>",
        f"<header><h1>{_e(report.title)}</h1>",
        f'<p class="summary">{"".join(badges)}</p>',
        f"<p><small>{_e(summary_line(report))}. Sources: {_e(', '.join(report.sources))}</small></p>",
        f"<nav>{nav}</nav></header>",
        *sections,
        _generation(report) if report.generation else "",
        _comparisons(report) if report.comparisons is not None else "",
        _devices(report),
        f"<footer>edgekit {_e(__version__)} · vs fp32: p50 of the same model's FP32 artifact on the same "
        "device (same target) divided by this p50 · spread: run-to-run (or within-run) change of the "
        "median · busy: other processes' share of the CPUs during the timed loop</footer>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _generation(report: Report) -> str:
    """Decoders with a KV cache: decode latency against context length."""
    from edgekit.report.document import GENERATION_COLUMNS, generation_cells

    head = "".join(f"<th>{_e(h)}</th>" for _, h in GENERATION_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in generation_cells(row)) + "</tr>"
        for row in report.generation
    )
    return (
        '<section id="generation"><h2>Generation: decode latency against context length</h2>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>"
    )
