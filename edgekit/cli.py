"""The `edgekit` command: a thin shell over `edgekit.api`. Only this module prints.

Exit codes (DESIGN.md): 0 ok, 1 a gate failed, 2 bad usage or input, 3 missing optional dependency or
unreachable device, 4 internal error. Errors are one line; `--debug` adds the traceback.
Heavy backends (tensorflow, openvino, tensorrt, onnx2tf) are never imported for `--help`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edgekit import __version__, lifecycle
from edgekit.analysis import ESTIMATE_FORMULA
from edgekit.errors import BadInput, EdgekitError, GateFailed

STATE: dict[str, Any] = {"debug": bool(os.environ.get("EDGEKIT_DEBUG")), "json": False}


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _stdout():
    from rich.console import Console

    return Console(highlight=False)


def common(func: Callable) -> Callable:
    """--json and --debug on every command."""

    @click.option(
        "--json", "as_json", is_flag=True, help="Machine-readable result on stdout; logs on stderr."
    )
    @click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
    @functools.wraps(func)
    def wrapper(*args: Any, as_json: bool, debug: bool, **kwargs: Any) -> Any:
        STATE["json"] = as_json
        STATE["debug"] = STATE["debug"] or debug
        logging.basicConfig(
            level=logging.DEBUG if STATE["debug"] else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        return func(*args, **kwargs)

    return wrapper


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


class Steps:
    """A spinner with the current step on stderr (quiet with --json when stderr is not a terminal)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._status = None

    def __enter__(self) -> Steps:
        console = _stderr()
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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="edgekit")
def cli() -> None:
    """edgekit: export one ONNX model to many edge backends, verify every artifact against FP32, and
    benchmark it on your own devices.

    \b
    Exit codes: 0 ok, 1 gate failed, 2 bad input, 3 missing dependency / unreachable device, 4 internal error.
    """


# ---- targets -----------------------------------------------------------------------------------
@cli.command()
@click.option("--targets-dir", multiple=True, type=click.Path(), help="Extra directory of target TOMLs.")
@common
def targets(targets_dir: tuple[str, ...]) -> None:
    """List target profiles and whether their backend is installed here."""
    from edgekit.backends import BACKENDS, get_backend, implemented
    from edgekit.targets import load_all

    rows = []
    built = set(implemented())
    for profile in sorted(load_all(targets_dir).values(), key=lambda p: (p.backend, p.name)):
        if profile.backend in built:
            backend = get_backend(profile.backend)
            missing = backend.missing_modules()
            status = (
                "installed"
                if not missing
                else f"missing {', '.join(missing)} (pip install 'edgekit[{backend.extra}]')"
            )
            if status == "installed" and profile.backend == "tensorrt" and not _importable("tensorrt"):
                status = "installed (bundle only: no tensorrt here, engines build on the device)"
        elif profile.backend in BACKENDS:
            status = "backend not in this build"
        else:
            status = f"unknown backend '{profile.backend}'"
        rows.append(
            {
                "name": profile.name,
                "backend": profile.backend,
                "precisions": profile.precisions,
                "build": profile.build,
                "status": status,
                "installed": status.startswith("installed"),
                "description": profile.description,
            }
        )
    if STATE["json"]:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table(title="edgekit targets")
    for col in ("target", "backend", "precisions", "build", "status", "description"):
        table.add_column(col)
    for row in rows:
        color = "green" if row["status"] == "installed" else "yellow"
        table.add_row(
            row["name"],
            row["backend"],
            ",".join(row["precisions"]),
            row["build"],
            f"[{color}]{row['status']}[/{color}]",
            row["description"],
        )
    _stdout().print(table)


