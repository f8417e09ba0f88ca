"""The artifact record: `manifest.json` next to the artifact files, written atomically."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekit.digest import file_sha256
from edgekit.errors import BadInput
from edgekit.fsio import replace_dir, write_json_atomic  # noqa: F401 - re-exported for callers

MANIFEST = "manifest.json"
SCHEMA = 1


def file_records(
    directory: Path, entry: str, is_model: Callable[[str], bool] | None = None
) -> list[dict[str, Any]]:
    """Every file under `directory` (manifest.json aside) with sha256, bytes and role: "entry", "model"
    (model bytes, as the backend's `is_model(relative path)` says: `Backend.file_records`) or "aux"."""
    records = []
    for file in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        rel = file.relative_to(directory).as_posix()
        role = "entry" if rel == entry else ("model" if is_model is not None and is_model(rel) else "aux")
        records.append({"path": rel, "sha256": file_sha256(file), "bytes": file.stat().st_size, "role": role})
    return records


def read_manifest(artifact_dir: str | Path) -> dict[str, Any]:
    artifact_dir = Path(artifact_dir).expanduser()
    path = artifact_dir / MANIFEST
    if not artifact_dir.is_dir():
        raise BadInput(f"artifact directory not found: {artifact_dir}")
    if not path.exists():
        raise BadInput(f"{artifact_dir} is not an edgekit artifact (no {MANIFEST})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise BadInput(f"{path}: unreadable manifest ({exc})") from exc
    for key in ("backend", "target", "precision", "entry", "inputs", "outputs"):
        if key not in data:
            raise BadInput(f"{path}: manifest lacks '{key}'")
    return data


def manifest_sha256(artifact_dir: Path) -> str:
    return file_sha256(artifact_dir / MANIFEST)


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def now() -> str:
    """The clock of run records (bench results, device builds): UTC, ISO 8601 with its offset."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
