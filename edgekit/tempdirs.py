"""One temp directory per edgekit run, so that a killed run's temp files are found and removed.

`edgekit` (cli.main) runs each command inside `run_dir()`: a `edgekit-run-<pid>-*` directory in the
system temp directory becomes the process's temp directory (`tempfile.tempdir` and TMPDIR, so that
spawned workers, converters and onnxruntime's helpers put theirs there too). Leaving the block removes
it (Ctrl-C and SIGTERM unwind through it). A run that cannot clean up (SIGKILL, the OOM killer, a power
cut) leaves its directory behind; the next run removes every `edgekit-run-<pid>-*` whose pid is gone,
so temp directories of interrupted releases (edgekit-release-*, edgekit-int8-*, edgekit-stats-*, ...)
no longer pile up. Nothing heavy is imported here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgekit.lifecycle import alive

log = logging.getLogger(__name__)

PREFIX = "edgekit-run-"


def sweep(root: Path | None = None) -> list[Path]:
    """Remove the run directories under `root` (default: the temp directory) of processes that are gone."""
    removed = []
    for directory in Path(root or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        pid = directory.name[len(PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not alive(int(pid)) and directory.is_dir():
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    if removed:
        log.info("removed %d temp director(ies) left by killed edgekit runs", len(removed))
    return removed


@contextlib.contextmanager
def run_dir() -> Iterator[Path]:
    """This process's temp directory for the block (see the module docstring); removed afterwards."""
    base = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        sweep(base)
    directory = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))
    saved_tempdir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = str(directory), str(directory)
    try:
        yield directory
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(directory, ignore_errors=True)
