"""Issue 9's acceptance check, tried: a new backend is one file, one registry row and one target TOML
(plus one runner class in the agent, or none when an existing runtime runs its artifacts). Nothing
else in edgekit changes, yet export, verify, `edgekit targets`, the demo's timing decision and the
runner's job all work for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekit import backends, demo, runner, targets
from edgekit.inventory import local_device
from edgekit.resources import demo_paths

# the whole backend: one file
BACKEND_FILE = '''
"""A throwaway backend: the prepared ONNX copied as the artifact, run by onnxruntime."""
import shutil

from edgekit.backends.base import Backend, ExportResult, TensorSpec, manifest_specs
from edgekit.backends.ort import OrtRunner


class CopyOnnxBackend(Backend):
    name = "copyonnx"
    modules = ("onnxruntime",)
    precisions = ("fp32",)
    agent_runner = "onnxruntime"  # the agent's existing ONNX Runtime runner loads its artifacts

    def export(self, job):
        shutil.copyfile(job.prepared.path, job.out_dir / "model.onnx")

        def specs(infos):
            return [TensorSpec.build(i.name, i.shape, i.dtype, job.prepared.source_name(i.name)) for i in infos]

        return ExportResult("model.onnx", specs(job.prepared.inputs), specs(job.prepared.outputs), self.versions())

    def open_runner(self, artifact_dir, manifest):
        inputs, outputs = manifest_specs(manifest)
        return OrtRunner(artifact_dir / manifest["entry"], inputs, outputs)
'''

TARGET_TOML = 'name = "copy-cpu"\nbackend = "copyonnx"\nprecisions = ["fp32"]\n'


@pytest.fixture
def new_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "copyonnx_backend.py").write_text(BACKEND_FILE)  # the file
    monkeypatch.syspath_prepend(str(plugin))
    monkeypatch.setitem(backends.BACKENDS, "copyonnx", "copyonnx_backend:CopyOnnxBackend")  # the row
    monkeypatch.setattr(backends, "_instances", {})
    profiles = tmp_path / "targets"
    profiles.mkdir()
    (profiles / "copy-cpu.toml").write_text(TARGET_TOML)  # the target TOML
    monkeypatch.setenv(targets.ENV_VAR, str(profiles))
    return profiles


def test_a_new_backend_is_one_file_one_row_one_toml(new_backend: Path, tmp_path: Path, run_cli) -> None:
    paths = demo_paths()
    code, out, err = run_cli("targets", "--json")
    assert code == 0, err
    row = next(r for r in json.loads(out) if r["name"] == "copy-cpu")
    assert row["installed"] and row["backend"] == "copyonnx"

    code, out, err = run_cli(
        "export",
        paths["model"],
        "--target",
        "copy-cpu",
        "--val",
        paths["val"],
        "-o",
        tmp_path / "o",
        "--json",
    )
    assert code == 0, err
    artifact = Path(json.loads(out)["artifact"])
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["backend"] == "copyonnx" and manifest["fidelity"]["passed"]
    assert manifest["size"]["artifact_bytes"] == (artifact / "model.onnx").stat().st_size
    code, _, err = run_cli("export", paths["model"], "--target", "copy-cpu", "--int8", "-o", tmp_path / "o")
    assert code == 2 and "does not offer int8" in err, err

    code, out, err = run_cli("verify", artifact, "--val", paths["val"], "--json")
    assert code == 0 and json.loads(out)["passed"], err

    (art,) = runner.load_artifacts([artifact])
    job = runner.Job(art, local_device())
    spec = runner.job_spec(job, "/remote/model.onnx", runner.BenchSettings())
    assert (spec["backend"], spec["device"]) == ("onnxruntime", "CPU")

    rows = demo.run_demo(tmp_path / "demo", only=["copy-cpu"], iterations=5, progress=lambda _: None)
    assert [r["model"] for r in rows] == ["digits", "detector"]  # one row per bundled model
    for timed in rows:
        assert timed["status"] == "ok" and timed["p50_ms"] > 0, timed
        assert timed["timed_as"].startswith("onnxruntime")
    records = runner.read_results(tmp_path / "demo" / "results.jsonl")
    assert [r["artifact"]["backend"] for r in records] == ["copyonnx"] * 2
    assert [r["latency_ms"]["p50"] for r in records] == [r["p50_ms"] for r in rows]
