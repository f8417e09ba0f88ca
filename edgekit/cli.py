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
@common
def inspect(app: CliContext, model: str, input_shapes: tuple[str, ...], devices_file: str | None) -> None:
    """Parameters, sizes per precision, MACs, peak activations and which devices can hold MODEL."""
    from edgekit import api, render
    from edgekit.ingest import parse_input_shapes

    record = api.inspect(api.InspectRequest(model, parse_input_shapes(input_shapes), devices_file))
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
    """Export MODEL for one target and precision into OUT/<model>.<target>.<precision>/."""
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
    """Benchmark ARTIFACTS on your devices over SSH (or locally), as a fleet; append to results.jsonl."""
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
