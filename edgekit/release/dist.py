"""The release folder: `<out>/<name>-<version>/` with the artifacts, release.json, SHA256SUMS (as
`sha256sum -c` reads it), the report and a reproducible .tar.gz of it all; built in a temp sibling and
renamed into place at the end, so a killed or failed release leaves no half folder."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgekit import lifecycle
from edgekit.digest import file_sha256
from edgekit.errors import BadInput

SUMS = "SHA256SUMS"
RELEASE_JSON = "release.json"
ARTIFACTS = "artifacts"
# 1980-01-01: the earliest time zip and most tools take; SOURCE_DATE_EPOCH overrides it
DEFAULT_EPOCH = 315532800

# files that differ between two builds by their nature, not by a backend's nondeterminism
BY_NATURE = {
    "manifest.json": "records the build's time, duration and the source model's path",
    "convert.log": "a converter's log: temporary paths, timestamps and timings",
    "export.log": "a converter's log: temporary paths, timestamps and timings",
    "build.log": "a build log: temporary paths, timestamps and timings",
}
RUN_FILES = {
    RELEASE_JSON: "records the release's time, cache use and measurements",
    "results.jsonl": "benchmark measurements",
    "report.html": "benchmark measurements",
    "report.md": "benchmark measurements",
    "report.json": "benchmark measurements",
}


def staging_dir(out: Path, release: str) -> Path:
    """A private temp folder beside the release's final place (same filesystem: the final rename is
    atomic), named with this process's id; folders of dead processes (killed releases) are removed."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f".tmp-{release}-*"):
        parts = stale.name[len(f".tmp-{release}-") :].split("-")
        if parts and parts[0].isdigit() and lifecycle.alive(int(parts[0])):
            continue
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".tmp-{release}-{os.getpid()}-", dir=out))


def copy_tree(src: Path, dest: Path) -> None:
    """Copy an artifact into the release with plain permissions (files 0644, folders 0755)."""
    shutil.copytree(src, dest, copy_function=shutil.copyfile)
    for root, _dirs, files in os.walk(dest):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


def file_list(root: Path, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in skip:
            continue
        out.append({"path": rel, "sha256": file_sha256(path), "bytes": path.stat().st_size})
    return out


def write_sums(root: Path, files: list[dict[str, Any]]) -> None:
    """`sha256sum -c SHA256SUMS` format: '<hex>  <path>' (text mode), one line per file, sorted."""
    for item in files:
        if "\n" in item["path"] or "\\" in item["path"]:
            raise BadInput(f"file name not representable in {SUMS}: {item['path']!r}")
    lines = "".join(f"{f['sha256']}  {f['path']}\n" for f in sorted(files, key=lambda f: f["path"]))
    (root / SUMS).write_text(lines, encoding="utf-8")
    os.chmod(root / SUMS, 0o644)


def source_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else DEFAULT_EPOCH


def write_tarball(root: Path, name: str, tar_path: Path) -> None:
    """A .tar.gz of `root` under the folder `name/`, byte-for-byte reproducible: sorted entries, one
    mtime, owner root, plain modes, a gzip header without time or file name."""
    mtime = source_epoch()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = sorted(p for p in root.rglob("*") if p != tar_path)
        for path in [root, *entries]:
            rel = path.relative_to(root).as_posix()
            info = tarfile.TarInfo(name if rel == "." else f"{name}/{rel}")
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = path.stat().st_size
                info.mode = 0o644
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
    with (
        open(tar_path, "wb") as out,
        gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz,
    ):
        gz.write(raw.getvalue())
    os.chmod(tar_path, 0o644)


def finish(stage: Path, name: str, release_json: Mapping[str, Any]) -> None:
    """release.json, SHA256SUMS and the tarball, in that order: the tarball holds SHA256SUMS, and the
    folder's SHA256SUMS adds the tarball's line."""
    import json

    (stage / RELEASE_JSON).write_text(
        json.dumps(release_json, indent=2, default=str) + "\n", encoding="utf-8"
    )
    os.chmod(stage / RELEASE_JSON, 0o644)
    files = file_list(stage)
    write_sums(stage, files)
    tar_path = stage / f"{name}.tar.gz"
    write_tarball(stage, name, tar_path)
    files.append({"path": tar_path.name, "sha256": file_sha256(tar_path), "bytes": tar_path.stat().st_size})
    write_sums(stage, files)


# ---- reproducibility -------------------------------------------------------------------------------
AUTO_NAME = re.compile(rb'name="[^"]*?_\d+"')


def explain_difference(path: str, a: Path, b: Path) -> str:
    """Why two builds of one file differ, as far as can be told from the bytes."""
    base = Path(path).name
    if base in BY_NATURE:
        return BY_NATURE[base]
    if base.endswith(".xml"):
        left, right = a.read_bytes(), b.read_bytes()
        if AUTO_NAME.sub(b'name=""', left) == AUTO_NAME.sub(b'name=""', right):
            return (
                "only auto-generated layer names differ (OpenVINO numbers the nodes its passes create "
                "with a process-wide counter, e.g. Constant_32290); the graph and weights are the same"
            )
    return "content differs: this backend's output is not deterministic for this model"


def compare_builds(first: Path, second: Path) -> dict[str, Any]:
    """Files of two builds of one artifact: which are identical and, for the others, why not."""
    names = sorted(
        {p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file()}
        | {p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file()}
    )
    same, differs = [], []
    for rel in names:
        a, b = first / rel, second / rel
        if not (a.is_file() and b.is_file()):
            differs.append({"path": rel, "why": "present in only one build"})
        elif _sha(a) == _sha(b):
            same.append(rel)
        else:
            differs.append({"path": rel, "why": explain_difference(rel, a, b)})
    model_differs = [d for d in differs if Path(d["path"]).name not in BY_NATURE]
    return {"reproducible": not model_differs, "identical": same, "differs": differs}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
