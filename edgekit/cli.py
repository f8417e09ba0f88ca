"""The `edgekit` command: parses arguments into an `edgekit.api` request, calls the verb and renders
its record (`edgekit.render`, or the record's JSON with --json). Only this module and render print.

Exit codes (DESIGN.md): 0 ok, 1 a gate failed, 2 bad usage or input, 3 missing optional dependency,
unreachable device or missing hardware, 4 internal error. Errors are one line; `--debug` adds the
traceback. Importing this module loads neither onnx nor numpy nor any backend, so `--help` is fast.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

import click

from edgekit import __version__, lifecycle
from edgekit.cli_options import (
    CliContext,
    common,
    devices_option,
    gate_options,
    gates,
    input_shape_option,
    int8_search_options,
    parse_kv,
    results_option,
    targets_dir_option,
)
from edgekit.errors import BadInput, EdgekitError, GateFailed, Unreachable, error_for_exit_code
from edgekit.memory_model import ESTIMATE_FORMULA


def _fidelity_gate(report: Any) -> None:
    if report is not None and not report.passed:
        raise GateFailed("fidelity gate failed: " + "; ".join(report.failures))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="edgekit")
def cli() -> None:
    """edgekit: export one ONNX model to many edge backends, verify every artifact against FP32, and
    benchmark it on your own devices.

    \b
    Exit codes: 0 ok, 1 gate failed, 2 bad input, 3 missing dependency / device / hardware, 4 internal error.
    """


@cli.command()
@targets_dir_option
@common
def targets(app: CliContext, targets_dir: tuple[str, ...]) -> None:
    """List target profiles and whether their backend is installed here."""
    from edgekit import api, render

    record = api.targets(api.TargetsRequest(list(targets_dir)))
    if not app.emit(record):
        render.targets(record.to_json())


@cli.command(epilog="Memory estimate: " + ESTIMATE_FORMULA)
@click.argument("model", type=click.Path())
@input_shape_option
@click.option(
    "--devices", "devices_file", type=click.Path(), help="devices.toml: add a fit table per device."
)
@results_option("Bench records: the runtime memory measured there replaces the estimate.")
@common
def inspect(
    app: CliContext,
    model: str,
    input_shapes: tuple[str, ...],
    devices_file: str | None,
    results: tuple[str, ...],
) -> None:
    """Parameters, sizes per precision, MACs, peak activations and which devices can hold MODEL."""
    from edgekit import api, render
    from edgekit.ingest import parse_input_shapes

    request = api.InspectRequest(model, parse_input_shapes(input_shapes), devices_file, list(results))
    record = api.inspect(request)
    if not app.emit(record):
        render.inspect(record.report, record.fit)


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--target", "-t", required=True, help="Target profile name (see `edgekit targets`).")
@click.option("--int8", "precision", flag_value="int8", help="INT8 (needs --calib unless --dynamic).")
@click.option("--fp16", "precision", flag_value="fp16", help="FP16.")
@click.option("--fp32", "precision", flag_value="fp32", help="FP32.")
@click.option(
    "--precision",
    "precision_choice",
    type=click.Choice(["fp32", "fp16", "int8", "auto"]),
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
@gate_options
@common
def export(app: CliContext, model: str, **kw: Any) -> None:
    """Export MODEL for one target and precision into OUT/<model>.<target>.<precision>/.

    MODEL may be a split directory (`edgekit split`): every shard is exported, for one target
    (--target A) or one per shard (--target A,B,...), into OUT/<model>.pipeline/."""
    from edgekit import api, render
    from edgekit.backends.base import ExportOptions
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
        gate_overrides=gates(kw["min_cosine"], kw["max_accuracy_drop"], kw["min_snr_db"]),
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
    from edgekit import api, render

    if kw["input_shapes"]:
        raise BadInput("--input-shape is fixed at split time: give it to `edgekit split`")
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
        gate_overrides=gates(kw["min_cosine"], kw["max_accuracy_drop"], kw["min_snr_db"]),
        targets_dirs=list(kw["targets_dir"]),
        simplify=not kw["no_simplify"],
    )
    with render.Steps(f"export {Path(split_dir).name} (split) -> {kw['target']}") as steps:
        record = api.export_pipeline(request, steps)
    if not app.emit(record):
        render.pipeline_export(record.to_json())
    _shard_gates(record)


def _shard_gates(record: Any) -> None:
    failed = record.failed_shards()
    if failed:
        raise GateFailed(
            f"fidelity gate failed for shard artifact(s) {', '.join(failed)} (the pipeline is written: "
            f"{record.path})"
        )


@cli.command()
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
@gate_options
@common
def verify(app: CliContext, artifact_dir: str, **kw: Any) -> None:
    """Check ARTIFACT_DIR against its FP32 source on a validation set; exit 1 when a gate fails."""
    from edgekit import api, render

    request = api.VerifyRequest(
        artifact_dir=artifact_dir,
        val=kw["val"],
        reference=kw["reference"],
        val_samples=kw["val_samples"],
        device=kw["device"],
        devices_file=kw["devices_file"],
        targets_dirs=list(kw["targets_dir"]),
        gate_overrides=gates(kw["min_cosine"], kw["max_accuracy_drop"], kw["min_snr_db"]),
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


@cli.group()
def devices() -> None:
    """The device inventory (devices.toml): list, check, trust."""


@devices.command("list")
@devices_option
@common
def devices_list(app: CliContext, devices_file: str | None) -> None:
    """Devices with their resolved host, port, user, key and target."""
    from edgekit import api, render

    record = api.devices_list(api.DevicesRequest(devices_file))
    if not app.emit(record):
        render.devices_list(record.rows)


@devices.command("check")
@devices_option
@click.option("--device", "names", multiple=True, help="Only these devices.")
@common
def devices_check(app: CliContext, devices_file: str | None, names: tuple[str, ...]) -> None:
    """Reachability, auth, Python and runtimes, free disk and memory of every device, in parallel."""
    from edgekit import api, render

    with render.Steps("checking devices"):
        record = api.devices_check(api.DevicesRequest(devices_file, list(names)))
    if not app.emit(record):
        render.devices_check(record.rows)
    failed = record.failed()
    if failed:
        raise Unreachable(f"{len(failed)} device(s) failed the check: {', '.join(failed)}")


@devices.command("trust")
@click.argument("name")
@devices_option
@click.option("--yes", is_flag=True, help="Trust without asking (after printing the fingerprint).")
@common
def devices_trust(app: CliContext, name: str, devices_file: str | None, yes: bool) -> None:
    """Fetch NAME's host key, show its fingerprint and add it to the device's known_hosts."""
    from edgekit import api, render

    def confirm(question: str) -> bool:
        click.echo(question, err=True)
        return yes or click.confirm("Add it to known_hosts?", err=True, default=False)

    record = api.devices_trust(name, devices_file, confirm)
    if not app.emit(record):
        render.trust(record.to_json())


@cli.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path())
@click.option(
    "--device",
    "names",
    multiple=True,
    help="Run on these devices (default: every device whose target matches).",
)
@devices_option
@click.option("--iterations", default=100, show_default=True, type=click.IntRange(1))
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(0))
@click.option(
    "--min-duration",
    default=0.0,
    show_default=True,
    type=float,
    help="Keep iterating for at least this many seconds.",
)
@click.option(
    "--threads", type=int, help="Runtime threads on the device (default: the device's or runtime's)."
)
@click.option(
    "--val",
    type=click.Path(),
    help="Validation .npz: feed it instead of random input and check on-device fidelity.",
)
@click.option("-o", "--out", "results", default="results.jsonl", show_default=True, type=click.Path())
@click.option("--resume", is_flag=True, help="Skip (artifact, device) pairs already ok in the results file.")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1), help="Devices at once.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds per job.")
@targets_dir_option
@gate_options
@common
def bench(app: CliContext, artifacts: tuple[str, ...], **kw: Any) -> None:
    """Benchmark ARTIFACTS on your devices over SSH (or locally), as a fleet; append to results.jsonl.

    An exported split (`edgekit export SPLIT_DIR`) runs as a pipeline: one shard per device (the
    planned ones, or --device A --device B ... in shard order), intermediate tensors relayed through
    this host; --iterations samples are timed one at a time, then with every stage busy."""
    from edgekit import api, render

    request = api.BenchRequest(
        artifacts=list(artifacts),
        devices=list(kw["names"]),
        devices_file=kw["devices_file"],
        iterations=kw["iterations"],
        warmup=kw["warmup"],
        min_duration_s=kw["min_duration"],
        threads=kw["threads"],
        timeout_s=kw["timeout"],
        val=kw["val"],
        results=kw["results"],
        resume=kw["resume"],
        concurrency=kw["concurrency"],
        targets_dirs=list(kw["targets_dir"]),
        gate_overrides=gates(kw["min_cosine"], kw["max_accuracy_drop"], kw["min_snr_db"]),
    )
    if any(api.is_pipeline_dir(a) for a in artifacts):
        _bench_pipelines(app, request)
        return
    record = api.bench(request, render.BenchView(quiet=app.json, debug=app.debug))
    render.warnings(record.warnings)
    if not app.emit(record):
        render.bench(record.records, str(request.results))
    failed, below_gate = record.failed(), record.fidelity_failed()
    if failed:
        raise Unreachable(
            f"{len(failed)} of {len(record.records)} run(s) failed; see the table and {request.results}"
        )
    if below_gate:
        raise GateFailed(
            f"on-device fidelity failed for {len(below_gate)} run(s); see the table and {request.results}"
        )


def _bench_pipelines(app: CliContext, request: Any) -> None:
    from edgekit import api, render

    with render.Steps("bench pipeline") as steps:
        record = api.bench_pipeline(request, steps)
    if not app.emit(record):
        render.pipeline_bench(record.to_json(), str(request.results))
    failed = record.fidelity_failed()
    if failed:
        raise GateFailed(f"end-to-end fidelity failed for {len(failed)} pipeline(s); see {request.results}")


@cli.command()
@click.option("-o", "--out", "out_dir", default="edgekit-out/demo", show_default=True, type=click.Path())
@click.option("--target", "only", multiple=True, help="Only these targets (default: every installed one).")
@click.option("--iterations", default=200, show_default=True, help="Timed iterations per artifact.")
@common
def demo(app: CliContext, out_dir: str, only: tuple[str, ...], iterations: int) -> None:
    """The embedded default: the bundled digits CNN through every installed target, verified and timed."""
    from edgekit import api, render

    console = render.stderr()

    def progress(message: str) -> None:
        if not app.json:
            console.print(f"[dim]{message}[/dim]")

    record = api.demo(api.DemoRequest(out_dir, list(only), iterations), progress)
    if not app.emit(record):
        render.demo(record.rows)
    code = record.exit_code()
    if code == 1:
        raise GateFailed("some artifacts failed their fidelity gate (see the table)")
    if code:
        raise error_for_exit_code(code, "some demo exports failed (see the table)")


@cli.command()
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
    from edgekit import api, render

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


@cli.command()
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
    from edgekit import api, render

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


@cli.command()
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
    from edgekit import api, render
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
        _shard_gates(record.export)


# ---- entry point -------------------------------------------------------------------------------
def install_signal_handlers() -> None:
    """The one place edgekit installs signal handlers, before any work starts. SIGINT raises
    KeyboardInterrupt (Python's default: cleanup runs, exit 130); SIGTERM and SIGHUP unwind the same
    way (edgekit.lifecycle: exit 143 / 129), and child processes die with edgekit."""
    lifecycle.install_signal_handlers()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def run(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code. Every error becomes one line here (traceback with --debug)."""
    app = CliContext()
    try:
        code = cli.main(args=argv, prog_name="edgekit", standalone_mode=False, obj=app)
        return code if isinstance(code, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("edgekit: aborted", err=True)
        return 130
    except click.ClickException as exc:  # every click error is about the arguments given: exit 2
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" See '{exc.ctx.command_path} --help'."
        click.echo(f"edgekit: error: {exc.format_message()}{hint}", err=True)
        return BadInput.exit_code
    except KeyboardInterrupt:
        click.echo("edgekit: interrupted", err=True)
        return 130
    except EdgekitError as exc:
        if app.debug:
            traceback.print_exc()
        label = "gate failed" if isinstance(exc, GateFailed) else "error"
        click.echo(f"edgekit: {label}: {exc}", err=True)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the one place internal errors become exit 4
        if app.debug:
            traceback.print_exc()
        click.echo(
            f"edgekit: internal error: {type(exc).__name__}: {_one_line(exc)} (run with --debug for the traceback)",
            err=True,
        )
        return 4


def main(argv: list[str] | None = None) -> None:
    install_signal_handlers()
    sys.exit(run(argv))
