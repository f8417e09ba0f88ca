"""results.jsonl: one benchmark record per line, appended durably, read back tolerantly."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Records of a results.jsonl; a torn last line (a run that died mid-write) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            log.warning("%s:%d: skipping an unreadable line (interrupted write?)", path, number)
    return records


def done_pairs(path: str | Path) -> set[tuple[str, str]]:
    """(artifact sha256, device name) of finished runs; a run of stated shapes adds them to the name
    (edgekit.runner.shapes.label), so each shape set resumes on its own. The stated shapes are the
    settings' (`record["shapes"]` is what the agent fed, a static model's own shapes included)."""
    from edgekit.runner.shapes import label

    def stated(r: dict[str, Any]) -> Any:
        return (r.get("settings") or {}).get("shapes")

    return {
        (
            r["artifact"]["sha256"],
            r["device"]["name"] + (f" [{label(stated(r))}]" if stated(r) else ""),
        )
        for r in read_results(path)
        if r.get("status") == "ok" and "artifact" in r and "device" in r
    }


class ResultWriter:
    """Appends one JSON line per record, flushed and fsynced before returning."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A torn last line from a killed run must not glue onto our first record.
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                needs_newline = fh.read(1) != b"\n"
            if needs_newline:
                self._append("\n")

    def _append(self, text: str) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def write(self, record: dict[str, Any]) -> None:
        self._append(json.dumps(record, default=str) + "\n")


def table_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per record for the final table (CLI renders it with rich)."""
    rows = []
    for r in records:
        lat = r.get("latency_ms") or {}
        rows.append(
            {
                "artifact": r["artifact"]["name"],
                "precision": r["artifact"].get("precision"),
                "device": r["device"]["name"],
                "status": r["status"],
                "p50_ms": lat.get("p50"),
                "p95_ms": lat.get("p95"),
                "mean_ms": lat.get("mean"),
                "fps": r.get("throughput_fps"),
                "init_ms": r.get("init_ms"),
                "peak_rss_mb": r.get("peak_rss_mb"),
                "error": r.get("error"),
            }
        )
    return rows


def any_failed(records: list[dict[str, Any]]) -> bool:
    return any(r.get("status") == "failed" for r in records)
