"""The runner on this machine (local transport, real device agent): what each job sends the agent,
and `bench_local`, the one way edgekit times an artifact here."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest

from edgekit import runner
from edgekit.errors import InternalError
from edgekit.inventory import load_devices
from tests.artifacts import make_artifact


def _openvino_artifact(directory: Path, target: str) -> Path:
    """The tiny ONNX as an OpenVINO artifact (OpenVINO compiles ONNX files directly)."""
    make_artifact(directory, target=target)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["backend"] = "openvino"
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


@pytest.mark.parametrize(
    ("target", "device"), [("intel-cpu", "CPU"), ("intel-gpu", "GPU"), ("intel-npu", "NPU")]
)
def test_job_sends_the_target_profiles_device(tmp_path, target, device):
    """Defect: `BenchSettings.ov_device = "CPU"` went to every job, so intel-gpu / intel-npu artifacts
    were benchmarked on the device's CPU. The device string is the backend's answer from the profile."""
    (art,) = runner.load_artifacts([_openvino_artifact(tmp_path / target, target)])
    assert art.profile is not None and art.profile.name == target
    job = runner.Job(art, load_devices(None)["local"])
    spec = runner.job_spec(job, "/remote/model.onnx", runner.BenchSettings())
    assert spec["device"] == device and spec["backend"] == "openvino"


def test_user_profile_device_reaches_the_agent(tmp_path, monkeypatch):
    """The agent really receives the device of a user's profile (from --targets-dir): its job file is
    captured on the way to the (local) device and the agent runs it."""
    pytest.importorskip("openvino")
    from edgekit.transport import LocalTransport

    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "my-igpu.toml").write_text('name = "my-igpu"\nbackend = "openvino"\ndevice = "GPU.7"\n')
    art_dir = _openvino_artifact(tmp_path / "art", "my-igpu")
    sent: list[dict] = []
    upload = LocalTransport.upload

    async def recording_upload(self, local, remote, sha256=None):
        if str(remote).endswith("/job.json"):
            sent.append(json.loads(Path(local).read_text()))
        return await upload(self, local, remote, sha256)

    monkeypatch.setattr(LocalTransport, "upload", recording_upload)
    devices = load_devices(None)
    devices["local"].workdir = str(tmp_path / "work")
    jobs, _ = runner.plan(runner.load_artifacts([art_dir], [targets]), devices, explicit=["local"])
    (rec,) = asyncio.run(
        runner.run_bench(jobs, runner.BenchSettings(iterations=2, warmup=0), tmp_path / "r.jsonl")
    )
    assert [s["device"] for s in sent] == ["GPU.7"]
    # no such device here: the agent's OpenVINO says so (before the fix it ran on the CPU)
    assert rec["status"] == "failed" and "gpu" in rec["error"].lower(), rec


def test_bench_local_is_the_runner_with_the_local_agent(tmp_path):
    art_dir = make_artifact(tmp_path / "art", target="x86-cpu")
    results = tmp_path / "results.jsonl"
    record = runner.bench_local(art_dir, iterations=5, warmup=1, results=results)
    assert record["status"] == "ok" and record["device"]["name"] == "local"
    assert record["device"]["transport"] == "local" and record["runtime"]["name"] == "onnxruntime"
    assert record["settings"]["iterations"] == 5 and record["latency_ms"]["count"] == 5
    assert runner.read_results(results) == [json.loads(json.dumps(record, default=str))]
    # a file the runtime cannot load: the agent's error, raised (exit 4), not a record to miss
    (art_dir / "model.onnx").write_bytes(b"not an onnx model")
    manifest = json.loads((art_dir / "manifest.json").read_text())
    manifest["files"][0]["sha256"] = hashlib.sha256(b"not an onnx model").hexdigest()
    (art_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InternalError, match="^local: "):
        runner.bench_local(art_dir, iterations=2, warmup=0)
