"""--baseline decisions on constructed records: what changed decides whether a latency shift can be
a regression; fidelity and state regressions; unmatched rows are notes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekit.report import build_report


def _record(
    sha: str,
    samples: np.ndarray,
    *,
    status: str = "ok",
    runtime: str = "1.0",
    accuracy: float | None = None,
    threads: int = 1,
) -> dict:
    record = {
        "timestamp": "2025-01-01T00:00:00+00:00",
        "status": status,
        "error": None if status == "ok" else "boom",
        "artifact": {
            "sha256": sha,
            "name": "m.x86-cpu.int8",
            "target": "x86-cpu",
            "backend": "onnxruntime",
            "precision": "int8",
            "model": "m.onnx",
        },
        "device": {
            "name": "local",
            "target": "x86-cpu",
            "environment": {"cpu": "X", "runtimes": {"onnxruntime": runtime}},
        },
        "settings": {"threads": threads, "input_source": "random(seed=0)"},
        "runtime": {"name": "onnxruntime", "version": runtime},
        "latency_ms": {"p50": float(np.median(samples))} if status == "ok" else None,
        "latency_samples_ms": [float(v) for v in samples] if status == "ok" else None,
    }
    if accuracy is not None:
        record["fidelity"] = {
            "where": "local",
            "passed": True,
            "outputs": [{"name": "y", "cosine": 0.999}],
            "accuracy_artifact": accuracy,
            "accuracy_reference": 99.0,
        }
    return record


def _write(path: Path, *records: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _samples(median: float, seed: int, n: int = 400) -> np.ndarray:
    return median * np.random.default_rng(seed).lognormal(0.0, 0.05, n)


def test_a_slower_new_artifact_is_a_regression(tmp_path):
    base = _write(tmp_path / "base.jsonl", _record("a" * 64, _samples(1.0, 1)))
    new = _write(tmp_path / "new.jsonl", _record("b" * 64, _samples(1.5, 2)))
    (comp,) = build_report([new], baseline=[base]).comparisons
    assert comp.regressed and comp.latency.verdict == "slower"
    assert comp.latency.ci_pct[0] > 10.0 and "artifact" in comp.changed[0]


def test_a_small_change_under_the_floor_is_not(tmp_path):
    base = _write(tmp_path / "base.jsonl", _record("a" * 64, _samples(1.0, 1, 5000)))
    new = _write(tmp_path / "new.jsonl", _record("b" * 64, _samples(1.04, 2, 5000)))
    (comp,) = build_report([new], baseline=[base]).comparisons
    assert comp.latency.ci_pct[0] > 0  # statistically real ...
    assert comp.latency.verdict == "unchanged" and not comp.regressed  # ... but under the 10% floor


def _sessions(median: float, seed: int, spread: tuple[float, ...] = (1.0, 1.02, 0.98)) -> dict:
    """A record of three sessions (the agent's --repeats) whose medians differ by a few percent."""
    rng = np.random.default_rng(seed)
    parts = [median * m * rng.lognormal(0.0, 0.05, 200) for m in spread]
    record = _record("a" * 64, np.concatenate(parts))
    record["repeat_counts"] = [200] * len(parts)
    return record


def test_the_same_artifact_with_one_session_per_side_is_not_called_either_way(tmp_path):
    base = _write(tmp_path / "base.jsonl", _record("a" * 64, _samples(1.0, 1)))
    new = _write(tmp_path / "new.jsonl", _record("a" * 64, _samples(1.6, 2)))
    (comp,) = build_report([new], baseline=[base]).comparisons
    assert comp.latency.verdict == "slower" and not comp.regressed and not comp.changed
    assert any("repeat the bench" in n for n in comp.notes), comp.notes


def test_a_device_that_became_slower_is_a_device_side_regression(tmp_path):
    """Same artifact, runtime, settings and device software; repeated sessions agree on each side and
    the new ones are 60% slower: the device itself regressed (throttling, firmware, power mode)."""
    base = _write(tmp_path / "base.jsonl", _sessions(1.0, 1))
    new = _write(tmp_path / "new.jsonl", _sessions(1.6, 2))
    (comp,) = build_report([new], baseline=[base]).comparisons
    assert not comp.changed and comp.latency.verdict == "slower"
    assert comp.regressed, comp.notes
    (why,) = comp.regressions
    assert why.startswith("device-side regression") and "3 sessions" in why and "floor" in why


def test_the_same_artifact_twice_with_repeated_sessions_is_not_a_regression(tmp_path):
    base = _write(tmp_path / "base.jsonl", _sessions(1.0, 1))
    new = _write(tmp_path / "new.jsonl", _sessions(1.02, 2))
    (comp,) = build_report([new], baseline=[base]).comparisons
    assert comp.latency.verdict == "unchanged" and not comp.regressed


def test_the_same_artifact_on_a_new_runtime_or_fewer_threads_is_judged(tmp_path):
    base = _write(tmp_path / "base.jsonl", _record("a" * 64, _samples(1.0, 1)))
    for name, record in (
        ("runtime", _record("a" * 64, _samples(1.6, 2), runtime="2.0")),
        ("threads", _record("a" * 64, _samples(1.6, 2), threads=4)),
    ):
        new = _write(tmp_path / f"{name}.jsonl", record)
        (comp,) = build_report([new], baseline=[base]).comparisons
        assert comp.regressed and any(name in c for c in comp.changed), comp.changed


def test_sessions_that_disagree_widen_the_interval(tmp_path):
    """Two-level bootstrap: sessions of one run whose medians spread over 40% make a 25% change
    inconclusive, where the same samples pooled as one session would call it."""
    rng = np.random.default_rng(0)
    sessions = [m * rng.lognormal(0, 0.02, 100) for m in (1.0, 1.1, 1.2, 1.3, 1.4)]
    base = _record("a" * 64, np.concatenate(sessions))
    base["repeat_counts"] = [100] * 5
    new = _record("b" * 64, np.concatenate(sessions) * 1.25)
    new["repeat_counts"] = [100] * 5
    pooled = dict(base, repeat_counts=None), dict(new, repeat_counts=None)
    (split,) = build_report(
        [_write(tmp_path / "n1.jsonl", new)], baseline=[_write(tmp_path / "b1.jsonl", base)]
    ).comparisons
    (flat,) = build_report(
        [_write(tmp_path / "n2.jsonl", pooled[1])], baseline=[_write(tmp_path / "b2.jsonl", pooled[0])]
    ).comparisons
    width = lambda c: c.latency.ci_pct[1] - c.latency.ci_pct[0]  # noqa: E731
    assert width(split) > 4 * width(flat)
    assert flat.regressed and not split.regressed


def test_fidelity_and_state_regressions(tmp_path):
    base = _write(tmp_path / "base.jsonl", _record("a" * 64, _samples(1.0, 1), accuracy=98.0))
    worse = _write(tmp_path / "worse.jsonl", _record("b" * 64, _samples(1.0, 2), accuracy=96.5))
    (comp,) = build_report([worse], baseline=[base]).comparisons
    assert comp.regressed and "accuracy 98.00% -> 96.50%" in comp.regressions[0]
    broken = _write(tmp_path / "broken.jsonl", _record("b" * 64, _samples(1.0, 2), status="failed"))
    (comp,) = build_report([broken], baseline=[base]).comparisons
    assert comp.regressed and comp.regressions[0].startswith("ok -> failed")


def test_rows_on_one_side_only_are_notes(tmp_path, run_cli):
    base = _write(tmp_path / "base.jsonl", _record("a" * 64, _samples(1.0, 1)))
    other = _record("b" * 64, _samples(1.0, 2))
    other["device"] = dict(other["device"], name="phone")
    new = _write(tmp_path / "new.jsonl", other)
    comps = build_report([new], baseline=[base]).comparisons
    assert not any(c.regressed for c in comps) and len(comps) == 2
    code, out, err = run_cli("report", new, "--baseline", base)
    assert code == 0 and "baseline only" in out