# ---- inspect -----------------------------------------------------------------------------------
@cli.command(epilog="Memory estimate: " + ESTIMATE_FORMULA)
@click.argument("model", type=click.Path())
@click.option(
    "--input-shape", "input_shapes", multiple=True, metavar="NAME:D0,D1,..", help="Fix a dynamic input shape."
)
@click.option(
    "--devices", "devices_file", type=click.Path(), help="devices.toml: add a fit table per device."
)
@common
def inspect(model: str, input_shapes: tuple[str, ...], devices_file: str | None) -> None:
    """Parameters, sizes per precision, MACs, peak activations and which devices can hold MODEL."""
    from edgekit import analysis
    from edgekit.ingest import parse_input_shapes

    report = analysis.analyze(model, parse_input_shapes(input_shapes))
    fit = None
    if devices_file:
        fit = analysis.fit_table(report, _fit_devices(devices_file))
    if STATE["json"]:
        data = report.to_json()
        if fit is not None:
            data["fit"] = fit
        emit_json(data)
        return
    _render_report(report, fit)


def _fit_devices(devices_file: str) -> list[dict[str, Any]]:
    from edgekit.inventory import load_devices

    return [
        {"name": d.name, "target": d.target, "memory_mb": d.memory_mb, "transport": d.transport}
        for d in load_devices(devices_file).values()
    ]


def _render_report(report: Any, fit: list[dict[str, Any]] | None) -> None:
    from rich.table import Table

    console = _stdout()
    console.print(
        f"[bold]{Path(report.path).name}[/bold]  opset {report.opset}, IR {report.ir_version}, "
        f"producer {report.producer or '?'}, {report.node_count} nodes, {_mb(report.file_bytes)} on disk"
    )
    io = Table(title="inputs / outputs")
    for col in ("kind", "name", "shape", "dtype"):
        io.add_column(col)
    for kind, rows in (("input", report.inputs), ("output", report.outputs)):
        for row in rows:
            shape = "[" + ", ".join("?" if d is None else str(d) for d in row.shape) + "]"
            io.add_row(kind, row.name, shape, row.dtype)
    console.print(io)
    ops = ", ".join(f"{op} {count}" for op, count in report.op_histogram)
    console.print(f"ops: {ops}")
    console.print(
        f"parameters: {report.params:,} in {report.param_tensors} tensors (Constant-node weights "
        f"included, shared tensors once); non-float constants {_mb(report.nonfloat_constant_bytes)}"
    )
    macs = ", ".join(f"{op} {n / 1e6:.2f}M" for op, n in report.macs.items() if n)
    console.print(f"MACs at {report.analysis_shapes}: {report.total_macs / 1e6:.2f}M ({macs or 'none'})")
    console.print(
        f"peak activations: {_mb(report.peak_activation_bytes)} (fp32) at node "
        f"{report.peak_node.get('name', '?')}"
    )
    sizes = Table(title="per precision")
    for col in ("precision", "weights", "peak activations", "est. runtime memory"):
        sizes.add_column(col)
    for precision, weights in report.weight_bytes.items():
        sizes.add_row(
            precision,
            _mb(weights),
            _mb(report.peak_activation_bytes_by_precision[precision]),
            _mb(report.memory_estimate_bytes[precision]),
        )
    console.print(sizes)
    if fit is not None:
        table = Table(title="fit per device (estimate vs device memory)")
        for col in ("device", "target", "precision", "estimate MB", "device MB", "headroom", "fits"):
            table.add_column(col)
        for row in fit:
            fits = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "unknown"}[row["fits"]]
            headroom = (
                "-"
                if row["headroom_mb"] is None
                else f"{row['headroom_mb']:.0f} MB ({row['headroom_pct']:.0f}%)"
            )
            table.add_row(
                row["device"],
                str(row["target"] or "-"),
                row["precision"],
                f"{row['estimated_mb']:.1f}",
                str(row["device_mb"] or "?"),
                headroom,
                fits,
            )
        console.print(table)
    for note in report.notes:
        console.print(f"[dim]note: {note}[/dim]")


# ---- export ------------------------------------------------------------------------------------
def _gate_options(func: Callable) -> Callable:
    func = click.option("--min-cosine", type=float, help="Gate: minimum cosine similarity per output.")(func)
    func = click.option("--max-accuracy-drop", type=float, help="Gate: maximum accuracy drop (points).")(func)
    func = click.option("--min-snr-db", type=float, help="Gate: minimum SNR per output (dB).")(func)
    return func


