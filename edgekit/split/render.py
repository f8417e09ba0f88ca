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


def print_pipeline_export(result: Any, console: Any) -> None:
    from rich.table import Table

    data = result.pipeline
    table = Table(title=f"{data['source']['name']}: {len(data['shards'])} shards exported")
    for col in ("shard", "target", "precision", "artifact", "fidelity vs FP32 shard"):
        table.add_column(col)
    for shard in data["shards"]:
        fid = shard.get("fidelity")
        if fid is None:
            verdict = "-"
        else:
            worst = min((o.get("cosine", 1.0) for o in fid.get("outputs", [])), default=1.0)
            verdict = (
                "[green]pass[/green]" if fid.get("passed") else "[red]FAIL[/red]"
            ) + f" (min cosine {worst:.5f})"
        table.add_row(str(shard["index"]), shard["target"], shard["precision"], shard["artifact"], verdict)
    console.print(table)
    console.print(f"wrote {result.path}/ (run it with: edgekit bench {result.path})")


def print_pipeline_bench(record: Mapping[str, Any], console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"pipeline {record['artifact']['name']} on {record['device']['name']}")
    for col in (
        "stage",
        "device",
        "target/precision",
        "compute p50 ms",
        "predicted ms",
        "relay p50 ms",
        "runtime MB",
        "est. MB",
    ):
        table.add_column(col, justify="left" if col in ("device", "target/precision") else "right")
    for row in record["stages"]:
        table.add_row(
            str(row["shard"]),
            row["device"],
            f"{row['target']}/{row['precision']}",
            _ms(row["compute_ms"]["p50"]),
            _ms(row.get("predicted_ms")),
            _ms(row["relay_ms"]["p50"]),
            "-" if row.get("runtime_memory_mb") is None else f"{row['runtime_memory_mb']:.1f}",
            "-" if row.get("memory_estimate_mb") is None else f"{row['memory_estimate_mb']:.1f}",
        )
    console.print(table)
    for hop in record["hops"]:
        size = "-" if hop.get("bytes") is None else f"{hop['bytes'] / 1024:.1f} KiB"
        console.print(
            f"hop {hop['from']} -> {hop['to']}: {size}, measured {_ms(hop['measured_ms'])} ms "
            f"(predicted {_ms(hop.get('predicted_ms'))} ms)"
        )
    pred = record.get("predicted") or {}
    fps_pred = pred.get("throughput_fps")
    console.print(
        f"end-to-end latency p50 {_ms(record['latency_ms']['p50'])} ms (predicted {_ms(pred.get('latency_ms'))} ms); "
        f"pipelined throughput {record['throughput_fps']:.1f}/s (predicted "
        f"{'-' if fps_pred is None else f'{fps_pred:.1f}'}/s); relay: {record['pipeline']['relay']}"
    )
    planned = [d for d in pred.get("planned_devices") or [] if d]
    if planned and planned != record["device"]["devices"]:
        console.print(
            f"[yellow]note:[/yellow] the plan predicted for {', '.join(map(str, pred['planned_devices']))}"
        )
    fid = record.get("fidelity")
    if fid:
        worst = min((o["cosine"] for o in fid["outputs"]), default=1.0)
        verdict = "[green]pass[/green]" if fid.get("passed") else "[red]FAIL[/red]"
        console.print(
            f"end-to-end fidelity vs the unsplit FP32 model: {verdict} (min cosine {worst:.5f}, {fid['samples']} samples)"
        )
