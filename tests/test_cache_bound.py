"""Issue 19: what edgekit stores, it bounds. A store that would take the cache over its bound
(EDGEKIT_CACHE_MAX_MB) evicts the least recently used entries and says so; `edgekit cache` lists,
sizes, cleans and prunes; `.tmp-*` folders of killed runs are swept."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgekit.cache import ContentCache

MB = 1024 * 1024


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(root))
    return root


def _store(cache: ContentCache, key: str, mb: float, used: float | None = None) -> Path:
    with cache.store(key, {"key": key}) as tmp:
        (tmp / "blob").write_bytes(b"\0" * int(mb * MB))
    entry = cache.path(key)
    if used is not None:
        os.utime(entry / "meta.json", (used, used))
    return entry


def test_a_store_over_the_bound_evicts_the_least_recently_used_and_says_so(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("EDGEKIT_CACHE_MAX_MB", "3.5")
    prepared, onnx2tf = ContentCache("prepared"), ContentCache("onnx2tf")
    now = time.time()
    _store(prepared, "a", 1, used=now - 400)
    _store(onnx2tf, "b", 1, used=now - 300)
    _store(prepared, "c", 1, used=now - 200)
    assert prepared.lookup("a") is not None  # a hit: "a" is now the most recently used
    with caplog.at_level(logging.WARNING, logger="edgekit.cache_policy"):
        _store(prepared, "d", 1)  # 4 MB > 3.5 MB: the least recently used ("b") goes
    assert onnx2tf.lookup("b") is None
    assert all(prepared.lookup(k) is not None for k in ("a", "c", "d"))
    assert any("evicted onnx2tf b" in r.getMessage() for r in caplog.records), caplog.text
    assert any("over its 4 MB bound" in r.getMessage() or "bound" in r.getMessage() for r in caplog.records)


def test_the_entry_just_stored_is_kept_even_alone_over_the_bound(cache_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEKIT_CACHE_MAX_MB", "1")
    cache = ContentCache("prepared")
    _store(cache, "old", 0.5)
    _store(cache, "big", 2)
    assert cache.lookup("big") is not None and cache.lookup("old") is None


def test_tmp_folders_of_killed_runs_are_swept(cache_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEKIT_CACHE_MAX_MB", "100")
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)  # fmt: skip
    root = cache_dir / "prepared"
    (root / f".tmp-k1-{dead}-abc").mkdir(parents=True)
    (root / f".tmp-k2-{os.getpid()}-abc").mkdir()
    _store(ContentCache("prepared"), "k3", 0.1)
    names = sorted(p.name for p in root.iterdir())
    assert f".tmp-k1-{dead}-abc" not in names and f".tmp-k2-{os.getpid()}-abc" in names


def test_cache_cli_list_size_prune_clean(cache_dir: Path, monkeypatch, run_cli) -> None:
    monkeypatch.setenv("EDGEKIT_CACHE_MAX_MB", "0")  # no bound while filling
    prepared = ContentCache("prepared")
    now = time.time()
    _store(prepared, "old", 1, used=now - 10 * 86400)
    _store(prepared, "mid", 1, used=now - 100)
    _store(prepared, "new", 1)
    code, out, err = run_cli("cache", "list", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert [Path(e["path"]).name for e in listed["entries"]] == ["old", "mid", "new"]
    assert listed["total_bytes"] >= 3 * MB and listed["bound_bytes"] is None
    code, out, _ = run_cli("cache", "size")
    assert code == 0 and "prepared: 3 entr(ies)" in out
    code, out, _ = run_cli("cache", "prune", "--max-age", "5", "--json")
    assert [Path(e["path"]).name for e in json.loads(out)["removed"]] == ["old"]
    code, out, _ = run_cli("cache", "prune", "--max-mb", "1.5", "--json")
    assert [Path(e["path"]).name for e in json.loads(out)["removed"]] == ["mid"]
    code, out, _ = run_cli("cache", "clean", "--json")
    assert json.loads(out)["entries"] == [] and not any((cache_dir / "prepared").iterdir())
    code, _, err = run_cli("cache", "clean", "--kind", "nope")
    assert code == 2 and "unknown cache kind" in err


def test_device_work_directory_is_held_under_its_bound(tmp_path: Path, monkeypatch) -> None:
    """Three artifacts benched one after another on a device whose work directory may hold ~one of them:
    each job removes the least recently used earlier artifact (never its own) and its record says so."""
    from tests.report_helpers import artifact, bench

    monkeypatch.setenv("EDGEKIT_DEVICE_WORKDIR_MAX_MB", "0.3")
    arts = [artifact(tmp_path / f"m{i}.x86-cpu.fp32", width=160, depth=3) for i in range(3)]
    work = tmp_path / "work"
    records = []
    for art in arts:
        records += bench([art], tmp_path / "r.jsonl", work, iterations=10)
    assert all(r["status"] == "ok" for r in records)
    left = sorted(p.name for p in (work / "artifacts").iterdir())
    assert left == [records[-1]["artifact"]["sha256"][:16]]
    assert any("work directory over its" in w and "removed artifacts/" in w for w in records[-1]["warnings"])
