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


def test_device_engine_is_rebuilt_when_the_devices_tensorrt_changes(
    tmp_path: Path, run_cli, monkeypatch
) -> None:
    """An engine that came home from a device is reused only while the device's TensorRT and GPU are the
    ones that built it: after a TensorRT upgrade (here: a different trtexec) it is built again."""
    from edgekit.resources import demo_paths
    from tests.test_trt_device_build import BANNER
    from tests.test_trt_device_build import FAKE_TRTEXEC as BUILDING_TRTEXEC

    fake_dir = tmp_path / "fakebin"
    fake_dir.mkdir()
    fake = fake_dir / "trtexec"
    fake.write_text(BUILDING_TRTEXEC)
    fake.chmod(0o755)
    (fake_dir / "banner.log").write_text(BANNER.read_text())
    monkeypatch.setenv("PATH", f"{fake_dir}{os.pathsep}{os.environ['PATH']}")
    devices = tmp_path / "devices.toml"
    devices.write_text(
        f'[devices.orin]\ntransport = "local"\ntarget = "jetson-orin-nano"\nworkdir = "{tmp_path / "device"}"\n'
    )
    code, out, err = run_cli(
        "export",
        demo_paths()["model"],
        "--target",
        "jetson-orin-nano",
        "--fp32",
        "-o",
        tmp_path / "arts",
        "--json",
    )
    assert code == 0, err
    artifact = Path(json.loads(out)["artifact"])

    def bench() -> int:
        code, _, err = run_cli(
            "bench", artifact, "--devices", devices, "--iterations", "20", "-o", tmp_path / "r.jsonl"
        )
        assert code == 0, err
        return len((fake_dir / "calls").read_text().split())

    assert bench() == 2  # built, then timed
    assert bench() == 3  # the engine that came home: timed only
    fake.write_text(BUILDING_TRTEXEC + "# TensorRT upgraded\n")  # the device's TensorRT changed
    assert bench() == 5  # built again for the new TensorRT, then timed
    build = json.loads((artifact / "manifest.json").read_text())["details"]["device_builds"]["orin"]
    assert build["stack"]["trtexec_sha256"] and build["engine"].count("/") == 3  # engines/<device>/<key>/
