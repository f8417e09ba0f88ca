"""Rich rendering of a split plan and of a pipeline bench (only the CLI calls this)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MB = 1024 * 1024


def _mb(value: float | None) -> str:
    return "-" if value is None else (f"{value / MB:.2f}" if value < 10 * MB else f"{value / MB:.1f}")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else (f"{value:.2f}" if value < 100 else f"{value:.0f}")


def _gmacs(value: int) -> str:
    return f"{value / 1e9:.3f}" if value < 1e10 else f"{value / 1e9:.1f}"


def _shape(shape: Any) -> str:
    return "x".join(str(d) for d in shape) if shape else "?"


def print_plan(record: Any, console: Any) -> None:
    from rich.table import Table

    data: Mapping[str, Any] = record.pipeline
    plan = data["plan"]
    title = f"{data['source']['name']}: {plan['parts']} shards ({plan['mode']}"
    if plan["mode"] == "parts":
        title += f", balanced by {plan['balance']}"
    elif plan["mode"] == "max_shard_mb":
        title += f" <= {plan['max_shard_mb']:g} MB at {plan['precision']}"
    else:
        title += f", {plan['objective']}"
    title += f"; planned in {plan['planning_s'] * 1000:.0f} ms)"
    table = Table(title=title)
    for col in (
        "shard",
        "device",
        "nodes",
        "weights MB",
        "GMACs",
        "memory MB",
        "in KiB",
        "out KiB",
        "pred. ms",
    ):
        table.add_column(col, justify="left" if col == "device" else "right")
    for shard in data["shards"]:
        memory = f"{shard['memory_estimate_mb']:.1f}"
        if shard.get("memory_measured_mb") is not None:
            memory = f"{shard['memory_measured_mb']:.1f} (measured)"
        table.add_row(
            str(shard["index"]),
            shard.get("device") or "-",
            str(shard["node_count"]),
            _mb(shard["weight_bytes"]),
            _gmacs(shard["macs"]),
            memory,
            f"{sum(i['bytes'] or 0 for i in shard['inputs']) / 1024:.0f}",
            f"{sum(o['bytes'] or 0 for o in shard['outputs']) / 1024:.0f}",
            _ms(shard.get("predicted_ms")),
        )
    console.print(table)
    cuts = Table(title="tensors crossing each cut, per inference")
    for col in ("cut", "tensors", "bytes", "predicted hop ms"):
        cuts.add_column(col)
    for cut in data["cuts"]:
        names = ", ".join(f"{t['name']} {_shape(t['shape'])} {t['dtype']}" for t in cut["tensors"])
        cuts.add_row(
            f"{cut['after_shard']} -> {cut['after_shard'] + 1}",
            names,
            f"{cut['bytes'] / 1024:.1f} KiB" if cut["bytes"] < MB else f"{cut['bytes'] / MB:.2f} MiB",
            _ms(cut.get("predicted_ms")),
        )
    if data["cuts"]:
        console.print(cuts)
    pred = data["predicted"]
    fps = pred.get("throughput_fps")
    console.print(
        f"predicted on {pred['where']}: end-to-end {_ms(pred.get('latency_ms'))} ms, pipelined "
        f"{'-' if fps is None else f'{fps:.1f}'} inferences/s ({pred['relay']})"
    )
    check = data["verification"]
    console.print(
        f"[green]verified[/green]: the shards in sequence reproduce the model on {check['samples']} "
        f"{check['input_source']} samples (max abs difference {check['max_abs_diff']:.3g} <= {check['tolerance']:g})"
    )
    for note in data.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(f"wrote {record.path}/ (pipeline.json + {len(data['shards'])} shards)")
