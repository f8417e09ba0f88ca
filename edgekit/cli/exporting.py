"""`edgekit export` and `edgekit verify` (registered on the group in edgekit.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekit.cli.options import (
    CliContext,
    common,
    devices_option,
    gate_options,
    gates,
    input_shape_option,
    int8_search_options,
    parse_kv,
    targets_dir_option,
    task_and_metric,
    task_options,
    weight_only_fields,
    weight_only_options,
)
from edgekit.errors import BadInput, GateFailed


def _fidelity_gate(report: Any) -> None:
    if report is not None and not report.passed:
        raise GateFailed("fidelity gate failed: " + "; ".join(report.failures))


@click.command()
@click.argument("model", type=click.Path())
@click.option("--target", "-t", required=True, help="Target profile name (see `edgekit targets`).")
@click.option(
    "--int8", "precision", flag_value="int8", help="INT8 (needs --calib unless --dynamic or --weights-only)."
)
@click.option(
    "--int4",
    "precision",
    flag_value="int4",
    help="Weight-only INT4 MatMul/Gemm weights (--calib: searched, gated).",
)
@click.option("--fp16", "precision", flag_value="fp16", help="FP16.")
@click.option("--fp32", "precision", flag_value="fp32", help="FP32.")
@click.option(
    "--precision",
    "precision_choice",
    type=click.Choice(["fp32", "fp16", "int8", "int4", "auto"]),
    help="Precision by name; auto: every precision the target offers, the fastest here that passes the gate.",
)
@click.option("--calib", type=click.Path(), help="Calibration set (.npz or image dir + calibration.toml).")
@click.option("--val", type=click.Path(), help="Validation set: verify the artifact and record fidelity.")
@input_shape_option
@click.option("-o", "--out", "out_dir", default="edgekit-out", show_default=True, type=click.Path())
@click.option("--calib-samples", type=int, help="Seeded subset of the calibration set.")
@click.option("--val-samples", type=int, help="Seeded subset of the validation set.")
@click.option(
    "--calib-method",
    type=click.Choice(["entropy", "minmax", "percentile"]),
    default="entropy",
    show_default=True,
)
@click.option(
    "--dynamic", "dynamic_int8", is_flag=True, help="INT8 with dynamic (run-time) activation ranges."
)
@click.option(
    "--io",
    "io_dtype",
    type=click.Choice(["auto", "float", "int8", "float16"]),
    default="auto",
    show_default=True,
    help="Artifact I/O type where the backend can choose (full-int8 TFLite, fp16 ONNX).",
)
@click.option("--ignore", multiple=True, help="Node-name pattern to keep in float (glob or regex).")
@click.option(
    "--accuracy-control", is_flag=True, help="Accuracy-aware INT8 where supported (needs labelled --val)."
)
@click.option("--threads", type=int, help="Threads for the host runner.")
@click.option("--option", "extra", multiple=True, metavar="KEY=VALUE", help="Backend-specific option.")
@click.option("--no-simplify", is_flag=True, help="Skip constant folding with onnxslim.")
@targets_dir_option
@int8_search_options
@task_options
@weight_only_options
@gate_options
@common
def export(app: CliContext, model: str, **kw: Any) -> None:
    """Export MODEL for one target and precision into OUT/<model>.<target>.<precision>/.

    MODEL may be a split directory (`edgekit split`): every shard is exported, for one target
    (--target A) or one per shard (--target A,B,...), into OUT/<model>.pipeline/."""
    from edgekit import api
    from edgekit.backends.base import ExportOptions
    from edgekit.cli import render
    from edgekit.ingest import parse_input_shapes

    options = ExportOptions(
        calib_method=kw["calib_method"],
        dynamic_int8=kw["dynamic_int8"],
        io_dtype=kw["io_dtype"],
        ignore=list(kw["ignore"]),
        max_accuracy_drop=kw["max_accuracy_drop"] if kw["accuracy_control"] else None,
        threads=kw["threads"],
        extra=parse_kv(kw["extra"]),
        search=not kw["no_search"],
        max_revert=kw["max_revert"],
        search_budget_s=kw["search_budget"],
        allow_float_ops=kw["allow_float_ops"],
        **weight_only_fields(kw),
    )
    if kw["precision"] and kw["precision_choice"] and kw["precision"] != kw["precision_choice"]:
        raise BadInput(f"--{kw['precision']} and --precision {kw['precision_choice']} disagree; give one")
    if api.is_pipeline_dir(model):
        _export_pipeline(app, model, options, kw)
        return
    request = api.ExportRequest(
        model=model,
        target=kw["target"],
        precision=kw["precision_choice"] or kw["precision"],
        calib=kw["calib"],
        val=kw["val"],
        input_shapes=parse_input_shapes(kw["input_shapes"]),
        out_dir=kw["out_dir"],
        calib_samples=kw["calib_samples"],
        val_samples=kw["val_samples"],
        simplify=not kw["no_simplify"],
        options=options,
        targets_dirs=list(kw["targets_dir"]),
        gate_overrides=gates(kw),
        **task_and_metric(kw),
    )
    with render.Steps(f"export {Path(model).name} -> {kw['target']}") as steps:
        record = api.export(request, steps)
    render.warnings(record.manifest.get("warnings", []))
    if not app.emit(record):
        render.export(record.to_json())
    failure = record.gate_failure()  # without --val: the INT8 search's check on held-out samples
    if failure:
        raise GateFailed(failure)


def _export_pipeline(app: CliContext, split_dir: str, options: Any, kw: dict[str, Any]) -> None:
    from edgekit import api
    from edgekit.cli import render

    if kw["input_shapes"]:
        raise BadInput("--input-shape is fixed at split time: give it to `edgekit split`")
    if kw["task"] or kw["metric"]:
        raise BadInput(
            "--task/--metric judge a whole model: a split's shards are checked against the unsplit model "
            "by `edgekit bench SPLIT_DIR --val SET --task ...`"
        )
    request = api.PipelineExportRequest(
        split_dir=split_dir,
        targets=kw["target"].split(","),
        precision=kw["precision"],
        calib=kw["calib"],
        val=kw["val"],
        calib_samples=kw["calib_samples"],
        val_samples=kw["val_samples"],
        out_dir=kw["out_dir"],
        options=options,
        gate_overrides=gates(kw),
        targets_dirs=list(kw["targets_dir"]),
        simplify=not kw["no_simplify"],
    )
    with render.Steps(f"export {Path(split_dir).name} (split) -> {kw['target']}") as steps:
        record = api.export_pipeline(request, steps)
    if not app.emit(record):
        render.pipeline_export(record.to_json())
    shard_gates(record)


def shard_gates(record: Any) -> None:
    failed = record.failed_shards()
    if failed:
        raise GateFailed(
            f"fidelity gate failed for shard artifact(s) {', '.join(failed)} (the pipeline is written: "
            f"{record.path})"
        )


@click.command()
@click.argument("artifact_dir", type=click.Path())
@click.option("--val", required=True, type=click.Path(), help="Validation set (.npz or image dir).")
@click.option(
    "--reference", type=click.Path(), help="The FP32 source ONNX (default: the path in the manifest)."
)
@click.option("--val-samples", type=int, help="Seeded subset of the validation set.")
@click.option("--device", help="Run the artifact on this device (devices.toml) instead of the host.")
@click.option(
    "--per-layer",
    is_flag=True,
    help="Also rank the nodes that add the most error vs FP32, by original name (per_layer.json).",
)
@devices_option
@targets_dir_option
@task_options
@gate_options
@common
def verify(app: CliContext, artifact_dir: str, **kw: Any) -> None:
    """Check ARTIFACT_DIR against its FP32 source on a validation set; exit 1 when a gate fails."""
    from edgekit import api
    from edgekit.cli import render

    request = api.VerifyRequest(
        artifact_dir=artifact_dir,
        val=kw["val"],
        reference=kw["reference"],
        val_samples=kw["val_samples"],
        device=kw["device"],
        devices_file=kw["devices_file"],
        targets_dirs=list(kw["targets_dir"]),
        gate_overrides=gates(kw),
        **task_and_metric(kw),
    )
    if kw["per_layer"] and kw["device"]:
        raise BadInput("--per-layer compares layers on this host; drop --device (or run it without)")
    with render.Steps(f"verify {Path(artifact_dir).name}") as steps:
        report = api.verify(request, steps)
        layers = api.verify_layers(request, steps) if kw["per_layer"] else None
    shown = report if layers is None else api.VerifyLayersRecord(report, layers)
    if not app.emit(shown):
        render.fidelity(report.to_json())
        if layers is not None:
            render.per_layer(layers.to_json())
    _fidelity_gate(report)