def _int8_search_options(func: Callable) -> Callable:
    """INT8 search flags (edgekit.int8): by default --int8 searches recipes and keeps sensitive nodes
    in float until the target's gate holds."""
    func = click.option(
        "--allow-float-ops",
        is_flag=True,
        help="Full-integer targets: let INT8 fallback leave float ops in the artifact.",
    )(func)
    func = click.option(
        "--search-budget",
        type=click.FloatRange(min=0),
        default=600.0,
        show_default=True,
        help="Seconds the INT8 search may take.",
    )(func)
    func = click.option(
        "--max-revert",
        type=click.FloatRange(0.0, 1.0),
        default=0.25,
        show_default=True,
        help="Share of quantized nodes INT8 fallback may keep in float (at least one, unless 0).",
    )(func)
    func = click.option(
        "--no-search", is_flag=True, help="INT8: the single default recipe, no search nor fallback."
    )(func)
    return func


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
    help="Precision by name; auto: the fastest precision here that passes the gate.",
)
@click.option("--calib", type=click.Path(), help="Calibration set (.npz or image dir + calibration.toml).")
@click.option("--val", type=click.Path(), help="Validation set: verify the artifact and record fidelity.")
@click.option(
    "--input-shape", "input_shapes", multiple=True, metavar="NAME:D0,D1,..", help="Fix a dynamic input shape."
)
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
@click.option("--targets-dir", multiple=True, type=click.Path(), help="Extra directory of target TOMLs.")
@_int8_search_options
@_gate_options
@common
def export(
    model: str,
    target: str,
    precision: str | None,
    precision_choice: str | None,
    calib: str | None,
    val: str | None,
    input_shapes: tuple[str, ...],
    out_dir: str,
    calib_samples: int | None,
    val_samples: int | None,
    calib_method: str,
    dynamic_int8: bool,
    io_dtype: str,
    ignore: tuple[str, ...],
    accuracy_control: bool,
    threads: int | None,
    extra: tuple[str, ...],
    no_simplify: bool,
    targets_dir: tuple[str, ...],
    no_search: bool,
    max_revert: float,
    search_budget: float,
    allow_float_ops: bool,
    min_cosine: float | None,
    max_accuracy_drop: float | None,
    min_snr_db: float | None,
) -> None:
    """Export MODEL for one target and precision into OUT/<model>.<target>.<precision>/."""
    from edgekit import api
    from edgekit.backends.base import ExportOptions
    from edgekit.ingest import parse_input_shapes

    options = ExportOptions(
        calib_method=calib_method,
        dynamic_int8=dynamic_int8,
        io_dtype=io_dtype,
        ignore=list(ignore),
        max_accuracy_drop=max_accuracy_drop if accuracy_control else None,
        threads=threads,
        extra=_parse_kv(extra),
        search=not no_search,
        max_revert=max_revert,
        search_budget_s=search_budget,
        allow_float_ops=allow_float_ops,
    )
    if precision and precision_choice and precision != precision_choice:
        raise BadInput(f"--{precision} and --precision {precision_choice} disagree; give one")
    request = api.ExportRequest(
        model=model,
        target=target,
        precision=precision_choice or precision,
        calib=calib,
        val=val,
        input_shapes=parse_input_shapes(input_shapes),
        out_dir=out_dir,
        calib_samples=calib_samples,
        val_samples=val_samples,
        simplify=not no_simplify,
        options=options,
        targets_dirs=targets_dir,
        gate_overrides={
            "min_cosine": min_cosine,
            "max_accuracy_drop": max_accuracy_drop,
            "min_snr_db": min_snr_db,
        },
    )
    with Steps(f"export {Path(model).name} -> {target}") as steps:
        outcome = api.export(request, steps)
    manifest = outcome.manifest
    for warning in manifest.get("warnings", []):
        _stderr().print(f"[yellow]warning:[/yellow] {warning}")
    if STATE["json"]:
        emit_json({"artifact": str(outcome.path), "manifest": manifest})
    else:
        size = manifest["size"]
        _stdout().print(
            f"[green]exported[/green] {outcome.path}  ({manifest['effective_precision']}, "
            f"{_mb(size['artifact_bytes'])}, compression {size['compression_ratio']}x vs the FP32 source)"
        )
        if outcome.fidelity is not None:
            _print_fidelity(outcome.fidelity)
        if manifest.get("precision_choice"):
            _print_precision_choice(manifest["precision_choice"])
    if outcome.fidelity is not None and not outcome.fidelity.passed:
        raise GateFailed("fidelity gate failed: " + "; ".join(outcome.fidelity.failures))
    from edgekit.int8 import search_record

    search = search_record(manifest)
    # without --val the INT8 search checked the gate on held-out calibration samples
    if search and not search.get("passed", True) and outcome.fidelity is None:
        raise GateFailed(f"INT8 {search['summary']} (on {search['scored_on']}); artifact kept in {outcome.path}")


