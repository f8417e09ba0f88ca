"""Atomic file output, the one implementation: a temp file (or directory) beside the target, fsync,
then rename (and fsync the directory, so the rename itself survives a power cut), so a reader never
sees half a file and an interrupted run leaves nothing behind.

A directory replaces an older one by an atomic exchange where the kernel offers it (Linux renameat2
RENAME_EXCHANGE): the target never goes missing, and the old content ends up in the temp directory,
which is then removed. Elsewhere two renames, through a `.old-<name>-<pid>` sibling; leftovers of runs
that died between them are swept by the next replace of that name."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to a temp file in the same directory, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: str | Path) -> None:
    """fsync a directory, so that a rename into it is durable (best effort: not every OS allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a finished temp dir into place, replacing an older one of the same name: an atomic
    exchange where the kernel has one (the target never goes missing), else two renames."""
    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    _sweep_old(final_dir)
    if final_dir.exists() and _exchange(tmp_dir, final_dir):
        shutil.rmtree(tmp_dir, ignore_errors=True)  # now the old content
        fsync_dir(final_dir.parent)
        return
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f".old-{final_dir.name}-{os.getpid()}")
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    fsync_dir(final_dir.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the libc,
    kernel or file system does not offer it (the caller falls back to two renames)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _sweep_old(final_dir: Path) -> None:
    """Remove `.old-<name>-<pid>` siblings left by replaces whose process died between their renames."""
    from edgekit.lifecycle import alive

    for old in final_dir.parent.glob(f".old-{final_dir.name}-*"):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def make_dirs(path: Path) -> list[Path]:
    """mkdir -p that returns the directories it created, outermost first (for `remove_empty`)."""
    missing = []
    for parent in [path, *path.parents]:
        if parent.exists():
            break
        missing.append(parent)
    path.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def remove_empty(created: list[Path]) -> None:
    """Undo `make_dirs`: remove the directories it created, innermost first, while they are empty."""
    for directory in reversed(created):
        try:
            directory.rmdir()
        except OSError:
            return  # not empty (someone else wrote there) or already gone: leave it and its parents


@contextlib.contextmanager
def staged_dir(final_dir: Path, prefix: str = ".tmp-") -> Iterator[Path]:
    """A private temp directory beside `final_dir`, renamed into place when the block succeeds and
    removed when it raises (KeyboardInterrupt and SystemExit included); parent directories this call
    created are removed again too, so a refused export leaves no empty output directory behind."""
    created = make_dirs(final_dir.parent)
    tmp: Path | None = None
    done = False
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}{final_dir.name}-", dir=final_dir.parent))
        yield tmp
        replace_dir(tmp, final_dir)
        done = True
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            remove_empty(created)


def safe_name(name: str) -> str:
    """A device or artifact name as one safe path component."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "device"
