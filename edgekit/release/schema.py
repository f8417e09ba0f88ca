"""edgekit.toml's schema (tables, keys, types) and the file:line reader its checks report through."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgekit.errors import BadInput, suggest

# table -> key -> accepted types (a tuple), for the checks and the suggestions
SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {
    "release": {
        "name": (str,),
        "version": (str,),
        "out": (str,),
        "targets_dir": (str, list),
        "jobs": (int,),
        "check_reproducible": (bool,),
    },
    "model": {
        "path": (str,),
        "calib": (str,),
        "val": (str,),
        "input_shape": (list,),
        "calib_samples": (int,),
        "val_samples": (int,),
        "simplify": (bool,),
        "task": (str,),  # what the model is for (edgekit.fidelity.TASKS); default: inferred
        "metric": (str,),  # "module:function": the user's metric (gate min_metric)
    },
    "target": {"name": (str,), "precisions": (list, str), "options": (dict,)},
    "gates": {
        "min_cosine": (int, float),
        "max_accuracy_drop": (int, float),
        "min_snr_db": (int, float),
        "min_top1_agreement": (int, float),
        "min_f1": (int, float),
        "min_mask_iou": (int, float),
        "min_embedding_cosine": (int, float),
        "min_metric": (int, float),
        "min_slice_cosine": (int, float),
        "max_kl": (int, float),
    },
    "bench": {
        "devices": (list,),
        "devices_file": (str,),
        "iterations": (int,),
        "warmup": (int,),
        "repeats": (int,),
        "threads": (int,),
        "min_duration_s": (int, float),
        "timeout_s": (int, float),
        "max_p50_ms": (dict,),
        "max_p90_ms": (dict,),
        "max_p99_ms": (dict,),
    },
    "baseline": {
        "path": (str,),
        "max_slowdown": (int, float),
        "confidence": (float,),
        "max_accuracy_loss": (int, float),
        "max_cosine_loss": (int, float),
    },
}
ARRAY_TABLES = ("model", "target")
# ExportOptions fields a [[target]] options table may set; other keys are backend options (--option)
EXPORT_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "calib_method": (str,),
    "dynamic_int8": (bool,),
    "io_dtype": (str,),
    "ignore": (list,),
    "threads": (int,),
}
TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


class Lines:
    """Line numbers of table headers and keys in a TOML text (for file:line in messages)."""

    def __init__(self, text: str) -> None:
        self.at: dict[tuple[Any, ...], int] = {}
        counts: dict[str, int] = {}
        current: tuple[Any, ...] = ()
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            array = re.match(r"^\[\[\s*([A-Za-z0-9_.\"-]+)\s*\]\]", line)
            table = re.match(r"^\[\s*([A-Za-z0-9_.\"-]+)\s*\]", line)
            if array:
                name = array.group(1).strip('"')
                counts[name] = counts.get(name, 0) + 1
                current = (name, counts[name] - 1)
                self.at.setdefault(current, number)
            elif table:
                parts = table.group(1).split(".")
                head = parts[0].strip('"')
                if head in counts and len(parts) > 1:  # [target.options] extends the last [[target]]
                    current = (head, counts[head] - 1, *(p.strip('"') for p in parts[1:]))
                else:
                    current = tuple(p.strip('"') for p in parts)
                self.at.setdefault(current, number)
            else:
                key = re.match(r'^([A-Za-z0-9_-]+|"[^"]*")\s*[.=]', line)
                if key:
                    self.at.setdefault((*current, key.group(1).strip('"')), number)

    def line(self, *path: Any) -> int | None:
        while path:
            if path in self.at:
                return self.at[path]
            path = path[:-1]
        return None


class Reader:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.root = path.parent
        self.lines = Lines(text)

    def fail(self, message: str, *where: Any) -> BadInput:
        line = self.lines.line(*where) if where else None
        return BadInput(f"{self.path}:{line or 1}: {message}")

    def check_table(self, table: Mapping[str, Any], kind: str, where: tuple[Any, ...], label: str) -> None:
        schema = SCHEMA[kind]
        for key, value in table.items():
            if key not in schema:
                raise self.fail(
                    f"{label}: unknown key '{key}'.{suggest(key, schema)} Valid: {', '.join(schema)}",
                    *where,
                    key,
                )
            types = schema[key]
            ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
            if not ok:
                want = " or ".join(TYPE_NAMES.get(t, t.__name__) for t in types)
                raise self.fail(f"{label}: {key} must be {want}, got {value!r}", *where, key)

    def file(self, value: str, what: str, *where: Any) -> Path:
        path = Path(value).expanduser()
        path = path if path.is_absolute() else self.root / path
        if not path.exists():
            raise self.fail(f"{what} '{value}' not found ({path})", *where)
        return path