def _print_precision_choice(choice: dict[str, Any]) -> None:
    """--precision auto: every precision with its fidelity and p50, and why one was kept."""
    from rich.table import Table

    table = Table(title="precision auto")
    for col in ("precision", "gate", "cosine", "drop", "p50 ms", "size", ""):
        table.add_column(col)
    for row in choice["alternatives"]:
        table.add_row(
            row["precision"],
            "pass" if row.get("passed") else row.get("status", "-"),
            "-" if row.get("cosine") is None else f"{row['cosine']:.5f}",
            "-" if row.get("accuracy_drop") is None else f"{row['accuracy_drop']:+.2f}",
            "-" if row.get("p50_ms") is None else f"{row['p50_ms']:.3f}",
            "-" if row.get("bytes") is None else _mb(row["bytes"]),
            "[green]chosen[/green]" if row["precision"] == choice["chosen"] else "",
        )
    console = _stdout()
    console.print(table)
    for line in choice["why"]:
        console.print(f"note: {line}")


def _parse_kv(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"--option '{item}' must be KEY=VALUE")
        out[key] = value
    return out


def _mb(num: int) -> str:
    return f"{num / 1e6:.2f} MB" if num >= 100_000 else f"{num / 1e3:.1f} kB"


def _print_fidelity(report: Any) -> None:
    from rich.table import Table

    table = Table(title=f"fidelity vs FP32 ({report.samples} samples)")
    for col in ("output", "cosine", "SNR dB", "max |err|", "mean |err|", "top-1 agree %"):
        table.add_column(col)
    for out in report.outputs:
        table.add_row(
            out.name,
            f"{out.cosine:.5f}",
            f"{out.snr_db:.1f}",
            f"{out.max_abs:.4g}",
            f"{out.mean_abs:.4g}",
            "-" if out.top1_agreement is None else f"{out.top1_agreement:.2f}",
        )
    console = _stdout()
    console.print(table)
    if report.accuracy_reference is not None:
        console.print(
            f"accuracy: FP32 {report.accuracy_reference:.2f}%  artifact {report.accuracy_artifact:.2f}%  "
            f"drop {report.accuracy_drop:+.2f} points"
        )
    verdict = "[green]PASS[/green]" if report.passed else "[red]FAIL[/red]: " + "; ".join(report.failures)
    console.print(f"gate: {verdict}")


