"""pipeline.json: the description of a split directory, read by export per shard and by the pipeline
bench. Written by edgekit.split.split (every key: `describe` in plan_record.py)."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from edgekit.errors import BadInput

PIPELINE = "pipeline.json"
SCHEMA = 1


def is_pipeline_dir(path: str | Path) -> bool:
    return (Path(path).expanduser() / PIPELINE).is_file()


def read(directory: str | Path) -> dict[str, Any]:
    """pipeline.json of a split directory, checked enough that later steps can trust its shape."""
    directory = Path(directory).expanduser()
    path = directory / PIPELINE
    if not path.is_file():
        raise BadInput(f"{directory} is not a split directory (no {PIPELINE}); make one with `edgekit split`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise BadInput(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("shards"), list):
        raise BadInput(f"{path}: not an edgekit pipeline description (schema {SCHEMA})")
    for shard in data["shards"]:
        for item in shard.get("files", []):
            rel = PurePosixPath(str(item.get("path", "")))
            if rel.is_absolute() or ".." in rel.parts or not str(rel):
                raise BadInput(f"{path}: shard file path '{rel}' must be relative, inside the directory")
            if not (directory / str(rel)).is_file():
                raise BadInput(f"{directory}: shard file '{rel}' listed in {PIPELINE} is missing")
    return data
