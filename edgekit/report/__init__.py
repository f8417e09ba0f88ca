"""`edgekit report`: tables, plots and regression verdicts from results.jsonl and artifact records.

report = build_report(["results.jsonl"], baseline=["old/results.jsonl"])
write_report(report, "report.html")      # .html | .md | .json | .txt
print(render_text(report, width=80))
"""

from __future__ import annotations

from edgekit.report.compare import Thresholds
from edgekit.report.document import Report, build_report
from edgekit.report.text import markdown, render_text
from edgekit.report.write import FORMATS, write_report

__all__ = ["FORMATS", "Report", "Thresholds", "build_report", "markdown", "render_text", "write_report"]
