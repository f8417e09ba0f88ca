"""The report as one object: tables per model, the baseline comparison, devices; to JSON."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit import __version__
from edgekit.report import load
from edgekit.report.compare import Comparison, Thresholds, compare
from edgekit.report.model import FAILED_STATES, ModelTable, Row, build_rows, tables

SCHEMA = 1


@dataclass
class Report:
    tables: list[ModelTable]
    sources: list[str]
    comparisons: list[Comparison] | None = None
    baseline_sources: list[str] = field(default_factory=list)
    thresholds: Thresholds = field(default_factory=Thresholds)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    title: str = "edgekit report"
    generation: list[dict[str, Any]] = field(default_factory=list)  # decoders: decode latency vs context

    @property
    def rows(self) -> list[Row]:
        return [row for table in self.tables for row in table.rows]

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons or [] if c.regressed]

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.state in FAILED_STATES]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "edgekit_version": __version__,
            "title": self.title,
            "sources": self.sources,
            "models": [{"model": t.model, "rows": [r.to_json() for r in t.rows]} for t in self.tables],
            "devices": self.devices,
            "generation": self.generation,
            "baseline": None
            if self.comparisons is None
            else {
                "sources": self.baseline_sources,
                "thresholds": self.thresholds.to_json(),
                "comparisons": [c.to_json() for c in self.comparisons],
                "regressions": len(self.regressions),
            },
        }


def devices_seen(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per device, what the agent saw last: CPU, OS, runtimes, governor, clocks where readable."""
    out: dict[str, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: str(r.get("timestamp") or "")):
        env = (record.get("device") or {}).get("environment")
        if not env:
            continue
        name = str(record["device"].get("name"))
        conditions = record.get("conditions") or {}
        out[name] = {
            "target": record["device"].get("target"),
            "transport": record["device"].get("transport"),
            "cpu": env.get("cpu"),
            "cpu_count": env.get("cpu_count"),
            "os": env.get("distro") or env.get("os"),
            "kernel": env.get("kernel"),
            "board": env.get("board"),
            "power_mode": env.get("power_mode"),
            "governor": env.get("cpu_governor") or ",".join(conditions.get("governors") or []) or None,
            "runtimes": env.get("runtimes"),
            "load_avg": conditions.get("load_avg_before"),
            "temperature_c": conditions.get("temperature_c_after"),
            "throttle_events": conditions.get("throttle_events"),
        }
    return out


def build_report(
    results: Iterable[str | Path] | load.Inputs,
    baseline: Iterable[str | Path] | load.Inputs | None = None,
    thresholds: Thresholds | None = None,
    title: str = "edgekit report",
) -> Report:
    """The report of RESULTS (paths, see `edgekit.report.load`), compared with a baseline if given."""
    inputs = results if isinstance(results, load.Inputs) else load.load(results)
    rows = build_rows(inputs)
    report = Report(
        tables=tables(rows),
        sources=inputs.sources,
        thresholds=thresholds or Thresholds(),
        devices=devices_seen(inputs.records),
        title=title,
        generation=generation_rows(inputs.records),
    )
    if baseline is not None:
        old = baseline if isinstance(baseline, load.Inputs) else load.load(baseline)
        report.baseline_sources = old.sources
        report.comparisons = compare(build_rows(old), rows, report.thresholds)
    return report


GENERATION_COLUMNS = (
    ("artifact", "artifact"),
    ("device", "device"),
    ("prompt", "prompt"),
    ("prefill_ms", "prefill ms"),
    ("ttft_ms", "TTFT ms"),
    ("context", "context"),
    ("decode_ms", "decode ms/token"),
    ("tokens_per_s", "generation tok/s"),
    ("peak_rss_mb", "peak RSS MB"),
)


def generation_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per ok decode-loop record and context length (the agent's "decode"), in context order:
    the report's decode latency against context length."""
    rows = []
    for record in records:
        dec = record.get("decode")
        if record.get("status") != "ok" or not dec:
            continue
        for step in dec.get("decode") or []:
            rows.append(
                {
                    "artifact": (record.get("artifact") or {}).get("name"),
                    "device": (record.get("device") or {}).get("name"),
                    "prompt": dec.get("prompt_tokens"),
                    "prefill_ms": (dec.get("prefill_ms") or {}).get("p50"),
                    "ttft_ms": dec.get("ttft_ms"),
                    "context": step.get("context"),
                    "decode_ms": (step.get("latency_ms") or {}).get("p50"),
                    "tokens_per_s": dec.get("tokens_per_s"),
                    "peak_rss_mb": dec.get("peak_rss_mb"),
                }
            )
    return rows


def generation_cells(row: dict[str, Any]) -> list[str]:
    def cell(key: str) -> str:
        value = row.get(key)
        if value is None:
            return "-"
        return (
            f"{value:.3f}"
            if key == "decode_ms"
            else (f"{value:.1f}" if isinstance(value, float) else str(value))
        )

    return [cell(key) for key, _ in GENERATION_COLUMNS]
