"""Regression verdicts on real runs of the device agent (local transport): the same artifact timed
twice is not flagged; a slower artifact under the same name is, and `edgekit report` exits 1."""

from __future__ import annotations

import pytest

from tests.report_helpers import artifact, bench

SOURCE = {"name": "tiny.onnx", "sha256": "1" * 64}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("regression")
    work = tmp / "work"
    art = artifact(tmp / "v1" / "tiny.x86-cpu.fp32", width=128, depth=4, source=SOURCE)
    # the next version of the model: the same name, target and precision, 16x the multiply-adds
    slower = artifact(tmp / "v2" / "tiny.x86-cpu.fp32", width=512, depth=4, source=SOURCE)
    settings = {"iterations": 150, "warmup": 10, "repeats": 3}
    out = {name: tmp / f"{name}.jsonl" for name in ("first", "second", "slower")}
    bench([art], out["first"], work, **settings)
    bench([art], out["second"], work, **settings)
    bench([slower], out["slower"], work, **settings)
    return out


def test_the_same_artifact_timed_twice_is_not_a_regression(runs, run_cli):
    code, out, err = run_cli("report", runs["second"], "--baseline", runs["first"])
    assert code == 0, out + err
    assert "REGRESSION" not in out


def test_a_slower_artifact_is_a_regression_and_exits_1(runs, run_cli, tmp_path):
    code, out, err = run_cli("report", runs["slower"], "--baseline", runs["first"], "-o", tmp_path / "r.json")
    assert code == 1, out + err
    assert "REGRESSION: tiny.onnx x86-cpu fp32 @ local" in out
    assert "gate failed: 1 regression(s)" in err
    import json

    (comp,) = json.loads((tmp_path / "r.json").read_text())["baseline"]["comparisons"]
    assert comp["regression"] and comp["latency"]["verdict"] == "slower"
    assert comp["latency"]["ci_pct"][0] > comp["latency"]["floor_pct"]
