"""`--check-reproducible`: build every released artifact a second time, bypassing the cache, and
compare the two builds file by file; release.json then says which files are reproducible and, for the
others, why not."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekit.release.build import ARTIFACT
from edgekit.release.cache import Store
from edgekit.release.dist import compare_builds
from edgekit.release.matrix import Item


def check(
    items: list[Item],
    artifact_dirs: dict[str, Path],
    store: Store,
    executor: Any,
    scratch: Path,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    rebuild = [i for i in items if i.name in artifact_dirs]
    progress(f"rebuilding {len(rebuild)} artifact(s) to check reproducibility")
    chains: dict[tuple[str, str], list[Any]] = {}
    for item in rebuild:
        task = dataclasses.replace(item.task, export=True, artifact_dir=None, val=None, verify_key=None)
        work = scratch / "repro" / item.task.key
        work.mkdir(parents=True)
        chains.setdefault((item.model.sha256, item.backend), []).append((task, work))
    results: dict[str, Any] = {}
    for task, work, result in executor.run(list(chains.values())):
        if result["status"] != "ok":
            results[task.name] = {"reproducible": None, "error": result.get("error")}
        else:
            results[task.name] = compare_builds(store.path(task.key) / ARTIFACT, work / ARTIFACT)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "checked": True,
        "reproducible": [n for n, r in sorted(results.items()) if r.get("reproducible")],
        "not_reproducible": {
            n: r.get("differs") or r.get("error")
            for n, r in sorted(results.items())
            if not r.get("reproducible")
        },
        "artifacts": results,
    }
