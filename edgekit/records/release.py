"""Requests and records of report and release."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import BadInput
from edgekit.records.base import Request, as_paths

if TYPE_CHECKING:
    pass


# ---- report, release ---------------------------------------------------------------------------------
@dataclass
class ReportRequest(Request):
    """A report of RESULTS (results.jsonl files, release, artifact or export folders), judged against
    `baseline` (the same kinds of paths) when given, written to every path of `outputs` (the suffix
    picks the format: .html, .md, .json, .txt). The thresholds say when a difference is a regression."""

    results: Sequence[str | Path]
    baseline: Sequence[str | Path] = field(default_factory=list)
    outputs: Sequence[str | Path] = field(default_factory=list)
    max_slowdown_pct: float = 10.0  # the smallest median slowdown counted (its whole interval must clear it)
    confidence: float = 0.95
    max_accuracy_loss: float = 0.5  # percentage points
    max_cosine_loss: float = 0.002
    title: str = "edgekit report"

    def __post_init__(self) -> None:
        self.results, self.baseline, self.outputs = (
            as_paths(self.results),
            as_paths(self.baseline),
            as_paths(self.outputs),
        )
        if not self.results:
            raise BadInput("report: give at least one results.jsonl, release or artifact folder")


@dataclass
class ReportRecord:
    """The report as `report.json` holds it (`document`) and the files written; `report` is the live
    `edgekit.report.Report` (per-iteration samples for plots, text tables), None when read from JSON."""

    document: dict[str, Any]
    written: list[str] = field(default_factory=list)
    report: Any = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {**self.document, "written": list(self.written)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReportRecord:
        document = dict(data)
        return cls(document, [str(p) for p in document.pop("written", [])])

    def regressions(self) -> list[str]:
        """'model target precision @ device' of every comparison with the baseline that regressed."""
        baseline = self.document.get("baseline") or {}
        return [
            f"{c['model']} {c['target']} {c['precision']} @ {c['device']}"
            for c in baseline.get("comparisons", [])
            if c.get("regression")
        ]


@dataclass
class ReleaseRequest(Request):
    """Build, verify, benchmark and package the release `config` describes (edgekit.toml) into
    dist/<name>-<version>/. `check_reproducible` None: as the config says."""

    config: str | Path = "edgekit.toml"
    allow_failures: bool = False
    executor: str = "local"  # local | ray
    address: str | None = None  # the Ray cluster (HOST:PORT), with executor "ray"
    use_cache: bool = True
    rebench: bool = False
    check_reproducible: bool | None = None

    def __post_init__(self) -> None:
        self.config = str(self.config)


@dataclass
class ReleaseRecord:
    """The release folder (None when a gate failed and nothing was released), its release.json, the
    gate failures ('artifact: gate: why') and the wall time of each stage. `report` is the live
    `edgekit.report.Report` of the release, None when read from JSON."""

    path: str | None
    release: dict[str, Any]
    failures: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    report: Any = field(default=None, compare=False, repr=False)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "passed": self.passed,
            "failures": list(self.failures),
            "seconds": dict(self.seconds),
            "release": self.release,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReleaseRecord:
        return cls(data["path"], dict(data["release"]), list(data["failures"]), dict(data["seconds"]))

    def failure_summary(self, limit: int = 5) -> str:
        return "; ".join(self.failures[:limit]) + (" ..." if len(self.failures) > limit else "")
