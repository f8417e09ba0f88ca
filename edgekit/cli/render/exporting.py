"""Rendering of export and verify: the fidelity report, the INT8 search, the per-layer table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgekit.cli.render.base import mb, num, stdout, table


def _snr(value: float | None) -> str:
    # to_json writes an infinite SNR (identical outputs) as 1e9: JSON has no infinity
    return "inf" if value is not None and value >= 1e9 else num(value, ".1f")


def fidelity(report: Mapping[str, Any]) -> None:
    """A fidelity report's JSON form (edgekit.fidelity.FidelityReport.to_json)."""
    rows = [
        [
            out["name"],
            num(out["cosine"], ".5f"),
            _snr(out["snr_db"]),
            num(out["max_abs"], ".4g"),
            num(out["mean_abs"], ".4g"),
            num(out["top1_agreement"], ".2f"),
        ]
        for out in report["outputs"]
    ]
    columns = ("output", "cosine", "SNR dB", "max |err|", "mean |err|", "top-1 agree %")
    console = stdout()
    where = "" if report.get("where", "host") == "host" else f" on {report['where']}"
    console.print(table(f"fidelity vs FP32{where} ({report['samples']} samples)", columns, rows))
    if report.get("accuracy_reference") is not None:
        console.print(
            f"accuracy: FP32 {report['accuracy_reference']:.2f}%  artifact {report['accuracy_artifact']:.2f}%  "
            f"drop {report['accuracy_drop']:+.2f} points"
        )
    failures = "; ".join(report["failures"])
    console.print("gate: " + ("[green]PASS[/green]" if report["passed"] else f"[red]FAIL[/red]: {failures}"))


def export(record: Mapping[str, Any]) -> None:
    """An ExportRecord's JSON form: {"artifact", "manifest"}."""
    manifest = record["manifest"]
    size = manifest["size"]
    stdout().print(
        f"[green]exported[/green] {record['artifact']}  ({manifest['effective_precision']}, "
        f"{mb(size['artifact_bytes'])}, compression {size['compression_ratio']}x vs the FP32 source)"
    )
    from edgekit.int8 import search_record

    search = search_record(manifest)
    selective = (manifest.get("details") or {}).get("selective_quantization")
    if search:
        variant = str((manifest.get("details") or {}).get("variant", ""))
        replaced = isinstance(selective, Mapping) and variant.startswith("aeq")
        int8_search(
            search, "onnx2tf int8 search (replaced by ai-edge-quantizer below)" if replaced else "int8 search"
        )
    if isinstance(selective, Mapping) and selective.get("summary"):
        selective_search(selective)
    if manifest.get("fidelity"):
        fidelity(manifest["fidelity"])
    elif (manifest.get("verification") or {}).get("status"):
        stdout().print(
            f"[yellow]{manifest['verification']['status']}:[/yellow] {manifest['verification']['reason']}"
        )
    provenance(manifest)
    if manifest.get("precision_choice"):
        precision_choice(manifest["precision_choice"])


def provenance(manifest: Mapping[str, Any]) -> None:
    """What the numbers above are about: the task, the numerics, and the samples the search selected
    on versus those the verdict is reported on."""
    console = stdout()
    task = manifest.get("task")
    if task:
        outputs = ", ".join(task.get("outputs") or [])
        console.print(f"task: {task['kind']} ({task.get('source')}{'; ' + outputs if outputs else ''})")
    numerics = manifest.get("numerics")
    if numerics:
        console.print(f"int8 numerics (search and host verify): {numerics['verify']}")
    samples = manifest.get("samples")
    if samples:
        selection, verdict = samples["selection"], samples["verdict"]
        console.print(
            f"verdict on {verdict['count']} {verdict['set']} samples ({verdict['source']}); the search "
            f"selected on {selection['described']} ({selection['source']}); "
            + ("disjoint" if samples.get("disjoint") else "[red]NOT disjoint[/red]")
        )