# ---- verify ------------------------------------------------------------------------------------
@cli.command()
@click.argument("artifact_dir", type=click.Path())
@click.option("--val", required=True, type=click.Path(), help="Validation set (.npz or image dir).")
@click.option(
    "--reference", type=click.Path(), help="The FP32 source ONNX (default: the path in the manifest)."
)
@click.option("--val-samples", type=int, help="Seeded subset of the validation set.")
@click.option("--device", help="Run the artifact on this device (devices.toml) instead of the host.")
@click.option(
    "--devices", "devices_file", type=click.Path(), help="Inventory (default: ./devices.toml if present)."
)
@click.option("--targets-dir", multiple=True, type=click.Path())
@_gate_options
@common
def verify(
    artifact_dir: str,
    val: str,
    reference: str | None,
    val_samples: int | None,
    device: str | None,
    devices_file: str | None,
    targets_dir: tuple[str, ...],
    min_cosine: float | None,
    max_accuracy_drop: float | None,
    min_snr_db: float | None,
) -> None:
    """Check ARTIFACT_DIR against its FP32 source on a validation set; exit 1 when a gate fails."""
    from edgekit import api

    overrides = {"min_cosine": min_cosine, "max_accuracy_drop": max_accuracy_drop, "min_snr_db": min_snr_db}
    with Steps(f"verify {Path(artifact_dir).name}"):
        if device:
            report = api.verify_on_device(
                artifact_dir,
                val,
                _inventory(devices_file),
                device,
                reference=reference,
                samples=val_samples,
                gate_overrides=overrides,
            )
        else:
            report, _ = api.verify(
                artifact_dir,
                val,
                reference=reference,
                samples=val_samples,
                gate_overrides=overrides,
                targets_dirs=targets_dir,
            )
    if STATE["json"]:
        emit_json(report.to_json())
    else:
        _print_fidelity(report)
    if not report.passed:
        raise GateFailed("fidelity gate failed: " + "; ".join(report.failures))


# ---- devices and bench -------------------------------------------------------------------------
def _inventory(devices_file: str | None):
    from edgekit.inventory import load_devices

    if devices_file is None:
        devices_file = "devices.toml" if Path("devices.toml").is_file() else None
    elif not Path(devices_file).expanduser().is_file():
        raise BadInput(f"devices file not found: {devices_file}")
    return load_devices(devices_file)


@cli.group()
def devices() -> None:
    """The device inventory (devices.toml): list, check, trust."""


@devices.command("list")
@click.option(
    "--devices", "devices_file", type=click.Path(), help="Inventory (default: ./devices.toml if present)."
)
@common
def devices_list(devices_file: str | None) -> None:
    """Devices with their resolved host, port, user, key and target."""
    from edgekit.inventory import list_devices

    rows = list_devices(_inventory(devices_file))
    if STATE["json"]:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table(title="devices")
    for col in ("name", "transport", "target", "address", "user", "key", "memory MB"):
        table.add_column(col, overflow="fold")
    for row in rows:
        if row["transport"] == "local":
            address = "this machine"
        elif row["transport"] == "adb":
            address = f"adb {row['serial']}"
        else:
            address = f"{row['hostname'] or row['host']}:{row['port']}"
        via = f" via {row['proxy_jump']}" if row.get("proxy_jump") else ""
        table.add_row(
            row["name"],
            row["transport"],
            row["target"],
            address + via,
            row["user"] or "-",
            ", ".join(row["identity_files"]) or ("agent" if row["transport"] == "ssh" else "-"),
            str(row["memory_mb"] or "-"),
        )
    _stdout().print(table)


@devices.command("check")
@click.option(
    "--devices", "devices_file", type=click.Path(), help="Inventory (default: ./devices.toml if present)."
)
@click.option("--device", "names", multiple=True, help="Only these devices.")
@common
def devices_check(devices_file: str | None, names: tuple[str, ...]) -> None:
    """Reachability, auth, Python and runtimes, free disk and memory of every device, in parallel."""
    import asyncio

    from edgekit.inventory import check_devices, select_devices

    inventory = _inventory(devices_file)
    chosen = select_devices(inventory, list(names)) if names else list(inventory.values())
    with Steps(f"checking {len(chosen)} device(s)"):
        rows = asyncio.run(check_devices(chosen))
    if STATE["json"]:
        emit_json(rows)
    else:
        from rich.table import Table

        table = Table(title="device check")
        for col in ("device", "status", "python", "runtimes", "free disk MB", "memory MB", "detail"):
            table.add_column(col, overflow="fold")
        for row in rows:
            ok = row.get("status") == "ok"
            runtimes = row.get("runtimes") or {}
            detail = row.get("error") or "; ".join(row.get("warnings") or [])
            table.add_row(
                row["name"],
                "[green]ok[/green]" if ok else f"[red]{row.get('error_kind') or 'failed'}[/red]",
                str(row.get("python") or "-"),
                ", ".join(f"{k} {v}" for k, v in runtimes.items() if v) or "-",
                _num(row.get("free_disk_mb"), ".0f"),
                _num(row.get("memory_mb"), ".0f"),
                detail,
            )
        _stdout().print(table)
    if any(row.get("status") != "ok" for row in rows):
        raise _unreachable(rows)


