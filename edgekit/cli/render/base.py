"""The consoles, number formats, tables and progress views every verb's rendering shares."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table


def stdout() -> Console:
    return Console(highlight=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def mb(num: int | float) -> str:
    return f"{num / 1e6:.2f} MB" if num >= 100_000 else f"{num / 1e3:.1f} kB"


def num(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(title: str, columns: Iterable[str], rows: Iterable[Sequence[str]], fold: bool = False) -> Table:
    out = Table(title=title)
    for col in columns:
        out.add_column(col, overflow="fold" if fold else "ellipsis")
    for row in rows:
        out.add_row(*row)
    return out


def warnings(messages: Iterable[str]) -> None:
    console = stderr()
    for message in messages:
        console.print(f"[yellow]warning:[/yellow] {message}")


class Steps:
    """A spinner with the current step on stderr when it is a terminal; each step is also logged."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._status: Any = None

    def __enter__(self) -> Steps:
        console = stderr()
        if console.is_terminal:
            self._status = console.status(self.title)
            self._status.__enter__()
        return self

    def __call__(self, message: str) -> None:
        if self._status is not None:
            self._status.update(f"{self.title}: {message}")
        logging.getLogger("edgekit").info(message)

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(None, None, None)


class BenchView:
    """Live progress of a fleet run on stderr: one line per finished job (not with --json), and the
    connect/upload/run stages with --debug."""

    def __init__(self, quiet: bool, debug: bool) -> None:
        self.console = stderr()
        self.quiet, self.debug = quiet, debug

    def __call__(self, event: dict[str, Any]) -> None:
        stage = event.get("stage")
        if stage in ("ok", "failed", "skipped") and not self.quiet:
            color = {"ok": "green", "failed": "red", "skipped": "dim"}[str(stage)]
            record = event.get("record") or {}
            detail = ""
            if stage == "ok" and record.get("latency_ms"):
                detail = f" p50 {record['latency_ms']['p50']:.3f} ms"
            elif stage == "failed":
                detail = f" {record.get('error') or ''}"
            self.console.print(
                f"[{color}]{stage:7}[/{color}] {event['artifact']} on {event['device']}{detail}"
            )
        elif stage in ("connecting", "uploading", "building", "running") and self.debug:
            self.console.print(f"[dim]{stage} {event['artifact']} on {event['device']}[/dim]")
