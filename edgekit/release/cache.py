"""The release build cache, content-addressed: an artifact's key hashes everything its bytes depend on
(the model's content, the calibration set's content when the precision calibrates, the target
profile, the toolchain's versions and the options), so an unchanged input rebuilds nothing and a new
calibration set rebuilds only what calibrates. Verification and benchmark results are cached under
keys that add the validation set and gates, or the device and bench settings."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edgekit import __version__, lifecycle
from edgekit.cache import META, ContentCache
from edgekit.fsio import replace_dir, write_json_atomic

CORE_MODULES = ("onnx", "onnxruntime", "numpy", "onnxslim")


def digest(data: Any) -> str:
    """The full sha256 of a JSON value with sorted keys (edgekit.cache's key maker)."""
    from edgekit.cache import digest as cache_digest

    return cache_digest(data, 64)


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def module_versions(modules: Iterable[str]) -> dict[str, str]:
    """Installed versions of the distributions providing `modules`, without importing them (importing
    tensorflow or openvino to read a version costs seconds)."""
    out: dict[str, str] = {}
    for module in modules:
        for dist in _distributions().get(module, [module]):
            try:
                out[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
    return dict(sorted(out.items()))


def toolchain(backend_modules: Iterable[str]) -> dict[str, str]:
    versions = module_versions([*CORE_MODULES, *backend_modules])
    versions["edgekit"] = __version__
    return versions


class Store(ContentCache):
    """`$EDGEKIT_CACHE_DIR/release/<key>/` (edgekit.cache's layout: an entry is complete once its
    meta.json is there). A build fills a staging folder that its worker may take minutes over, so the
    staging is explicit here (`staging`, then `commit`) rather than one `store()` block; a killed
    build leaves a `.tmp-<key>-<pid>-` folder that the next run removes once that process is gone.
    Verification and benchmark results are small JSON files beside, under `results/`."""

    def __init__(self, root: Path | None = None) -> None:
        super().__init__("release", root)

    def has(self, key: str) -> bool:
        return self.lookup(key) is not None

    def staging(self, key: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".tmp-{key[:16]}-{os.getpid()}-", dir=self.root))

    def commit(self, key: str, staged: Path, meta: Mapping[str, Any]) -> Path:
        write_json_atomic(staged / META, dict(meta))
        replace_dir(staged, self.path(key))
        from edgekit.cache_policy import after_store

        after_store(self.path(key))  # the cache's bound: least recently used entries go
        return self.path(key)

    def put_json(self, key: str, data: Mapping[str, Any]) -> None:
        write_json_atomic(self.root / "results" / f"{key}.json", dict(data))

    def get_json(self, key: str) -> dict[str, Any] | None:
        try:
            value = json.loads((self.root / "results" / f"{key}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def clean_stale(self) -> int:
        """Remove `.tmp-` folders whose process is gone (a killed build); returns how many."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for tmp in self.root.glob(".tmp-*"):
            parts = tmp.name.split("-")
            pid = int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else None
            if pid is not None and lifecycle.alive(pid):
                continue
            shutil.rmtree(tmp, ignore_errors=True)
            removed += 1
        return removed
