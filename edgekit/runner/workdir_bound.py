"""A device's work directory, bounded like edgekit's own cache (edgekit.cache_policy): before a job
runs, the artifacts uploaded to the device earlier (`<workdir>/artifacts/<sha>/`) and validation sets
(`<workdir>/data/`) are held under EDGEKIT_DEVICE_WORKDIR_MAX_MB (default 5120; 0: no bound) by removing
the least recently used ones (never the job's own artifact, which is marked used now). The pruning runs on
the device as one small Python helper through the transport; what it removed goes into the record's
warnings."""

from __future__ import annotations

import json
import logging
import os

from edgekit.transport import Transport

log = logging.getLogger(__name__)

MAX_ENV = "EDGEKIT_DEVICE_WORKDIR_MAX_MB"
DEFAULT_MAX_MB = 5120.0

# argv: workdir, the job's artifact folder (kept, touched), the bound in bytes
_PY_PRUNE = r"""
import json, os, shutil, sys, time
workdir, keep, bound = sys.argv[1], sys.argv[2], int(sys.argv[3])
if os.path.isdir(keep):
    os.utime(keep)
def size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total
entries = []
for sub in ("artifacts", "data"):
    folder = os.path.join(workdir, sub)
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            try:
                entries.append([os.stat(path).st_mtime, path, size(path)])
            except OSError:
                pass
entries.sort()
total = sum(e[2] for e in entries)
evicted = []
for used, path, nbytes in entries:
    if total <= bound:
        break
    if os.path.abspath(path) == os.path.abspath(keep):
        continue
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        os.remove(path)
    total -= nbytes
    evicted.append([os.path.relpath(path, workdir), nbytes, used])
print(json.dumps({"evicted": evicted, "total": total}))
"""


def max_bytes() -> int | None:
    text = os.environ.get(MAX_ENV, "").strip()
    try:
        value = float(text) if text else DEFAULT_MAX_MB
    except ValueError:
        value = DEFAULT_MAX_MB
    return int(value * 1024 * 1024) if value > 0 else None


async def prune_workdir(transport: Transport, keep: str) -> list[str]:
    """Hold the device's work directory under the bound; returns one line per removed entry."""
    bound = max_bytes()
    if bound is None:
        return []
    out = json.loads(await transport.python(_PY_PRUNE, transport.workdir, keep, str(bound)))
    lines = [
        f"{transport.name}: work directory over its {bound / 1048576:.0f} MB bound ({MAX_ENV}): removed "
        f"{path} ({nbytes / 1048576:.1f} MB, least recently used)"
        for path, nbytes, _ in out.get("evicted", [])
    ]
    for line in lines:
        log.warning("%s", line)
    return lines
