"""What a report is made of: benchmark records (results.jsonl), artifact manifests, release builds.

`edgekit report` takes results.jsonl files and directories: a release (`release.json` with its
`results.jsonl` and artifacts), one artifact directory (`manifest.json`), a folder of artifact
directories (an export `-o` folder), or a folder holding a `results.jsonl`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.digest import file_sha256
from edgekit.errors import BadInput

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
RESULTS = "results.jsonl"
RELEASE = "release.json"


@dataclass
class Build:
    """An artifact as built (or not): one export of a model for a target and precision."""

    model: str
    target: str
    precision: str
    backend: str = ""
    status: str = "ok"  # ok | failed | skipped (does not apply to this model)
    stage: str = ""  # export | verify (where a failure happened)
    error: str | None = None
    dir: Path | None = None
    sha256: str | None = None  # of manifest.json
    manifest: dict[str, Any] | None = None
    note: str | None = None  # e.g. why a release left it out
    note_stage: str | None = "gate"  # what the note is about (None: a plain remark)


@dataclass
class Inputs:
    records: list[dict[str, Any]] = field(default_factory=list)
    builds: list[Build] = field(default_factory=list)
    model_facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # source sha256 -> facts
    sources: list[str] = field(default_factory=list)

    def extend(self, other: Inputs) -> None:
        self.records += other.records
        self.builds += other.builds
        self.model_facts.update(other.model_facts)
        self.sources += other.sources


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a results.jsonl; a torn last line (a killed run) is skipped with a warning."""
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            log.warning("%s:%d: skipping an unreadable line (interrupted write?)", path, number)
            continue
        if not isinstance(value, dict) or "artifact" not in value or "device" not in value:
            raise BadInput(f"{path}:{number}: not an edgekit benchmark record (no artifact/device)")
        records.append(value)
    return records


def read_manifest_file(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def build_from_dir(directory: Path) -> Build | None:
    manifest = read_manifest_file(directory)
    if manifest is None or "target" not in manifest:
        return None
    return Build(
        model=source_name(manifest),
        target=str(manifest["target"]),
        precision=str(manifest.get("precision", "")),
        backend=str(manifest.get("backend", "")),
        dir=directory,
        sha256=file_sha256(directory / MANIFEST),
        manifest=manifest,
    )


def source_name(manifest: Mapping[str, Any]) -> str:
    source = manifest.get("source")
    if isinstance(source, dict) and source.get("name"):
        return str(source["name"])
    return str(manifest.get("model") or manifest.get("name") or "model")


def load_release(root: Path) -> Inputs:
    try:
        release = json.loads((root / RELEASE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"{root / RELEASE}: unreadable ({exc})") from exc
    out = Inputs(sources=[str(root)])
    by_sha: dict[str, Path] = {}
    model_sha = {m.get("name"): m.get("sha256") for m in release.get("models", [])}
    for entry in release.get("artifacts", []):
        directory = root / entry["dir"] if entry.get("dir") else None
        manifest = read_manifest_file(directory) if directory else None
        if manifest is None and entry.get("status") == "excluded":
            # left out of the release by a gate: what release.json kept of its manifest
            manifest = {
                "name": entry.get("name"),
                "backend": entry.get("backend"),
                "size": entry.get("size") or {},
                "effective_precision": entry.get("effective_precision"),
                "fidelity": entry.get("fidelity_report"),
                "source": {"name": entry.get("model"), "sha256": model_sha.get(entry.get("model"))},
            }
        build = Build(
            model=entry.get("model", ""),
            target=entry.get("target", ""),
            precision=entry.get("precision", ""),
            backend=entry.get("backend", ""),
            status="failed" if entry.get("status") == "failed" else "ok",
            stage=entry.get("stage") or "",
            error=entry.get("error"),
            dir=directory,
            sha256=entry.get("manifest_sha256"),
            manifest=manifest,
        )
        if entry.get("status") == "excluded":
            build.note = excluded_note(entry.get("gates", []))
        out.builds.append(build)
        if build.sha256:
            by_sha[build.sha256] = directory or root
    for facts in release.get("models", []):
        if facts.get("sha256"):
            out.model_facts[facts["sha256"]] = facts
    if (root / RESULTS).is_file():
        for record in read_jsonl(root / RESULTS):
            sha = record["artifact"].get("sha256")
            if sha in by_sha:  # the bench ran on the build's staging copy: point at the dist copy
                record["artifact"]["dir"] = str(by_sha[sha])
            else:
                record["artifact"]["dir"] = str(root / record["artifact"].get("dir", ""))
            out.records.append(record)
    return out


def excluded_note(checks: list[dict[str, Any]]) -> str:
    """'left out of the release (failed: fidelity; max_p90_ms@local: p90 61 ms > 50 ms)': the
    fidelity and export details are the row's own reason already."""
    failed = [
        c["gate"] if c["gate"] in ("export", "fidelity") else f"{c['gate']}: {c['detail']}"
        for c in checks
        if not c["passed"]
    ]
    return f"left out of the release (failed: {'; '.join(failed)})"


def load_path(path: Path) -> Inputs:
    if not path.exists():
        raise BadInput(f"results not found: {path}")
    if path.is_file():
        if path.name == RELEASE:
            return load_release(path.parent)
        return Inputs(records=read_jsonl(path), sources=[str(path)])
    if (path / RELEASE).is_file():
        return load_release(path)
    out = Inputs(sources=[str(path)])
    build = build_from_dir(path)
    if build is not None:
        out.builds.append(build)
        return out
    if (path / RESULTS).is_file():
        out.records += read_jsonl(path / RESULTS)
    for child in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        build = build_from_dir(child)
        if build is not None:
            out.builds.append(build)
    if not out.records and not out.builds:
        raise BadInput(
            f"{path}: no results.jsonl, release.json or artifact manifest.json found there; "
            "pass a results.jsonl, a release or artifact directory"
        )
    return out


def load(paths: Iterable[str | Path]) -> Inputs:
    out = Inputs()
    for raw in paths:
        out.extend(load_path(Path(raw).expanduser()))
    if not out.records and not out.builds:
        raise BadInput("no results to report: the files hold no records")
    return out
