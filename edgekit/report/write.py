"""Write a report in the format its file name asks for, atomically."""

from __future__ import annotations

import json
from pathlib import Path

from edgekit.errors import BadInput, suggest
from edgekit.fsio import write_text_atomic
from edgekit.report.document import Report
from edgekit.report.text import markdown, render_text

FORMATS = (".html", ".md", ".json", ".txt")


def render(report: Report, fmt: str) -> str:
    if fmt == ".html":
        from edgekit.report.html import render_html

        return render_html(report)
    if fmt == ".md":
        return markdown(report)
    if fmt == ".json":
        return json.dumps(report.to_json(), indent=2, default=str) + "\n"
    if fmt == ".txt":
        return render_text(report)
    raise BadInput(f"unknown report format '{fmt}'.{suggest(fmt, FORMATS)} Valid: {', '.join(FORMATS)}")


def check_path(path: str | Path) -> Path:
    out = Path(path).expanduser()
    if out.suffix.lower() not in FORMATS:
        raise BadInput(
            f"report file '{out.name}': the suffix picks the format, one of {', '.join(FORMATS)}"
            + suggest(out.suffix.lower(), FORMATS)
        )
    return out


def write_report(report: Report, path: str | Path) -> Path:
    out = check_path(path)
    write_text_atomic(out, render(report, out.suffix.lower()))
    return out
