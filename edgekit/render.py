"""Human-readable output of the CLI (rich tables, progress), from the API's records.

Every function takes a record (or its JSON form) and prints; none computes anything the record does
not hold, so `--json` and the tables always say the same. Results go to stdout, progress and
warnings to stderr.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
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
    if search:
        int8_search(search)
    if manifest.get("fidelity"):
        fidelity(manifest["fidelity"])
    if manifest.get("precision_choice"):
        precision_choice(manifest["precision_choice"])


def int8_search(search: Mapping[str, Any]) -> None:
    """The INT8 search's outcome: recipe kept, its score against the default's, nodes kept in float."""
    console = stdout()
    verdict = "[green]" if search.get("passed") else "[red]"
    console.print(f"int8 search: {verdict}{search['summary']}[/] (on {search.get('scored_on', '?')})")
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
    for row, record in zip(table_rows(records), records, strict=True):
        note = _fidelity_note(record["fidelity"]) if record.get("fidelity") else row["error"] or ""
        cells.append(
            [
                row["artifact"],
                row["device"],
                row["status"],
                num(row["p50_ms"], ".3f"),
                num(row["p95_ms"], ".3f"),
                num(row["fps"], ".1f"),
                num(row["init_ms"], ".1f"),
                num(row["peak_rss_mb"], ".1f"),
                note,
            ]
        )
    columns = ("artifact", "device", "status", "p50 ms", "p95 ms", "FPS", "init ms", "peak RSS MB")
    title = f"benchmark ({len(records)} run(s); results in {results})"
    stdout().print(table(title, (*columns, "fidelity / error"), cells, fold=True))


def demo(rows: list[dict[str, Any]]) -> None:
    from edgekit.demo import render

    render(rows, stdout())


def _plain(text: str) -> None:
    """Text tables as they are: no markup, no highlighting, no re-wrapping (they fit their width)."""
    stdout().print(text, markup=False, highlight=False, soft_wrap=True, end="")


def report(record: Any, width: int = 80) -> None:
    """`edgekit report`: the report's text tables (record.report, an edgekit.report.Report) and the
    files written."""
    from edgekit.report import render_text

    _plain(render_text(record.report, width))
    console = stderr()
    for path in record.written:
        console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


def release(record: Any) -> None:
    """`edgekit release`: the release's report as text tables (where it went is progress, on stderr)."""
    from edgekit.report import render_text

    if record.report is not None:
        _plain(render_text(record.report))


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
        if fid:
            console.print(
                f"end-to-end fidelity vs the unsplit FP32 model: {_cosine_verdict(fid)}, {fid['samples']} samples"
            )
    console.print(f"[dim]stage and pipeline records appended to {results}[/dim]")