def _unreachable(rows: list[dict[str, Any]]) -> EdgekitError:
    from edgekit.errors import Unreachable

    failed = [r["name"] for r in rows if r.get("status") != "ok"]
    return Unreachable(f"{len(failed)} device(s) failed the check: {', '.join(failed)}")


@devices.command("trust")
@click.argument("name")
@click.option(
    "--devices", "devices_file", type=click.Path(), help="Inventory (default: ./devices.toml if present)."
)
@click.option("--yes", is_flag=True, help="Trust without asking (after printing the fingerprint).")
@common
def devices_trust(name: str, devices_file: str | None, yes: bool) -> None:
    """Fetch NAME's host key, show its fingerprint and add it to the device's known_hosts."""
    import asyncio

    from edgekit.inventory import select_devices, trust_device

    device = select_devices(_inventory(devices_file), [name])[0]

    def confirm(question: str) -> bool:
        click.echo(question, err=True)
        return yes or click.confirm("Add it to known_hosts?", err=True, default=False)

    result = asyncio.run(trust_device(device, confirm))
    if STATE["json"]:
        emit_json(result)
    else:
        state = "added to known_hosts" if result.get("added") else result.get("note", "not added")
        _stdout().print(f"{name}: {result['key_type']} {result['fingerprint']} ({result['host']}): {state}")


@cli.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path())
@click.option(
    "--device",
    "names",
    multiple=True,
    help="Run on these devices (default: every device whose target matches).",
)
@click.option(
    "--devices", "devices_file", type=click.Path(), help="Inventory (default: ./devices.toml if present)."
)
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
@common
def bench(
    artifacts: tuple[str, ...],
    names: tuple[str, ...],
    devices_file: str | None,
    iterations: int,
    warmup: int,
    min_duration: float,
    threads: int | None,
    val: str | None,
    results: str,
    resume: bool,
    concurrency: int,
    timeout: float,
) -> None:
    """Benchmark ARTIFACTS on your devices over SSH (or locally), as a fleet; append to results.jsonl."""
    from edgekit import api
    from edgekit.runner import BenchSettings

    settings = BenchSettings(
        iterations=iterations,
        warmup=warmup,
        min_duration_s=min_duration,
        threads=threads,
        timeout_s=timeout,
        validation=Path(val).expanduser() if val else None,
    )
    outcome = api.bench(
        list(artifacts),
        _inventory(devices_file),
        list(names),
        settings,
        results,
        resume=resume,
        concurrency=concurrency,
        progress=_BenchView(),
    )
    for warning in outcome.warnings:
        _stderr().print(f"[yellow]warning:[/yellow] {warning}")
    if STATE["json"]:
        emit_json(outcome.records)
    else:
        _print_bench(outcome)
    failed = [r for r in outcome.records if r["status"] == "failed"]
    if failed:
        from edgekit.errors import Unreachable

        raise Unreachable(
            f"{len(failed)} of {len(outcome.records)} run(s) failed; see the table and {results}"
        )
    gates = [f for f in outcome.fidelity.values() if not f.passed]
    if gates:
        raise GateFailed(f"on-device fidelity failed for {len(gates)} run(s)")


