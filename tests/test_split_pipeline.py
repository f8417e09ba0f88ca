"""A split model exported per shard and benchmarked as a pipeline on two real sshd devices on loopback
(edgekit split -> export SPLIT_DIR -> bench PIPELINE_DIR), and the planner reading the results back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgekit.api import SplitRequest, split
from tests import models
from tests.sshd import ssh_boards


@pytest.fixture
def two_boards(tmp_path: Path):
    with ssh_boards(tmp_path, 2, link_mbps=1000, link_latency_ms=0.5) as inventory:
        yield inventory


@pytest.mark.slow
@pytest.mark.ssh
def test_two_device_pipeline_end_to_end(tmp_path: Path, two_boards: Path, run_cli) -> None:
    model = models.resnet_ish(size=32, width=8, blocks=4)
    path = tmp_path / "res.onnx"
    onnx.save(model, str(path))
    rng = np.random.default_rng(0)
    val = tmp_path / "val.npz"
    np.savez(val, input=rng.standard_normal((8, 1, 3, 32, 32)).astype(np.float32))
    calib = tmp_path / "calib.npz"
    np.savez(calib, input=rng.standard_normal((8, 1, 3, 32, 32)).astype(np.float32))

    split_dir = tmp_path / "res.split"
    split(SplitRequest(path, parts=2, out_dir=split_dir, profile=False))
    code, _, err = run_cli(
        "export", split_dir, "--target", "x86-cpu", "--int8", "--calib", calib, "-o", tmp_path / "out"
    )
    assert code == 0, err
    pipe = tmp_path / "out" / "res.pipeline"
    exported = json.loads((pipe / "pipeline.json").read_text())
    assert [s["precision"] for s in exported["shards"]] == ["int8", "int8"]

    results = tmp_path / "results.jsonl"
    code, out, err = run_cli(
        "bench", pipe, "--device", "board-0", "--device", "board-1", "--devices", two_boards,
        "--val", val, "--warmup", "2", "-o", results, "--json",
    )  # fmt: skip
    assert code == 0, err
    record = json.loads(out)[0]
    assert record["kind"] == "pipeline" and record["device"]["devices"] == ["board-0", "board-1"]
    assert record["settings"]["samples"] == 8
    assert record["latency_ms"]["p50"] > 0 and record["throughput_fps"] > 0
    assert len(record["stages"]) == 2 and len(record["hops"]) == 1
    assert record["hops"][0]["bytes"] == exported["cuts"][0]["bytes"] > 0
    for stage in record["stages"]:
        assert stage["compute_ms"]["p50"] > 0 and stage["peak_rss_mb"] > 0
    # every stage ran, so the end-to-end latency is at least the sum of the device compute times
    assert record["latency_ms"]["min"] >= sum(s["compute_ms"]["min"] for s in record["stages"])
    assert record["fidelity"]["where"] == "pipeline" and record["fidelity"]["passed"]

    lines = [json.loads(line) for line in results.read_text().splitlines()]
    stages = [r for r in lines if r.get("kind") == "pipeline-stage"]
    assert [r["pipeline"]["nodes"] for r in stages] == [s["nodes"] for s in exported["shards"]]
    assert {r["device"]["name"] for r in stages} == {"board-0", "board-1"}

    # a later plan on these devices reads the measured shard latencies back
    from edgekit.split.device_models import _measured_shards, _source_sha

    measured = _measured_shards(lines, _source_sha(path), "board-1")
    assert tuple(exported["shards"][1]["nodes"]) in measured
