"""Issue 19: trtexec's throughput counts the batch (one query is a whole batch), and a device's engine
is reused only for the TensorRT version and GPU that built it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from edgekit import agent

FAKE_TRTEXEC = """#!/bin/sh
for arg in "$@"; do
  case "$arg" in --exportTimes=*) out="${arg#--exportTimes=}";; esac
done
python3 - "$out" <<'PY'
import json, sys
rows = [{"startComputeMs": 10.0 + 2.0 * i, "endComputeMs": 12.0 + 2.0 * i, "latencyMs": 2.0} for i in range(10)]
json.dump(rows, open(sys.argv[1], "w"))
PY
echo "&&&& PASSED TensorRT.trtexec [TensorRT v100300]"
"""


def test_trtexec_throughput_counts_the_batch(tmp_path: Path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "trtexec"
    fake.write_text(FAKE_TRTEXEC)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    job = {"inputs": [{"name": "x", "shape": [8, 3, 32, 32], "dtype": "float32"}], "iterations": 10}
    result = agent.bench_trtexec(job, str(tmp_path / "model.engine"), str(tmp_path))
    assert result["latency_ms"]["p50"] == 2.0
    assert result["throughput_fps"] == 8 * 1000.0 / 2.0  # 8 inferences per 2 ms query
    json.dumps(result)