class _BenchView:
    """Live progress of a fleet run on stderr: one line per finished job, a spinner with what runs."""

    def __init__(self) -> None:
        self.console = _stderr()

    def __call__(self, event: dict[str, Any]) -> None:
        stage = event.get("stage")
        if stage in ("ok", "failed", "skipped") and not STATE["json"]:
            color = {"ok": "green", "failed": "red", "skipped": "dim"}[stage]
            record = event.get("record") or {}
            detail = ""
            if stage == "ok" and record.get("latency_ms"):
                detail = f" p50 {record['latency_ms']['p50']:.3f} ms"
            elif stage == "failed":
                detail = f" {record.get('error') or ''}"
            self.console.print(
                f"[{color}]{stage:7}[/{color}] {event['artifact']} on {event['device']}{detail}"
            )
        elif stage in ("connecting", "uploading", "running") and STATE["debug"]:
            self.console.print(f"[dim]{stage} {event['artifact']} on {event['device']}[/dim]")


def _print_bench(outcome: Any) -> None:
    from rich.table import Table

    from edgekit.runner import table_rows

    table = Table(title=f"benchmark ({len(outcome.records)} run(s); results in {outcome.results})")
    for col in (
        "artifact",
        "device",
        "status",
        "p50 ms",
        "p95 ms",
        "FPS",
        "init ms",
        "peak RSS MB",
        "fidelity / error",
    ):
        table.add_column(col, overflow="fold")
    for row, record in zip(table_rows(outcome.records), outcome.records, strict=True):
        fidelity = outcome.fidelity.get(id(record))
        note = row["error"] or ""
        if fidelity is not None:
            note = (
                f"cosine {min(o.cosine for o in fidelity.outputs):.5f}"
                + (
                    f", acc {fidelity.accuracy_artifact:.2f}%"
                    if fidelity.accuracy_artifact is not None
                    else ""
                )
                + ("" if fidelity.passed else " FAIL")
            )
        table.add_row(
            row["artifact"],
            row["device"],
            row["status"],
            _num(row["p50_ms"], ".3f"),
            _num(row["p95_ms"], ".3f"),
            _num(row["fps"], ".1f"),
            _num(row["init_ms"], ".1f"),
            _num(row["peak_rss_mb"], ".1f"),
            note,
        )
    _stdout().print(table)


def _num(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# ---- demo --------------------------------------------------------------------------------------
@cli.command()
@click.option("-o", "--out", "out_dir", default="edgekit-out/demo", show_default=True, type=click.Path())
@click.option("--target", "only", multiple=True, help="Only these targets (default: every installed one).")
@click.option("--iterations", default=200, show_default=True, help="Timed iterations per artifact.")
@common
def demo(out_dir: str, only: tuple[str, ...], iterations: int) -> None:
    """The embedded default: the bundled digits CNN through every installed target, verified and timed."""
    from edgekit.demo import run_demo

    console = _stderr()

    def progress(message: str) -> None:
        if not STATE["json"]:
            console.print(f"[dim]{message}[/dim]")

    rows = run_demo(Path(out_dir), only, iterations, progress)
    if STATE["json"]:
        emit_json(rows)
    else:
        from edgekit.demo import render

        render(rows, _stdout())
    if any(row["status"] == "export failed" for row in rows):
        raise EdgekitError("some demo exports failed (see the table)")
    if any(row["status"] == "verify failed" for row in rows):
        raise GateFailed("some artifacts failed their fidelity gate (see the table)")


# ---- entry point -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    lifecycle.install_signal_handlers()  # SIGTERM/SIGHUP unwind and clean up like Ctrl-C (exit 143/129)
    try:
        code = cli.main(args=argv, prog_name="edgekit", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError | click.BadParameter) else exc.exit_code)
    except click.exceptions.Abort:
        click.echo("edgekit: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("edgekit: interrupted", err=True)
        sys.exit(130)
    except EdgekitError as exc:
        if STATE["debug"]:
            traceback.print_exc()
        label = "gate failed" if isinstance(exc, GateFailed) else "error"
        click.echo(f"edgekit: {label}: {exc}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the one place internal errors become exit 4
        if STATE["debug"]:
            traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        click.echo(
            f"edgekit: internal error: {type(exc).__name__}: {first} (run with --debug for the traceback)",
            err=True,
        )
        sys.exit(4)
