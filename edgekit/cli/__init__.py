"""The `edgekit` command: parses arguments into an `edgekit.api` request, calls the verb and renders
its record (`edgekit.cli.render`, or the record's JSON with --json). Only the CLI package prints:
this module holds the group and the entry point; the commands live in `exporting` (export, verify),
`fleet` (targets, inspect, devices, bench, demo) and `releasing` (report, release, split), their shared
options in `options`.

Exit codes (DESIGN.md): 0 ok, 1 a gate failed, 2 bad usage or input, 3 missing optional dependency,
unreachable device or missing hardware, 4 internal error. Errors are one line; `--debug` adds the
traceback. Importing this module loads neither onnx nor numpy nor any backend, so `--help` is fast.
"""

from __future__ import annotations

import sys
import traceback

import click

from edgekit import __version__, lifecycle
from edgekit.cli.caching import cache
from edgekit.cli.exporting import export, verify
from edgekit.cli.fleet import bench, demo, devices, inspect, targets
from edgekit.cli.options import CliContext
from edgekit.cli.releasing import release, report, split
from edgekit.errors import BadInput, EdgekitError, GateFailed


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="edgekit")
def cli() -> None:
    """edgekit: export one ONNX model to many edge backends, verify every artifact against FP32, and
    benchmark it on your own devices.

    \b
    Exit codes: 0 ok, 1 gate failed, 2 bad input, 3 missing dependency / device / hardware, 4 internal error.
    """


for _command in (targets, inspect, export, verify, devices, bench, demo, report, release, split, cache):
    cli.add_command(_command)


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
    from edgekit.tempdirs import run_dir

    with run_dir():  # one temp directory per run: removed after it, swept after a killed one
        code = run(argv)
    sys.exit(code)