def int8_search(search: Mapping[str, Any], label: str = "int8 search") -> None:
    """The INT8 search's outcome: recipe kept, its score against the default's, nodes kept in float."""
    console = stdout()
    verdict = "[green]" if search.get("passed") else "[red]"
    console.print(f"{label}: {verdict}{search['summary']}[/] (on {search.get('scored_on', '?')})")
    recipe = search.get("recipe") or {}
    if recipe:
        console.print("  recipe: " + ", ".join(f"{k}={v}" for k, v in recipe.items()))
    default = search.get("default_score") or {}
    if default.get("summary"):
        console.print(f"  default recipe: {default['summary']}")
    reverted = search.get("reverted") or []
    if reverted:
        names = ", ".join(str(r.get("source_node") or r.get("node")) for r in reverted[:8])
        more = f" and {len(reverted) - 8} more" if len(reverted) > 8 else ""
        console.print(f"  kept in float: {names}{more}")
    cost = search.get("fallback_cost")
    if cost:
        console.print(
            f"  fallback cost: {cost['bytes_added']:+,} bytes, p50 {cost['p50_ms_all_int8']:.3f} -> "
            f"{cost['p50_ms_with_fallback']:.3f} ms ({cost.get('timed_on', 'this host')})"
        )
    if search.get("sensitivity_file"):
        console.print(f"  per-node sensitivity: {search['sensitivity_file']}")


def selective_search(record: Mapping[str, Any]) -> None:
    """TFLite's ai-edge-quantizer pass (after onnx2tf's, or instead of it): what it took and why."""
    console = stdout()
    verdict = "[green]" if record.get("passed") else "[red]"
    why = f" ({record['why']})" if record.get("why") else ""
    console.print(
        f"ai-edge-quantizer selective{why}: {verdict}{record['summary']}[/] (on {record.get('scored_on', '?')})"
    )
    head = record.get("head") or {}
    if head.get("recipe"):
        tried = ", ".join(
            f"{t['recipe']} {'passes' if t.get('passed') else 'fails'}" for t in head.get("tried", [])
        )
        console.print(
            f"  head recipe: {head['recipe']} ({len(head.get('kept_in_float', []))} TFLite ops in float; "
            f"tried: {tried})"
        )


def precision_choice(choice: Mapping[str, Any]) -> None:
    """--precision auto: every precision with its fidelity and p50, and why one was kept."""
    rows = [
        [
            row["precision"],
            "pass" if row.get("passed") else str(row.get("status", "-")),
            num(row.get("cosine"), ".5f"),
            num(row.get("accuracy_drop"), "+.2f"),
            num(row.get("p50_ms"), ".3f"),
            "-" if row.get("bytes") is None else mb(row["bytes"]),
            "[green]chosen[/green]" if row["precision"] == choice["chosen"] else "",
        ]
        for row in choice["alternatives"]
    ]
    columns = ("precision", "gate", "cosine", "drop", "p50 ms", "size", "")
    console = stdout()
    console.print(table("precision auto", columns, rows))
    for line in choice["why"]:
        console.print(f"note: {line}")


def per_layer(record: Mapping[str, Any], top: int = 15) -> None:
    """`verify --per-layer`: the nodes adding the most error, and the export's INT8 ranking."""
    console = stdout()
    layers = record.get("layers") or []
    if layers:
        rows = [
            [
                str(row["rank"]),
                str(row.get("source_node") or row["node"]),
                str(row.get("op_type") or "-"),
                "int8" if row.get("quantized") else "float",
                num(row.get("added_error"), ".2e"),
                num(row.get("error"), ".2e"),
                num(row.get("snr_db"), ".1f"),
            ]
            for row in layers[:top]
        ]
        columns = ("rank", "node (original name)", "op", "runs", "added error", "error", "SNR dB")
        title = f"per-layer error vs FP32 (top {len(rows)} of {len(layers)})"
        console.print(table(title, columns, rows, fold=True))
    sensitivity = record.get("sensitivity") or {}
    ranked = [r for r in sensitivity.get("nodes") or [] if r.get("recovery") is not None]
    if ranked:
        rows = [
            [str(r.get("rank")), str(r.get("source_node") or r["node"]), num(r.get("recovery"), ".3f")]
            for r in ranked[:top]
        ]
        title = f"INT8 search: what keeping each node in float recovered (on {sensitivity.get('scored_on')})"
        console.print(table(title, ("rank", "node (original name)", "recovery"), rows, fold=True))
    for note in record.get("notes") or []:
        console.print(f"note: {note}")
