"""`edgekit cache`: what edgekit keeps under $EDGEKIT_CACHE_DIR (edgekit.cache_policy), listed, sized,
cleaned and pruned. The record is plain JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit import cache_policy
from edgekit.errors import BadInput


@dataclass
class CacheRecord:
    root: str
    entries: list[dict[str, Any]] = field(default_factory=list)  # what is there now, LRU first
    removed: list[dict[str, Any]] = field(default_factory=list)  # what this call removed
    bound_bytes: int | None = None

    @property
    def total_bytes(self) -> int:
        return sum(int(e["bytes"]) for e in self.entries)

    def by_kind(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for entry in self.entries:
            row = out.setdefault(str(entry["kind"]), {"entries": 0, "bytes": 0})
            row["entries"] += 1
            row["bytes"] += int(entry["bytes"])
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "total_bytes": self.total_bytes,
            "bound_bytes": self.bound_bytes,
            "kinds": self.by_kind(),
            "entries": self.entries,
            "removed": self.removed,
        }


def _kinds(kinds: Sequence[str]) -> list[str]:
    bad = [k for k in kinds if k not in cache_policy.KINDS]
    if bad:
        raise BadInput(f"unknown cache kind '{bad[0]}'; choose from {', '.join(cache_policy.KINDS)}")
    return list(kinds) or list(cache_policy.KINDS)


def _record(removed: Sequence[cache_policy.Entry] = ()) -> CacheRecord:
    root = cache_policy.base_dir()
    return CacheRecord(
        str(root),
        [e.to_json() for e in cache_policy.entries(root)],
        [e.to_json() for e in removed],
        cache_policy.max_bytes(),
    )


def cache_list() -> CacheRecord:
    return _record()


def cache_clean(kinds: Sequence[str] = ()) -> CacheRecord:
    return _record(cache_policy.clean(None, _kinds(kinds)))


def cache_prune(max_mb: float | None = None, max_age_days: float | None = None) -> CacheRecord:
    """Evict entries older than `max_age_days`, then LRU ones down to `max_mb` (default: the bound)."""
    if max_mb is not None and max_mb < 0 or max_age_days is not None and max_age_days < 0:
        raise BadInput("--max-mb and --max-age take numbers >= 0")
    limit = int(max_mb * 1024 * 1024) if max_mb is not None else None
    if limit is None and max_age_days is None:
        limit = cache_policy.max_bytes()
    age = max_age_days * 86400.0 if max_age_days is not None else None
    return _record(cache_policy.prune(limit, age))


def cache_dir() -> Path:
    return cache_policy.base_dir()
