"""What the agent keeps for the report's statistics: the samples (or a histogram exact enough for
percentiles), repeated sessions, drift within a run, and the conditions the loop ran under."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.artifacts import make_artifact

AGENT_DIR = Path(__file__).resolve().parent.parent / "edgekit"


@pytest.fixture(scope="module")
def agent():
    sys.path.insert(0, str(AGENT_DIR))
    try:
        import agent as module  # noqa: PLC0415 - the file as the device sees it

        yield module
    finally:
        sys.path.remove(str(AGENT_DIR))


def test_samples_kept_in_run_order_rounded_to_a_tenth_of_a_microsecond(agent):
    values = [0.123456789, 2.5, 0.01]
    out = agent.compact_samples(values, keep=10)
    assert out == {"latency_samples_ms": [0.1235, 2.5, 0.01]}


def test_histogram_replaces_samples_above_the_limit_and_keeps_percentiles_within_its_bucket(agent):
    from edgekit.report.stats import record_samples

    rng = np.random.default_rng(3)
    values = list(rng.lognormal(mean=0.0, sigma=0.6, size=5000))
    out = agent.compact_samples(values, keep=1000)
    assert "latency_samples_ms" not in out
    assert sum(count for _, count in out["latency_histogram"]["buckets"]) == 5000
    expanded = record_samples(out)
    step = out["latency_histogram"]["step"]
    for q in (1, 50, 90, 99):
        exact = np.percentile(values, q)
        approx = np.percentile(expanded, q)
        assert abs(approx / exact - 1) <= (step - 1) * 1.01  # within one 0.1% bucket


def test_block_medians_and_spread(agent):
    samples = [1.0] * 50 + [2.0] * 50
    blocks = agent.block_medians(samples, blocks=5)
    assert blocks == [1.0, 1.0, 1.5, 2.0, 2.0] or blocks == [1.0, 1.0, 2.0, 2.0, 2.0]
    assert agent.spread_pct([1.0, 1.5, 2.0]) == pytest.approx(100 * (2.0 - 1.0) / 1.5)
    assert agent.spread_pct([1.0]) is None
    assert agent.block_medians([1.0] * 10) == []  # too short to split


def test_conditions_split_the_cpu_time_between_this_process_and_the_others(agent):
    before = {
        "ticks": (1000, 5000),
        "self_ticks": 100.0,
        "load": [1.0, 1.0, 1.0],
        "temps": {"cpu": 50.0},
        "throttle": 3,
    }
    after = {
        "ticks": (1150, 5200),
        "self_ticks": 150.0,
        "load": [1.5, 1.0, 1.0],
        "temps": {"cpu": 55.0},
        "throttle": 5,
    }
    out = agent.conditions(before, after)
    # 200 ticks of machine time: 50 ours (25%), 150 - 50 = 100 by others (50%)
    assert out["self_cpu_pct"] == pytest.approx(25.0)
    assert out["other_cpu_pct"] == pytest.approx(50.0)
    assert out["throttle_events"] == 2
    assert out["temperature_c_after"] == {"cpu": 55.0}


def _run(job: dict, tmp: Path) -> dict:
    path = tmp / "job.json"
    path.write_text(json.dumps(job))
    proc = subprocess.run(
        [sys.executable, str(AGENT_DIR / "agent.py"), str(path)], stdout=subprocess.PIPE, check=False
    )
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def test_repeated_sessions_report_their_medians_and_samples(tmp_path):
    art = make_artifact(tmp_path / "art")
    manifest = json.loads((art / "manifest.json").read_text())
    job = {
        "entry": str(art / "model.onnx"),
        "backend": "onnxruntime",
        "inputs": manifest["inputs"],
        "iterations": 40,
        "warmup": 2,
        "threads": 1,
        "repeats": 3,
        "min_duration_s": 0.15,  # per session: 0.45 s of loops, measurable in /proc/stat's jiffies
        "keep_samples": 10**7,  # a fast machine runs > 20 000 loops in that time: keep them all anyway
    }
    res = _run(job, tmp_path)
    assert res["status"] == "ok", res
    samples = res["latency_samples_ms"]
    counts = res["repeat_counts"]
    assert res["repeats"] == 3 and len(counts) == 3 and min(counts) >= 40
    assert len(samples) == sum(counts) == res["iterations"]
    ends = np.cumsum([0, *counts])
    for i, median in enumerate(res["repeat_p50_ms"]):
        assert median == pytest.approx(np.median(samples[ends[i] : ends[i + 1]]), abs=1e-4)
    assert res["latency_ms"]["p50"] == pytest.approx(np.median(samples), abs=1e-4)
    spread = (max(res["repeat_p50_ms"]) - min(res["repeat_p50_ms"])) / np.median(res["repeat_p50_ms"]) * 100
    assert res["run_spread_pct"] == pytest.approx(spread)
    assert len(res["latency_block_p50_ms"]) == 5
    cond = res["conditions"]
    assert 0 <= cond["other_cpu_pct"] <= 100 and cond["self_cpu_pct"] >= 0
    assert cond["cpu_count"] >= 1 and len(cond["load_avg_before"]) == 3


def test_records_of_the_local_transport_carry_the_samples(tmp_path):
    from edgekit import runner
    from edgekit.inventory import load_devices

    art = make_artifact(tmp_path / "art")
    devices = load_devices(None)
    devices["local"].workdir = str(tmp_path / "work")
    jobs, _ = runner.plan(runner.load_artifacts([art]), devices, ["local"])
    settings = runner.BenchSettings(iterations=30, warmup=2, threads=1, repeats=2, min_duration_s=0.2)
    record = asyncio.run(runner.run_bench(jobs, settings, tmp_path / "results.jsonl"))[0]
    assert record["status"] == "ok", record
    stored = runner.read_results(tmp_path / "results.jsonl")[0]
    counts = stored["repeat_counts"]
    assert len(counts) == 2 and min(counts) >= 30
    if "latency_samples_ms" in stored:
        kept = len(stored["latency_samples_ms"])
    else:  # a fast machine runs more than the agent keeps one by one: then they come as a histogram
        kept = sum(count for _, count in stored["latency_histogram"]["buckets"])
    assert kept == sum(counts)
    assert stored["settings"]["repeats"] == 2
    assert math.isfinite(stored["conditions"]["other_cpu_pct"])  # 0.4 s of loops: measurable in jiffies
