"""Issue 19, "numbers measured somewhere else": an arm64 artifact timed on this x86 host says
"host proxy" in its record, the report's table, the demo's row and --precision auto's choice."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from edgekit import targets
from tests.report_helpers import artifact, bench

pytestmark = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="the proxy case needs an x86 host"
)


def test_profiles_name_their_architecture() -> None:
    assert targets.get("arm64-cpu").arch == "arm64"
    assert targets.get("android-arm64").arch == "arm64"
    assert targets.get("rpi4-arm64").arch == "arm64"
    assert targets.get("x86-cpu").arch == "x86_64"
    assert "host proxy" in targets.host_proxy(targets.get("arm64-cpu"))
    assert targets.host_proxy(targets.get("x86-cpu")) is None


def test_an_arm64_artifact_timed_here_is_a_host_proxy_in_record_and_report(tmp_path: Path) -> None:
    art = artifact(tmp_path / "tiny.arm64-cpu.fp32", target="arm64-cpu")
    results = tmp_path / "results.jsonl"
    (record,) = bench([art], results, tmp_path / "work", iterations=20)
    assert record["status"] == "ok"
    assert "host proxy" in record["host_proxy"] and "arm64" in record["host_proxy"]
    assert json.loads(results.read_text().splitlines()[0])["host_proxy"] == record["host_proxy"]

    from edgekit.report import build_report, write_report

    report = build_report([results])
    write_report(report, tmp_path / "report.md")
    assert "host proxy" in (tmp_path / "report.md").read_text()
    native = artifact(tmp_path / "tiny.x86-cpu.fp32", target="x86-cpu")
    (x86,) = bench([native], tmp_path / "x86.jsonl", tmp_path / "work", iterations=20)
    assert "host_proxy" not in x86 or x86["host_proxy"] is None


def test_auto_choice_on_a_proxy_says_so() -> None:
    from edgekit.services import precision as auto

    rows = [
        {"precision": "fp32", "passed": True, "p50_ms": 1.0, "bytes": 400},
        {"precision": "int8", "passed": True, "p50_ms": 2.0, "bytes": 100},
    ]
    choice = auto._choice_record(rows[0], rows, True, proxy=targets.host_proxy(targets.get("arm64-cpu")))
    assert choice["host_proxy"] and any("host proxy" in w for w in choice["why"])


def test_demo_table_marks_a_proxy_timing() -> None:
    from edgekit.demo import COLUMNS, _cells

    row = {
        "target": "arm64-cpu",
        "precision": "fp32",
        "status": "ok",
        "p50_ms": 1.5,
        "host_proxy": "host proxy: x",
    }
    assert "host proxy" in _cells(row)[COLUMNS.index("p50 ms")]
