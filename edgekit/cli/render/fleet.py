"""Rendering of targets, inspect, devices, bench and demo."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from edgekit.cli.render.base import mb, num, stdout, table


# ---- per verb ------------------------------------------------------------------------------------
def targets(rows: list[dict[str, Any]]) -> None:
    def color(row: Mapping[str, Any]) -> str:
        tone = "green" if row["status"] == "installed" else "yellow"
        return f"[{tone}]{row['status']}[/{tone}]"

    cells = [
        [r["name"], r["backend"], ",".join(r["precisions"]), r["build"], color(r), r["description"]]
        for r in rows
    ]
    columns = ("target", "backend", "precisions", "build", "status", "description")
    stdout().print(table("edgekit targets", columns, cells))


def _shape(dims: Sequence[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def inspect(report: Mapping[str, Any], fit: list[dict[str, Any]] | None) -> None:
    console = stdout()
    console.print(
        f"[bold]{Path(report['path']).name}[/bold]  opset {report['opset']}, IR {report['ir_version']}, "
        f"producer {report['producer'] or '?'}, {report['node_count']} nodes, {mb(report['file_bytes'])} on disk"
    )
    io = [
        [kind, row["name"], _shape(row["shape"]), row["dtype"]]
        for kind, rows in (("input", report["inputs"]), ("output", report["outputs"]))
        for row in rows
    ]
    console.print(table("inputs / outputs", ("kind", "name", "shape", "dtype"), io))
    console.print("ops: " + ", ".join(f"{op} {count}" for op, count in report["op_histogram"]))
    console.print(
        f"parameters: {report['params']:,} in {report['param_tensors']} tensors (Constant-node weights "
        f"included, shared tensors once); non-float constants {mb(report['nonfloat_constant_bytes'])}"
    )
    macs = ", ".join(f"{op} {n / 1e6:.2f}M" for op, n in report["macs"].items() if n)
    console.print(
        f"MACs at {report['analysis_shapes']}: {report['total_macs'] / 1e6:.2f}M ({macs or 'none'})"
    )
    console.print(
        f"peak activations: {mb(report['peak_activation_bytes'])} (fp32) at node "
        f"{report['peak_node'].get('name', '?')}"
    )
    runtimes = list(report["runtime_memory_bytes"])
    sizes = [
        [
            precision,
            mb(weights),
            mb(report["peak_activation_bytes_by_precision"][precision]),
            *[mb(report["runtime_memory_bytes"][r][precision]) for r in runtimes],
        ]
        for precision, weights in report["weight_bytes"].items()
    ]
    columns = ("precision", "weights", "peak activations", *[f"{r} memory" for r in runtimes])
    console.print(
        table("per precision (runtime memory: only for runtimes whose memory was measured)", columns, sizes)
    )
    if fit is not None:
        console.print(_fit_table(fit))
    for note in report["notes"]:
        console.print(f"[dim]note: {note}[/dim]")


def _fit_table(fit: list[dict[str, Any]]) -> Table:
    rows = []
    for row in fit:
        fits = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "unknown"}[row["fits"]]
        basis = row.get("fits_basis") or "estimate"
        if row["fits"] is not None and basis != "measured":
            fits += f" ({basis})"  # an estimate, never presented as a measured fit
        headroom = (
            "-" if row["headroom_mb"] is None else f"{row['headroom_mb']:.0f} MB ({row['headroom_pct']:.0f}%)"
        )
        rows.append(
            [
                row["device"],
                str(row["target"] or "-"),
                row["precision"],
                f"{row['estimated_mb']:.1f} ({row['estimate_runtime']})",
                "-" if row.get("measured_mb") is None else f"{row['measured_mb']:.1f}",
                str(row["device_mb"] or "?"),
                headroom,
                fits,
            ]
        )
    columns = ("device", "target", "precision", "estimate MB", "measured MB", "device MB", "headroom", "fits")
    return table("fit per device (runtime memory vs device memory; measured decides)", columns, rows)


def devices_list(rows: list[dict[str, Any]]) -> None:
    """Each device as its transport describes it (`address`, `credentials`): no per-transport code here."""
    cells = [
        [
            row["name"],
            row["transport"],
            row["target"],
            row["address"],
            row.get("user") or "-",
            row["credentials"],
            str(row["memory_mb"] or "-"),
        ]
        for row in rows
    ]
    columns = ("name", "transport", "target", "address", "user", "key", "memory MB")
    stdout().print(table("devices", columns, cells, fold=True))


def devices_check(rows: list[dict[str, Any]]) -> None:
    cells = []
    for row in rows:
        ok = row.get("status") == "ok"
        runtimes = row.get("runtimes") or {}
        cells.append(
            [
                row["name"],
                "[green]ok[/green]" if ok else f"[red]{row.get('error_kind') or 'failed'}[/red]",
                str(row.get("python") or "-"),
                ", ".join(f"{k} {v}" for k, v in runtimes.items() if v) or "-",
                num(row.get("free_disk_mb"), ".0f"),
                num(row.get("memory_mb"), ".0f"),
                row.get("error") or "; ".join(row.get("warnings") or []),
            ]
        )
    columns = ("device", "status", "python", "runtimes", "free disk MB", "memory MB", "detail")
    stdout().print(table("device check", columns, cells, fold=True))


def trust(record: Mapping[str, Any]) -> None:
    state = "added to known_hosts" if record.get("added") else record.get("note") or "not added"
    stdout().print(
        f"{record['name']}: {record['key_type']} {record['fingerprint']} ({record['host']}): {state}"
    )


def _fidelity_note(report: Mapping[str, Any]) -> str:
    cosines = [o["cosine"] for o in report.get("outputs") or [] if o.get("cosine") is not None]
    parts = [f"cosine {min(cosines):.5f}"] if cosines else []
    if report.get("accuracy_artifact") is not None:
        parts.append(f"acc {report['accuracy_artifact']:.2f}%")
    if not report.get("passed"):
        parts.append("FAIL" + ("" if cosines else ": " + "; ".join(report.get("failures") or [])))
    return ", ".join(parts)


def bench(records: list[dict[str, Any]], results: str) -> None:
    """The run's records (each with its on-device `fidelity` when a validation set was given)."""
    from edgekit.runner import table_rows

    cells = []
    varying = _varying_shapes(records)
    for row, record in zip(table_rows(records), records, strict=True):
        note = _fidelity_note(record["fidelity"]) if record.get("fidelity") else row["error"] or ""
        if record.get("host_proxy"):  # timed on this host for a target of another architecture
            note = "host proxy" + (f"; {note}" if note else "")
        shapes = record.get("shapes") or {}
        cells.append(
            [
                row["artifact"],
                row["device"],
                *(["; ".join("x".join(map(str, shapes.get(n, []))) for n in varying)] if varying else []),
                row["status"],
                num(row["p50_ms"], ".3f"),
                num(row["p95_ms"], ".3f"),
                num(row["fps"], ".1f"),
                num(row["init_ms"], ".1f"),
                num(row["peak_rss_mb"], ".1f"),
                note,
            ]
        )
    shape_column = (" / ".join(varying) + " shape",) if varying else ()
    columns = (
        "artifact",
        "device",
        *shape_column,
        "status",
        "p50 ms",
        "p95 ms",
        "FPS",
        "init ms",
        "peak RSS MB",
    )
    title = f"benchmark ({len(records)} run(s); results in {results})"
    stdout().print(table(title, (*columns, "fidelity / error"), cells, fold=True))


def _varying_shapes(records: list[dict[str, Any]]) -> list[str]:
    """Inputs whose timed shape differs between records (several shapes were timed): the table's
    shape column, so latency reads against sequence length (or batch)."""
    seen: dict[str, set[tuple[int, ...]]] = {}
    for record in records:
        for name, dims in (record.get("shapes") or {}).items():
            seen.setdefault(name, set()).add(tuple(dims))
    varying = [n for n, shapes in seen.items() if len(shapes) > 1]
    return varying[:1] if varying else []


def demo(rows: list[dict[str, Any]]) -> None:
    from edgekit.demo import render

    render(rows, stdout())
