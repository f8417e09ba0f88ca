"""What edgekit stores, it bounds: the entries under `$EDGEKIT_CACHE_DIR` (default ~/.cache/edgekit) -
prepared models, onnx2tf conversions, the release store and its results, and the local device's work
directory (artifacts uploaded to it, run folders) - listed, sized, pruned to a size or an age, and held
under a bound after every store by evicting the least recently used entries (each eviction logged).

The bound is EDGEKIT_CACHE_MAX_MB (default 5120 MB; 0 turns it off). "Used" is the entry's meta.json
modification time, which a cache hit refreshes (`touch`), else the entry's own. `.tmp-*` folders of
killed runs (their pid, where the name holds one, is gone; else older than a day) are swept first.
Nothing heavy is imported here.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgekit.lifecycle import alive

log = logging.getLogger(__name__)

MAX_ENV = "EDGEKIT_CACHE_MAX_MB"
DEFAULT_MAX_MB = 5120.0
META = "meta.json"
STALE_TMP_S = 24 * 3600.0  # a .tmp-* folder without a pid in its name counts as abandoned after this
#: folders of the cache root whose children are entries; `artifacts` is the local device's work dir
#: (artifacts uploaded for benches; its `runs/` folders are removed by each job itself)
KINDS = ("prepared", "onnx2tf", "release", "artifacts")


@dataclass
class Entry:
    kind: str
    path: Path
    bytes: int
    used: float  # seconds since the epoch

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "path": str(self.path), "bytes": self.bytes, "last_used": self.used}


def base_dir() -> Path:
    root = os.environ.get("EDGEKIT_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "edgekit"


def max_bytes() -> int | None:
    """The bound from EDGEKIT_CACHE_MAX_MB (None when 0 or negative: no bound)."""
    text = os.environ.get(MAX_ENV, "").strip()
    try:
        value = float(text) if text else DEFAULT_MAX_MB
    except ValueError:
        log.warning("%s=%r is not a number of MB; using %g", MAX_ENV, text, DEFAULT_MAX_MB)
        value = DEFAULT_MAX_MB
    return int(value * 1024 * 1024) if value > 0 else None


def size_of(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).lstat().st_size
            except OSError:
                continue
    return total


def last_used(path: Path) -> float:
    for candidate in (path / META, path):
        try:
            return candidate.stat().st_mtime
        except OSError:
            continue
    return 0.0


def touch(entry: Path) -> None:
    """Mark an entry used now (a cache hit), so that LRU eviction keeps it."""
    try:
        os.utime(entry / META if (entry / META).is_file() else entry)
    except OSError:
        pass


def entries(root: Path | None = None, kinds: Sequence[str] = KINDS) -> list[Entry]:
    """Every entry under the cache root, least recently used first."""
    base = root or base_dir()
    out = []
    for kind in kinds:
        folder = base / kind
        if not folder.is_dir():
            continue
        children = list(folder.iterdir())
        if kind == "release" and (folder / "results").is_dir():  # results/<key>.json: one entry each
            children = [c for c in children if c.name != "results"] + list((folder / "results").iterdir())
        for child in children:
            if child.name.startswith("."):
                continue  # temp folders: sweep_tmp's
            out.append(Entry(kind, child, size_of(child), last_used(child)))
    return sorted(out, key=lambda e: e.used)


def sweep_tmp(root: Path | None = None, now: float | None = None) -> list[Path]:
    """Remove `.tmp-*` folders of killed runs under every kind (see the module docstring)."""
    base = root or base_dir()
    now = time.time() if now is None else now
    removed = []
    for kind in KINDS:
        folder = base / kind
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".tmp-*"):
            pid = _pid_in(tmp.name)
            if pid is not None:
                if alive(pid):
                    continue
            elif now - last_used(tmp) < STALE_TMP_S:
                continue  # maybe a live run's: no pid to ask
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    if removed:
        log.info("removed %d temp folder(s) of killed runs from the cache", len(removed))
    return removed


def _pid_in(name: str) -> int | None:
    """The pid of `.tmp-<key>-<pid>-<random>` (ContentCache and the release store name them so)."""
    parts = name.split("-")
    for part in parts[2:-1]:
        if part.isdigit():
            return int(part)
    return None


def remove(entry: Entry) -> None:
    if entry.path.is_dir() and not entry.path.is_symlink():
        shutil.rmtree(entry.path, ignore_errors=True)
    else:
        entry.path.unlink(missing_ok=True)


def prune(
    max_total: int | None = None,
    max_age_s: float | None = None,
    keep: Iterable[Path] = (),
    root: Path | None = None,
    now: float | None = None,
) -> list[Entry]:
    """Evict entries older than `max_age_s`, then least recently used ones until the total is at most
    `max_total` (never those in `keep`: what was just stored). Returns what was evicted, each logged."""
    now = time.time() if now is None else now
    sweep_tmp(root, now)
    kept = {Path(p).resolve() for p in keep}
    listed = entries(root)
    evicted: list[Entry] = []
    for entry in listed:
        if max_age_s is not None and now - entry.used > max_age_s and entry.path.resolve() not in kept:
            evicted.append(entry)
    total = sum(e.bytes for e in listed if e not in evicted)
    if max_total is not None:
        for entry in listed:  # least recently used first
            if total <= max_total:
                break
            if entry in evicted or entry.path.resolve() in kept:
                continue
            evicted.append(entry)
            total -= entry.bytes
    for entry in evicted:
        remove(entry)
        log.warning(
            "cache: evicted %s %s (%.1f MB, last used %s)",
            entry.kind,
            entry.path.name,
            entry.bytes / 1048576,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.used)),
        )
    return evicted


def after_store(stored: Path) -> list[Entry]:
    """Hold the cache under its bound after a store (the entry just stored is kept)."""
    bound = max_bytes()
    if bound is None:
        return []
    try:
        evicted = prune(bound, keep=[stored])
    except OSError as exc:  # a bound we could not enforce is not the store's failure
        log.warning("cache: could not enforce the %s bound: %s", MAX_ENV, exc)
        return []
    if evicted:
        log.warning(
            "cache over its %.0f MB bound (%s): evicted %d least recently used entr(ies), %.1f MB",
            bound / 1048576,
            MAX_ENV,
            len(evicted),
            sum(e.bytes for e in evicted) / 1048576,
        )
    return evicted


def clean(root: Path | None = None, kinds: Sequence[str] = KINDS) -> list[Entry]:
    """Remove every entry (and temp folder) of these kinds."""
    listed = entries(root, kinds)
    for entry in listed:
        remove(entry)
    base = root or base_dir()
    for kind in kinds:
        for tmp in (base / kind).glob(".tmp-*") if (base / kind).is_dir() else []:
            if _pid_in(tmp.name) is None or not alive(_pid_in(tmp.name) or 0):
                shutil.rmtree(tmp, ignore_errors=True)
    return listed
