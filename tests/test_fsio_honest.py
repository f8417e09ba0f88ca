"""Issue 19: fsio.replace_dir never leaves the target missing and sweeps `.old-*` leftovers of crashed
runs; write_bytes_atomic fsyncs the directory too (the rename itself is durable)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit import fsio


def _dir(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "f.txt").write_text(text)
    return path


def test_replace_dir_never_leaves_the_target_missing(tmp_path: Path, monkeypatch) -> None:
    a, b = _dir(tmp_path / "a", "a"), _dir(tmp_path / "b", "b")
    if not fsio._exchange(a, b):
        pytest.skip("this file system cannot exchange directories atomically (two renames, a window)")
    shutil.rmtree(a), shutil.rmtree(b)
    final = _dir(tmp_path / "art", "old")
    seen: list[bool] = []
    real_replace, real_rename = os.replace, os.rename

    def replace(src, dst):  # after every rename replace_dir makes, the target must be there
        real_replace(src, dst)
        seen.append(final.is_dir())

    def rename(src, dst):
        real_rename(src, dst)
        seen.append(final.is_dir())

    monkeypatch.setattr(fsio.os, "replace", replace)
    monkeypatch.setattr(fsio.os, "rename", rename)
    fsio.replace_dir(_dir(tmp_path / ".tmp-new", "new"), final)
    assert (final / "f.txt").read_text() == "new"
    assert all(seen), "the target directory was missing between two renames"
    assert [p.name for p in tmp_path.iterdir()] == ["art"]  # the old one is gone, nothing else left


def test_replace_dir_sweeps_old_leftovers_of_dead_runs(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    final = _dir(tmp_path / "art", "old")
    _dir(tmp_path / f".old-art-{dead_pid}", "crashed mid-replace")
    _dir(tmp_path / f".old-art-{os.getppid()}", "a live run's, mid-replace")
    fsio.replace_dir(_dir(tmp_path / ".tmp-new", "new"), final)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["art", f".old-art-{os.getppid()}"])


def test_write_bytes_atomic_fsyncs_the_directory(tmp_path: Path, monkeypatch) -> None:
    synced: list[bool] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(fsio.os, "fsync", fsync)
    fsio.write_bytes_atomic(tmp_path / "x.bin", b"data")
    assert (tmp_path / "x.bin").read_bytes() == b"data"
    assert synced == [False, True]  # the file, then its directory (after the rename)


def test_cache_docstring_says_what_a_concurrent_store_does() -> None:
    from edgekit import cache

    assert (
        "keeps the first" not in cache.__doc__ and "keeps the first" not in cache.ContentCache.store.__doc__
    )
