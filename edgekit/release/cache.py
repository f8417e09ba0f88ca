"""The release build cache, content-addressed: an artifact's key hashes everything its bytes depend on
(the model's content, the calibration set's content when the precision calibrates, the target
profile, the toolchain's versions and the options), so an unchanged input rebuilds nothing and a new
calibration set rebuilds only what calibrates. Verification and benchmark results are cached under
keys that add the validation set and gates, or the device and bench settings."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edgekit import __version__

CORE_MODULES = ("onnx", "onnxruntime", "numpy", "onnxslim")


def digest(data: Any) -> str:
    """sha256 of a JSON value with sorted keys (stable across runs and machines)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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


def cache_root() -> Path:
    from edgekit.ingest import cache_root as ingest_cache_root

    return ingest_cache_root("release")


class Store:
    """`<root>/<key[:2]>/<key>/`: one finished entry per key, written in a temp sibling and renamed
    into place, so a killed build leaves at most a `.tmp-` folder (removed by the next run when its
    process is gone)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def has(self, key: str) -> bool:
        return (self.path(key) / "entry.json").is_file()

    def staging(self, key: str) -> Path:
        folder = self.root / key[:2]
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-{key[:16]}-{os.getpid()}-{os.urandom(4).hex()}"
        tmp.mkdir()
        return tmp

    def commit(self, key: str, staged: Path, entry: Mapping[str, Any]) -> Path:
        from edgekit.fsio import replace_dir, write_json_atomic

        write_json_atomic(staged / "entry.json", dict(entry))
        final = self.path(key)
        replace_dir(staged, final)
        return final

    def entry(self, key: str) -> dict[str, Any]:
        return json.loads((self.path(key) / "entry.json").read_text(encoding="utf-8"))

    def put_json(self, key: str, data: Mapping[str, Any]) -> None:
        from edgekit.fsio import write_json_atomic

        write_json_atomic(self.root / "results" / key[:2] / f"{key}.json", dict(data))

    def get_json(self, key: str) -> dict[str, Any] | None:
        path = self.root / "results" / key[:2] / f"{key}.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def clean_stale(self) -> int:
        """Remove `.tmp-` folders whose process is gone (a killed build); returns how many."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for tmp in self.root.glob("*/.tmp-*"):
            parts = tmp.name.split("-")
            pid = int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else None
            if pid is not None and _alive(pid):
                continue
            shutil.rmtree(tmp, ignore_errors=True)
            removed += 1
        return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
