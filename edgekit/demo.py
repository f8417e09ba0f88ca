"""`edgekit demo`: the bundled models (the digits CNN, and a detector with an Ultralytics-style head and
metadata) through every installed target, verified at the task level and timed here.

Each (target, precision) is exported, verified and timed in its own try/except with a three-state
status (ok / verify failed / export failed), so one broken backend never hides the others. Whether an
artifact can be timed here is the backend's answer (`Backend.times_here`); timing goes through the
runner, the local transport and the device agent, exactly as `edgekit bench --device local`, so the
demo's p50 and bench's p50 of one artifact measure the same thing (the records are kept in the
output directory's results.jsonl, which `edgekit report` reads like any other).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgekit import runner
from edgekit.backends import get_backend, implemented
from edgekit.errors import BadInput, EdgekitError, NotApplicable
from edgekit.fsio import write_json_atomic, write_text_atomic
from edgekit.records import ExportRequest
from edgekit.resources import DETECTOR_INPUT_SHAPE, demo_paths, detector_paths
from edgekit.services import exporting
from edgekit.targets import get as get_target
from edgekit.targets import load_all

log = logging.getLogger(__name__)


def demo_targets(only: Sequence[str] = ()) -> list[Any]:
    profiles = load_all()
    if only:
        unknown = [name for name in only if name not in profiles]
        if unknown:
            get_target(unknown[0])  # raises with a close-name suggestion
        return [profiles[name] for name in only]
    built = implemented()  # in registry order: the core backend (onnxruntime) first
    chosen = [p for p in profiles.values() if p.backend in built and get_backend(p.backend).available()]
    return sorted(chosen, key=lambda p: (built.index(p.backend), p.name))


def demo_models() -> list[dict[str, Any]]:
    """The bundled models, each with its sets and the input shape it is exported at."""
    digits = demo_paths()
    detector = detector_paths()
    return [
        {"name": "digits", "paths": digits, "input_shapes": {}, "timing_share": 1.0},
        # a 640x640 detector runs ~1000x longer than the 8x8 digits CNN: a tenth of the iterations
        # still times it to a stable p50 while keeping the demo's wall time in bounds
        {"name": "detector", "paths": detector, "input_shapes": DETECTOR_INPUT_SHAPE, "timing_share": 0.1},
    ]


def run_demo(
    out_dir: Path, only: Sequence[str] = (), iterations: int = 200, progress: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    models = demo_models()
    missing = [str(p) for m in models for p in m["paths"].values() if not p.exists()]
    if missing:
        raise BadInput(f"demo files missing: {', '.join(missing)} (a broken install?)")
    rows: list[dict[str, Any]] = []
    results = out_dir / "results.jsonl"  # the timing records, as `edgekit bench` writes them
    results.unlink(missing_ok=True)
    for model, target in ((m, t) for m in models for t in demo_targets(only)):
        paths = model["paths"]
        for precision in target.precisions:
            progress(f"{model['name']} {target.name} {precision}: exporting")
            row: dict[str, Any] = {
                "model": model["name"],
                "model_file": paths["model"].name,
                "target": target.name,
                "backend": target.backend,
                "precision": precision,
            }
            rows.append(row)
            request = ExportRequest(
                model=paths["model"],
                target=target.name,
                precision=precision,
                calib=paths["calib"],
                val=paths["val"],
                input_shapes=model["input_shapes"],
                out_dir=out_dir,
            )
            try:
                outcome = exporting.export(request)
            except NotApplicable as exc:  # e.g. --int4 of the detector, which has no MatMul/Gemm weights
                row.update(status="skipped", error=str(exc))
                progress(f"{model['name']} {target.name} {precision}: skipped: {exc}")
                continue
            except EdgekitError as exc:
                row.update(status="export failed", error=str(exc), exit_code=exc.exit_code)
                progress(f"{model['name']} {target.name} {precision}: export failed: {exc}")
                continue
            manifest = outcome.manifest
            report = outcome.fidelity
            row.update(
                artifact=str(outcome.path),
                effective_precision=manifest["effective_precision"],
                bytes=manifest["size"]["artifact_bytes"],
                compression_ratio=manifest["size"]["compression_ratio"],
                accuracy=report.accuracy_artifact if report else None,
                accuracy_fp32=report.accuracy_reference if report else None,
                drop=report.accuracy_drop if report else None,
                cosine=min(o.cosine for o in report.outputs) if report else None,
                task=_task_summary(report),
                status="ok" if report is None or report.passed else "verify failed",
                warnings=manifest.get("warnings", []),
            )
            if report is not None and not report.passed:
                row["error"] = "; ".join(report.failures)
            search = outcome.int8_search  # INT8: the recipe the search kept and the nodes left in float
            if search:
                row["int8_search"] = {
                    "recipe": search.get("recipe"),
                    "in_float": [r.get("source_node") or r.get("node") for r in search.get("reverted") or []],
                    "default_passed": (search.get("default_score") or {}).get("passed"),
                }
            if get_backend(target.backend).times_here(target, manifest):
                runs = max(10, round(iterations * model["timing_share"]))
                try:
                    progress(f"{model['name']} {target.name} {precision}: timing {runs} runs")
                    bench = runner.bench_local(
                        outcome.path, iterations=runs, warmup=min(20, runs // 4), results=results
                    )
                    row["p50_ms"] = bench["latency_ms"]["p50"]
                    row["timed_as"] = _runtime(bench)
                    if bench.get("host_proxy"):  # an arm64 target timed on this x86 host
                        row["timed_as"] += " (host proxy)"
                        row["host_proxy"] = bench["host_proxy"]
                except EdgekitError as exc:
                    row["p50_ms"] = None
                    row["bench_error"] = str(exc)
            else:
                row["p50_ms"] = None
                row["timed_as"] = "time it on the device: `edgekit bench --device NAME`"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "demo.json", rows)
    write_text_atomic(out_dir / "demo.md", markdown(rows))
    from edgekit.report import write_report

    report = demo_report(out_dir, rows)
    for fmt in ("html", "md", "json"):
        write_report(report, out_dir / f"report.{fmt}")
    return rows


def demo_report(out_dir: Path, rows: list[dict[str, Any]]) -> Any:
    """The demo's run as an `edgekit report`: this run's artifacts, their timing records and the
    exports that failed (which left no artifact behind)."""
    from edgekit.report import build_report
    from edgekit.report.load import Build, Inputs, build_from_dir, read_jsonl

    inputs = Inputs(sources=[str(out_dir)])
    results = out_dir / "results.jsonl"
    if results.is_file():
        inputs.records = read_jsonl(results)
    for row in rows:
        built = build_from_dir(Path(row["artifact"])) if row.get("artifact") else None
        if built is not None:
            if row.get("p50_ms") is None:
                built.note = row.get("bench_error") or row.get("timed_as")
                built.note_stage = "bench" if row.get("bench_error") else None
            inputs.builds.append(built)
        elif row["status"] in ("export failed", "skipped"):
            inputs.builds.append(
                Build(
                    row.get("model_file") or demo_paths()["model"].name,
                    row["target"],
                    row["precision"],
                    row["backend"],
                    "failed" if row["status"] == "export failed" else "skipped",
                    "export",
                    row.get("error"),
                )
            )
    return build_report(
        inputs, title="edgekit demo: the digits CNN and the shapes detector on every target installed here"
    )


def _task_summary(report: Any) -> str | None:
    """The task-level verdict in a few words ("F1 0.99 [0.97, 1.00] on 24 samples"), where judged."""
    task = getattr(report, "task", None) if report is not None else None
    if not task or task.get("kind") in (None, "raw"):
        return None
    return task.get("summary")


def _runtime(record: dict[str, Any]) -> str:
    runtime = record.get("runtime") or {}
    return " ".join(str(v) for v in (runtime.get("name"), runtime.get("version")) if v) or "?"


def _fmt(value: Any, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


def _size(num: int | None) -> str:
    if num is None:
        return "-"
    return f"{num / 1e6:.2f} MB" if num >= 100_000 else f"{num / 1e3:.1f} kB"


COLUMNS = (
    "model", "target", "precision", "size", "ratio", "accuracy %", "drop", "task", "cosine", "p50 ms", "status"
)  # fmt: skip


def _cells(row: dict[str, Any]) -> list[str]:
    precision = row["precision"]
    if row.get("effective_precision") and row["effective_precision"] != precision:
        precision = f"{precision} (runs {row['effective_precision']})"
    return [
        row.get("model", "digits"),
        row["target"],
        precision,
        _size(row.get("bytes")),
        _fmt(row.get("compression_ratio"), ".2f") + ("x" if row.get("compression_ratio") else ""),
        _fmt(row.get("accuracy"), ".2f"),
        _fmt(row.get("drop"), "+.2f"),
        row.get("task") or "-",
        _fmt(row.get("cosine"), ".4f"),
        _fmt(row.get("p50_ms"), ".3f", "on device" if row.get("status") == "ok" else "-")
        + (" (host proxy)" if row.get("host_proxy") and row.get("p50_ms") is not None else ""),
        row["status"] + (f": {row['error']}" if row.get("error") else ""),
    ]


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return (
        "# edgekit demo\n\nThe bundled digits CNN and shapes detector, exported, verified against FP32 (the "
        "detector by its detections: F1 against FP32's) and timed on this machine.\n\n"
        + "\n".join(lines)
        + "\n"
    )


def render(rows: list[dict[str, Any]], console: Any) -> None:
    """The demo's report as text tables that fit the terminal (80 columns in a CI log): cells never
    fold; the columns that do not fit go into a further table, reasons below."""
    from edgekit.report import render_text

    if not rows:
        return
    out_dir = next((Path(r["artifact"]).parent for r in rows if r.get("artifact")), None)
    width = max(80, min(int(getattr(console, "width", 80) or 80), 160))
    text = render_text(demo_report(out_dir or Path("."), rows), width=width)
    console.print(text, markup=False, highlight=False, soft_wrap=True, end="")
    if out_dir is not None:
        console.print(f"artifacts, report.html/md/json and results.jsonl in {out_dir}", markup=False)
