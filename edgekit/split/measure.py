"""Measure a shard's runtime memory here: onnxruntime CPU in a fresh process, the way the device agent
loads a model (runtime imported, baseline RSS, session with default options, a few runs), peak RSS
growth over the baseline.

Why the planner measures instead of trusting the estimate for `--max-shard-mb`: the memory model is
linear in weight bytes, fitted on whole models, where glibc reuses the heap that loading one tensor
freed for the next. A shard made of a few large Conv kernels does not amortize that: onnxruntime keeps
the initializer, the protobuf parse copy's left-over, a BatchNorm-fused copy and the NCHWc re-laid-out
kernel, 1.5x to 6x the kernel's bytes depending on how many large tensors came before (measured on
ResNet-18/50 late-stage shards: estimate 0.58x..0.8x of the measurement).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from edgekit import lifecycle
from edgekit.split import extract
from edgekit.split.partition_graph import MB, PartitionGraph

#: a child process's own /proc/self/status value (VmRSS, VmHWM) in bytes; benchmarks/bench_memory.py
#: measures with the same helper
STATUS_HELPER = r"""
import json, sys
import numpy as np

def status(key):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0
"""

_CHILD = (
    STATUS_HELPER
    + r"""
import onnxruntime as ort

path, specs = sys.argv[1], json.loads(sys.argv[2])
base = status("VmRSS")
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
feeds = {}
for name, shape, dtype in specs:
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        feeds[name] = rng.standard_normal(shape).astype(dtype)
    else:
        feeds[name] = np.zeros(shape, dtype=dtype)
for _ in range(2):
    session.run(None, feeds)
print(json.dumps({"growth": status("VmHWM") - base}))
"""
)

#: where the measurement holds: what a planned device running onnxruntime CPU would see
WHERE = "onnxruntime CPU here, fresh process (peak RSS growth)"


def available() -> bool:
    """Linux /proc and onnxruntime: what the measurement needs."""
    import importlib.util

    return Path("/proc/self/status").is_file() and importlib.util.find_spec("onnxruntime") is not None


def shard_memory_mb(
    graph: PartitionGraph, bounds: Sequence[tuple[int, int]], timeout_s: float = 300.0
) -> list[float]:
    """Peak RSS growth (MB) of each shard [start, end) loaded and run in its own fresh process."""
    out = []
    with tempfile.TemporaryDirectory(prefix="edgekit-shard-memory-") as tmp:
        for index, (start, end) in enumerate(bounds):
            shard = extract.write_shard(graph, start, end, index, Path(tmp))
            specs = [
                [name, list(graph.tensors[name].shape or []), str(graph.tensors[name].dtype)]
                for name in shard.inputs
            ]
            argv = [sys.executable, "-c", _CHILD, str(shard.path), json.dumps(specs)]
            # lifecycle.child: the measurement dies with edgekit, even when edgekit is SIGKILLed
            with lifecycle.child(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
                stdout, stderr = proc.communicate(timeout=timeout_s)
            if proc.returncode != 0:
                tail = (stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"measuring shard {index} failed: {tail}")
            out.append(json.loads(stdout.strip().splitlines()[-1])["growth"] / MB)
            for item in shard.files:
                (Path(tmp) / str(item["path"])).unlink()
    return out
