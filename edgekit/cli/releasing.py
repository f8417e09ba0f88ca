"""`edgekit report`, `release` and `split` (registered on the group in edgekit.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekit.cli.exporting import shard_gates
from edgekit.cli.options import (
    CliContext,
    common,
    input_shape_option,
    results_option,
    targets_dir_option,
)
from edgekit.errors import GateFailed


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path())
@click.option(
    "--baseline",
    multiple=True,
    type=click.Path(),
    help="Older results (results.jsonl, a release or artifact dir) to judge regressions against.",
)
@click.option(
    "-o",
    "--out",
    "outputs",
    multiple=True,
    type=click.Path(),
    help="Write the report here; the suffix picks the format (.html, .md, .json, .txt). Repeatable.",
)
@click.option(
    "--max-slowdown",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Percent: the smallest median slowdown counted, when its whole confidence interval clears it.",
)
@click.option("--confidence", default=0.95, show_default=True, type=click.FloatRange(0.5, 0.999))
@click.option("--max-accuracy-loss", default=0.5, show_default=True, type=click.FloatRange(0), help="Points.")
@click.option("--max-cosine-loss", default=0.002, show_default=True, type=click.FloatRange(0))
@click.option("--width", default=80, show_default=True, type=click.IntRange(60), help="Text table width.")
@common
def report(app: CliContext, results: tuple[str, ...], width: int, **kw: Any) -> None:
    """Tables, plots and regression verdicts from RESULTS (results.jsonl files, release or artifact
    directories). Exit 1 when --baseline is given and something regressed."""
    from edgekit import api
    from edgekit.cli import render

    request = api.ReportRequest(
        results=list(results),
        baseline=list(kw["baseline"]),
        outputs=list(kw["outputs"]),
        max_slowdown_pct=kw["max_slowdown"],
        confidence=kw["confidence"],
        max_accuracy_loss=kw["max_accuracy_loss"],
        max_cosine_loss=kw["max_cosine_loss"],
    )
    record = api.report(request)
    if not app.emit(record):
        render.report(record, width)
    regressions = record.regressions()
    if regressions:
        raise GateFailed(
            f"{len(regressions)} regression(s) against the baseline: "
            + "; ".join(regressions[:3])
            + (" ..." if len(regressions) > 3 else "")
        )


@click.command()
@click.option(
    "--config",
    default="edgekit.toml",
    show_default=True,
    type=click.Path(),
    help="The release recipe ([release], [[model]], [[target]], [gates], [bench], [baseline]).",
)
@click.option(
    "--allow-failures", is_flag=True, help="Release what passes its gates; mark and leave out the rest."
)
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--address", metavar="HOST:PORT", help="The Ray cluster to build on (with --executor ray).")
@click.option(
    "--no-cache", is_flag=True, help="Build everything afresh (the cache is neither read nor written)."
)
@click.option("--rebench", is_flag=True, help="Measure again instead of reusing cached benchmarks.")
@click.option(
    "--check-reproducible",
    is_flag=True,
    help="Build every artifact twice and record which files differ and why.",
)
@common
def release(app: CliContext, **kw: Any) -> None:
    """Build, verify, benchmark and package a release into dist/<name>-<version>/ (artifacts,
    release.json, SHA256SUMS, report.html/md/json and a .tar.gz). Exit 1 when a gate fails."""
    from edgekit import api
    from edgekit.cli import render

    def progress(message: str) -> None:
        if not app.json or app.debug:
            click.echo(message, err=True)

    request = api.ReleaseRequest(
        config=kw["config"],
        allow_failures=kw["allow_failures"],
        executor=kw["executor"],
        address=kw["address"],
        use_cache=not kw["no_cache"],
        rebench=kw["rebench"],
        check_reproducible=kw["check_reproducible"] or None,
    )
    record = api.release(request, progress)
    if not app.emit(record):
        render.release(record)
    if record.failures:
        if record.path is None:
            raise GateFailed(
                f"release not built, {len(record.failures)} gate failure(s): {record.failure_summary()}"
            )
        click.echo(f"released with --allow-failures; left out: {record.failure_summary()}", err=True)


@click.command()
@click.argument("model", type=click.Path())
@click.option("--parts", type=click.IntRange(1), help="Cut into N shards balanced by --balance.")
@click.option(
    "--max-shard-mb",
    type=click.FloatRange(min=0, min_open=True),
    help="Fewest shards whose planned runtime memory is at most M MB each.",
)
@click.option(
    "--devices", "device_names", metavar="A,B,...", help="One shard per device, in this order (devices.toml)."
)
@click.option(
    "--objective",
    type=click.Choice(["latency", "throughput"]),
    default="latency",
    show_default=True,
    help="With --devices.",
)
@click.option(
    "--balance",
    type=click.Choice(["weights", "macs"]),
    default="weights",
    show_default=True,
    help="With --parts.",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    help="Precision the memory estimate assumes (default fp32), and of the --targets exports.",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0),
    default=0.1,
    show_default=True,
    help="--parts: allowed excess over the best balance, traded for fewer crossing bytes.",
)
@click.option(
    "--memory-margin",
    type=click.FloatRange(min=0),
    default=0.3,
    show_default=True,
    help="Plan shard memory as estimate x (1 + margin) (the estimate's worst underestimate is 0.76x).",
)
@click.option(
    "--no-measure",
    is_flag=True,
    help="--max-shard-mb: trust the estimate; do not measure the shards here (onnxruntime CPU).",
)
@click.option(
    "--devices-file",
    "devices_file",
    type=click.Path(),
    help="Inventory (default: ./devices.toml if present).",
)
@results_option("Bench records: device speeds, measured shard latency and memory.")
@click.option(
    "--val", type=click.Path(), help="Inputs for the equality check (.npz or image dir); default: random."
)
@click.option("--val-samples", type=int, help="Seeded subset of the validation set.")
@input_shape_option
@click.option(
    "--no-profile", is_flag=True, help="Node times from MACs instead of an onnxruntime profile here."
)
@click.option(
    "--targets",
    "export_targets",
    metavar="A,B,...",
    help="Then export each shard for these targets (one, or one per shard).",
)
@click.option("--calib", type=click.Path(), help="With --targets: calibration set of the whole model (INT8).")
@click.option("--calib-samples", type=int, help="Seeded subset of the calibration set.")
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(),
    help="Output directory (default: MODEL-stem.split next to MODEL).",
)
@targets_dir_option
@common
def split(app: CliContext, model: str, **kw: Any) -> None:
    """Cut MODEL into shards (ONNX) + pipeline.json; the shards are checked against MODEL at once."""
    from edgekit import api
    from edgekit.cli import render
    from edgekit.ingest import parse_input_shapes

    def names(value: str | None) -> list[str]:
        return [v.strip() for v in (value or "").split(",") if v.strip()]

    request = api.SplitRequest(
        model=model,
        parts=kw["parts"],
        max_shard_mb=kw["max_shard_mb"],
        devices=names(kw["device_names"]),
        devices_file=kw["devices_file"],
        objective=kw["objective"],
        balance=kw["balance"],
        precision=kw["precision"] or "fp32",
        tolerance=kw["tolerance"],
        memory_margin=kw["memory_margin"],
        measure_memory=not kw["no_measure"],
        out_dir=kw["out_dir"],
        input_shapes=parse_input_shapes(kw["input_shapes"]),
        val=kw["val"],
        val_samples=kw["val_samples"],
        results=list(kw["results"]),
        profile=not kw["no_profile"],
        targets=names(kw["export_targets"]),
        export_precision=kw["precision"],
        calib=kw["calib"],
        calib_samples=kw["calib_samples"],
        targets_dirs=list(kw["targets_dir"]),
    )
    with render.Steps(f"split {Path(model).name}") as steps:
        record = api.split(request, steps)
    if not app.emit(record):
        render.split_plan(record.to_json())
    if record.export is not None:
        shard_gates(record.export)
