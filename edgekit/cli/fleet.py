"""`edgekit targets`, `inspect`, `devices`, `bench` and `demo` (registered on the group in edgekit.cli)."""

from __future__ import annotations

from typing import Any

import click

from edgekit.cli.options import (
    CliContext,
    common,
    devices_option,
    gate_options,
    gates,
    input_shape_option,
    results_option,
    targets_dir_option,
    task_and_metric,
    task_options,
)
from edgekit.errors import GateFailed, Unreachable, error_for_exit_code
from edgekit.memory_model import DECODER_FORMULA, ESTIMATE_FORMULA


@click.command()
@targets_dir_option
@common
def targets(app: CliContext, targets_dir: tuple[str, ...]) -> None:
    """List target profiles and whether their backend is installed here."""
    from edgekit import api
    from edgekit.cli import render

    record = api.targets(api.TargetsRequest(list(targets_dir)))
    if not app.emit(record):
        render.targets(record.to_json())


@click.command(epilog="Memory estimate: " + ESTIMATE_FORMULA + " With --context: " + DECODER_FORMULA)
@click.argument("model", type=click.Path())
@input_shape_option
@click.option(
    "--context",
    type=int,
    help="A decoder with a KV cache: memory when generating at N tokens of context (formula below).",
)
@click.option(
    "--batch", type=int, default=1, show_default=True, help="Sequences generated at once (--context)."
)
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
    context: int | None,
    batch: int,
) -> None:
    """Parameters, sizes per precision, MACs, peak activations and which devices can hold MODEL;
    for a decoder with a KV cache, which input is which and (--context) its memory at a context length."""
    from edgekit import api
    from edgekit.cli import render
    from edgekit.ingest import parse_input_shapes

    request = api.InspectRequest(
        model, parse_input_shapes(input_shapes), devices_file, list(results), context=context, batch=batch
    )
    record = api.inspect(request)
    if not app.emit(record):
        render.inspect(record.report, record.fit)


@click.group()
def devices() -> None:
    """The device inventory (devices.toml): list, check, trust."""


@devices.command("list")
@devices_option
@common
def devices_list(app: CliContext, devices_file: str | None) -> None:
    """Devices with their resolved host, port, user, key and target."""
    from edgekit import api
    from edgekit.cli import render

    record = api.devices_list(api.DevicesRequest(devices_file))
    if not app.emit(record):
        render.devices_list(record.rows)


@devices.command("check")
@devices_option
@click.option("--device", "names", multiple=True, help="Only these devices.")
@common
def devices_check(app: CliContext, devices_file: str | None, names: tuple[str, ...]) -> None:
    """Reachability, auth, Python and runtimes, free disk and memory of every device, in parallel."""
    from edgekit import api
    from edgekit.cli import render

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
    from edgekit import api
    from edgekit.cli import render

    def confirm(question: str) -> bool:
        click.echo(question, err=True)
        return yes or click.confirm("Add it to known_hosts?", err=True, default=False)

    record = api.devices_trust(name, devices_file, confirm)
    if not app.emit(record):
        render.trust(record.to_json())


@click.command()
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
@click.option(
    "--prompt",
    default=32,
    show_default=True,
    type=click.IntRange(1),
    help="A decoder with a KV cache: prompt tokens prefilled before decoding.",
)
@click.option(
    "--context",
    "contexts",
    multiple=True,
    type=click.IntRange(2),
    help="A decoder: time per-token decode with the cache grown to this length (repeatable; default 2x and 4x --prompt).",
)
@click.option(
    "--input-shape",
    "bench_shapes",
    multiple=True,
    metavar="NAME:D0,D1,..",
    help="Shape to time; give a name more than once to time several (e.g. sequence 16 and 128).",
)
@targets_dir_option
@task_options
@gate_options
@common
def bench(app: CliContext, artifacts: tuple[str, ...], **kw: Any) -> None:
    """Benchmark ARTIFACTS on your devices over SSH (or locally), as a fleet; append to results.jsonl.

    An exported split (`edgekit export SPLIT_DIR`) runs as a pipeline: one shard per device (the
    planned ones, or --device A --device B ... in shard order), intermediate tensors relayed through
    this host; --iterations samples are timed one at a time, then with every stage busy."""
    from edgekit import api
    from edgekit.cli import render

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
        gate_overrides=gates(kw),
        **task_and_metric(kw),
        prompt=kw["prompt"],
        contexts=list(kw["contexts"]),
        input_shapes=list(kw["bench_shapes"]),
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
    from edgekit import api
    from edgekit.cli import render

    with render.Steps("bench pipeline") as steps:
        record = api.bench_pipeline(request, steps)
    if not app.emit(record):
        render.pipeline_bench(record.to_json(), str(request.results))
    failed = record.fidelity_failed()
    if failed:
        raise GateFailed(f"end-to-end fidelity failed for {len(failed)} pipeline(s); see {request.results}")
    unmeasured = record.fidelity_not_measured()
    if unmeasured:
        reasons = "; ".join(str((r.get("fidelity") or {}).get("reason", "no fidelity")) for r in unmeasured)
        raise GateFailed(
            f"end-to-end fidelity not measured for {len(unmeasured)} pipeline(s) (not a pass): {reasons}"
        )


@click.command()
@click.option("-o", "--out", "out_dir", default="edgekit-out/demo", show_default=True, type=click.Path())
@click.option("--target", "only", multiple=True, help="Only these targets (default: every installed one).")
@click.option("--iterations", default=200, show_default=True, help="Timed iterations per artifact.")
@common
def demo(app: CliContext, out_dir: str, only: tuple[str, ...], iterations: int) -> None:
    """The embedded default: the bundled digits CNN and shapes detector through every installed target,
    verified and timed."""
    from edgekit import api
    from edgekit.cli import render

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
