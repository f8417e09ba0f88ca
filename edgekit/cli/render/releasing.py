"""Rendering of report and release: their text tables as they are."""

from __future__ import annotations

from typing import Any

from edgekit.cli.render.base import stderr, stdout


def _plain(text: str) -> None:
    """Text tables as they are: no markup, no highlighting, no re-wrapping (they fit their width)."""
    stdout().print(text, markup=False, highlight=False, soft_wrap=True, end="")


def report(record: Any, width: int = 80) -> None:
    """`edgekit report`: the report's text tables (record.report, an edgekit.report.Report) and the
    files written."""
    from edgekit.report import render_text

    _plain(render_text(record.report, width))
    console = stderr()
    for path in record.written:
        console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


def release(record: Any) -> None:
    """`edgekit release`: the release's report as text tables (where it went is progress, on stderr)."""
    from edgekit.report import render_text

    if record.report is not None:
        _plain(render_text(record.report))
