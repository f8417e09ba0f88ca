"""Rendering of split: the plan, the shards' export, a pipeline bench."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgekit.cli.render.base import num, stdout, table

# ---- split: the plan, the shards' export, a pipeline bench ---------------------------------------
MIB = 1024 * 1024


def _mib(value: float | None) -> str:
    return "-" if value is None else (f"{value / MIB:.2f}" if value < 10 * MIB else f"{value / MIB:.1f}")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else (f"{value:.2f}" if value < 100 else f"{value:.0f}")


def _dims(shape: Sequence[Any] | None) -> str:
    return "x".join(str(d) for d in shape) if shape else "?"


def _cosine_verdict(report: Mapping[str, Any]) -> str:
    worst = min((o.get("cosine", 1.0) for o in report.get("outputs", [])), default=1.0)
    verdict = "[green]pass[/green]" if report.get("passed", True) else "[red]FAIL[/red]"
    return f"{verdict} (min cosine {worst:.5f})"


def split_plan(record: Mapping[str, Any]) -> None:
    """A split record (SplitRecord.to_json()): shards, cuts, predictions, the chain check, notes."""
    console = stdout()
    plan = record["plan"]
    title = f"{record['source']['name']}: {plan['parts']} shards ({plan['mode']}"
    if plan["mode"] == "parts":
        title += f", balanced by {plan['balance']}"
    elif plan["mode"] == "max_shard_mb":
        title += f" <= {plan['max_shard_mb']:g} MB at {plan['precision']}"
    else:
        title += f", {plan['objective']}"
    title += f"; planned in {plan['planning_s'] * 1000:.0f} ms)"
    if plan.get("memory_margin"):
        title += f"; planned memory = estimate x {1 + plan['memory_margin']:g}, or measured"
    rows = []
    for shard in record["shards"]:
        planned = f"{shard['memory_mb']:.1f}"
        if shard.get("memory_measured_mb") is not None:
            planned += " (measured)"
        rows.append(
            [
                str(shard["index"]),
                shard.get("device") or "-",
                str(shard["node_count"]),
                _mib(shard["weight_bytes"]),
                f"{shard['macs'] / 1e9:.3f}",
                f"{shard['memory_estimate_mb']:.1f}",
                planned,
                f"{sum(i['bytes'] or 0 for i in shard['inputs']) / 1024:.0f}",
                f"{sum(o['bytes'] or 0 for o in shard['outputs']) / 1024:.0f}",
                _ms(shard.get("predicted_ms")),
            ]
        )
    columns = (
        "shard",
        "device",
        "nodes",
        "weights MiB",
        "GMACs",
        "memory MiB",
        "in KiB",
        "out KiB",
        "pred. ms",
    )
    console.print(table(title, columns, rows))
    cuts = [
        [
            f"{cut['after_shard']} -> {cut['after_shard'] + 1}",
            ", ".join(f"{t['name']} {_dims(t['shape'])} {t['dtype']}" for t in cut["tensors"]),
            f"{cut['bytes'] / 1024:.1f} KiB" if cut["bytes"] < MIB else f"{cut['bytes'] / MIB:.2f} MiB",
            _ms(cut.get("predicted_ms")),
        ]
        for cut in record["cuts"]
    ]
    if cuts:
        cut_columns = ("cut", "tensors", "bytes", "predicted hop ms")
        console.print(table("tensors crossing each cut, per inference", cut_columns, cuts, fold=True))
    pred = record["predicted"]
    fps = pred.get("throughput_fps")
    console.print(
        f"predicted on {pred['where']}: end-to-end {_ms(pred.get('latency_ms'))} ms, pipelined "
        f"{'-' if fps is None else f'{fps:.1f}'} inferences/s ({pred['relay']})"
    )
    if pred.get("basis"):
        console.print(f"[dim]predictions from {pred['basis']}[/dim]", markup=True, highlight=False)
    check = record["verification"]
    console.print(
        f"[green]verified[/green]: the shards in sequence reproduce the model on {check['samples']} "
        f"{check['input_source']} samples (max abs difference {check['max_abs_diff']:.3g} <= {check['tolerance']:g})"
    )
    for note in record.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(f"wrote {record['path']}/ (pipeline.json + {len(record['shards'])} shards)")
    if record.get("export"):
        pipeline_export(record["export"])


def pipeline_export(record: Mapping[str, Any]) -> None:
    """An exported split (PipelineExportRecord.to_json()): each shard's artifact and fidelity."""
    data = record["pipeline"]
    rows = [
        [
            str(shard["index"]),
            shard["target"],
            shard["precision"],
            shard["artifact"],
            "-" if shard.get("fidelity") is None else _cosine_verdict(shard["fidelity"]),
        ]
        for shard in data["shards"]
    ]
    columns = ("shard", "target", "precision", "artifact", "fidelity vs FP32 shard")
    stdout().print(table(f"{data['source']['name']}: {len(data['shards'])} shards exported", columns, rows))
    stdout().print(f"wrote {record['path']}/ (run it with: edgekit bench {record['path']})")


def pipeline_bench(records: Sequence[Mapping[str, Any]], results: str) -> None:
    """Pipeline records (PipelineBenchRecord.to_json()): per stage and hop, measured next to predicted."""
    console = stdout()
    for record in records:
        rows = [
            [
                str(row["shard"]),
                row["device"],
                f"{row['target']}/{row['precision']}",
                _ms(row["compute_ms"]["p50"]),
                _ms(row.get("predicted_ms")),
                _ms(row["relay_ms"]["p50"]),
                num(row.get("runtime_memory_mb"), ".1f"),
                num(row.get("memory_estimate_mb"), ".1f"),
            ]
            for row in record["stages"]
        ]
        columns = (
            "stage",
            "device",
            "target/precision",
            "compute p50 ms",
            "predicted ms",
            "relay p50 ms",
            "runtime MB",
            "est. MB",
        )
        title = f"pipeline {record['artifact']['name']} on {record['device']['name']}"
        console.print(table(title, columns, rows))
        for hop in record["hops"]:
            size = "-" if hop.get("bytes") is None else f"{hop['bytes'] / 1024:.1f} KiB"
            console.print(
                f"hop {hop['from']} -> {hop['to']}: {size}, measured {_ms(hop['measured_ms'])} ms "
                f"(predicted {_ms(hop.get('predicted_ms'))} ms)"
            )
        pred = record.get("predicted") or {}
        fps_pred = pred.get("throughput_fps")
        console.print(
            f"end-to-end latency p50 {_ms(record['latency_ms']['p50'])} ms (predicted "
            f"{_ms(pred.get('latency_ms'))} ms); pipelined throughput {record['throughput_fps']:.1f}/s "
            f"(predicted {'-' if fps_pred is None else f'{fps_pred:.1f}'}/s); relay: {record['pipeline']['relay']}"
        )
        planned = [d for d in pred.get("planned_devices") or [] if d]
        if planned and planned != record["device"]["devices"]:
            console.print(
                f"[yellow]note:[/yellow] the plan predicted for {', '.join(map(str, pred['planned_devices']))}"
            )
        fid = record.get("fidelity")
        if fid and fid.get("passed") is None:
            console.print(f"[yellow]end-to-end fidelity not measured:[/yellow] {fid.get('reason')}")
        elif fid:
            console.print(
                f"end-to-end fidelity vs the unsplit FP32 model: {_cosine_verdict(fid)}, {fid['samples']} samples"
            )
    console.print(f"[dim]stage and pipeline records appended to {results}[/dim]")
