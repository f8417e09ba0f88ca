"""The content cache: keyed directories under `$EDGEKIT_CACHE_DIR/<kind>/` (default ~/.cache/edgekit).

An entry is a directory named by a key derived from content (model sha256, options, versions) and
holding a `meta.json`. It is written whole or not at all: files go into a temp sibling that is renamed
into place (`edgekit.fsio.replace_dir`), so a reader never sees half an entry, a crash leaves only a
`.tmp-*` directory that the next store ignores, and two processes storing the same key at once both
succeed: the later store's entry replaces the earlier's (the same key is the same content, so either is
right), atomically where the kernel can exchange directories. Prepared models (`edgekit.ingest`) live here; so can any
converter output worth keeping between runs (onnx2tf's is the next user).

No heavy imports here: the cache is usable from modules that must not load onnx or numpy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from edgekit.fsio import replace_dir, write_json_atomic

log = logging.getLogger(__name__)

CACHE_ENV = "EDGEKIT_CACHE_DIR"
META = "meta.json"


def cache_root(kind: str = "prepared") -> Path:
    """`<EDGEKIT_CACHE_DIR or ~/.cache/edgekit>/<kind>`: prepared models, onnx2tf conversions, ..."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "edgekit"
    return base / kind


def digest(value: Any, length: int = 24) -> str:
    """A short stable hash of a JSON-able value (dict keys sorted): the way cache keys are made."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


class ContentCache:
    """One kind of cached output (`prepared`, `onnx2tf`, ...): `lookup` a key, `store` a new entry."""

    def __init__(self, kind: str, root: Path | None = None) -> None:
        self.kind = kind
        self.root = root if root is not None else cache_root(kind)

    def path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"bad cache key {key!r}")
        return self.root / key

    def lookup(self, key: str) -> tuple[Path, dict[str, Any]] | None:
        """(entry directory, its meta) for a complete entry, else None (missing or unreadable)."""
        entry = self.path(key)
        meta = read_meta(entry)
        if meta is None:
            return None
        from edgekit.cache_policy import touch

        touch(entry)  # used now: least-recently-used eviction keeps it
        return entry, meta

    def entries(self, prefix: str = "") -> Iterator[tuple[Path, dict[str, Any]]]:
        """Complete entries whose key starts with `prefix`, sorted by key; temp dirs are skipped."""
        if not self.root.is_dir():
            return
        for entry in sorted(self.root.glob(f"{prefix}*")):
            if entry.name.startswith("."):
                continue
            meta = read_meta(entry)
            if meta is not None:
                yield entry, meta

    @contextlib.contextmanager
    def store(self, key: str, meta: Mapping[str, Any]) -> Iterator[Path]:
        """Write an entry: the block fills the yielded temp directory, then `meta` is written and the
        directory renamed to the key's path, replacing an older entry. Raising in the block stores
        nothing. If another process stored the same key meanwhile, this entry replaces it (or, when
        that replace fails, the other's complete entry is kept)."""
        final = self.path(key)
        self.root.mkdir(parents=True, exist_ok=True)
        # the pid in the name: edgekit.cache_policy sweeps the folder once that process is gone
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-{os.getpid()}-", dir=self.root))
        try:
            yield tmp
            write_json_atomic(tmp / META, dict(meta))
            try:
                replace_dir(tmp, final)
            except OSError:
                if read_meta(final) is None:
                    raise
                log.debug("cache entry %s was stored by another process meanwhile", final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        from edgekit.cache_policy import after_store

        after_store(final)  # the cache's bound (EDGEKIT_CACHE_MAX_MB): least recently used entries go

    def remove(self, key: str) -> None:
        shutil.rmtree(self.path(key), ignore_errors=True)


def read_meta(entry: Path) -> dict[str, Any] | None:
    """An entry's meta.json as a dict, or None when absent or unreadable."""
    try:
        meta = json.loads((entry / META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None
