"""`edgekit report`: rows and their states, speedups, renderings (80-column text, Markdown, JSON,
self-contained HTML) and the command's exit codes, on records written by the real agent."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET

import pytest

from edgekit.report import build_report, render_text, write_report
from edgekit.report.load import Build, load
from tests.report_helpers import append, artifact, bench, failed_record, fidelity


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """fp32 and int8 artifacts of one model timed here, a second model's artifact that failed
    verification, a run that failed and one skipped on other devices."""
    tmp = tmp_path_factory.mktemp("report")
    source = {"name": "tiny.onnx", "sha256": "0" * 64}
    size = {"source_bytes": 4000, "artifact_bytes": 4000, "compression_ratio": 1.0}
    fp32 = artifact(tmp / "tiny.x86-cpu.fp32", source=source, size=size, fidelity=fidelity(True, 1.0, 99.0))
    int8 = artifact(
        tmp / "tiny.x86-cpu.int8",
        precision="int8",
        source=source,
        size=dict(size, artifact_bytes=1000, compression_ratio=4.0),
        fidelity=fidelity(True, 0.995, 98.6),
        depth=1,
    )
    bad = artifact(
        tmp / "other-model-with-a-really-long-name.x86-cpu.int8",
        precision="int8",
        source={"name": "other-model-with-a-really-long-name.onnx"},
        fidelity=fidelity(False, 0.9, 80.0),
    )
    out = tmp / "results.jsonl"
    bench([fp32, int8, bad], out, tmp / "work")
    append(
        out,
        failed_record(
            fp32,
            "jetson-lab-unit-with-long-name",
            "failed",
            "jetson-lab: unreachable: connection refused " * 3,
        ),
    )
    append(out, failed_record(int8, "phone", "skipped", "android-arm64 artifacts do not run on this machine"))
    return {"tmp": tmp, "results": out, "fp32": fp32, "int8": int8, "bad": bad}


def _rows(report):
    return {r.key: r for r in report.rows}


def test_rows_carry_states_sizes_fidelity_latency_and_speedup(results):
    report = build_report([results["results"]])
    rows = _rows(report)
    fp32 = rows[("tiny.onnx", "x86-cpu", "fp32", "local")]
    int8 = rows[("tiny.onnx", "x86-cpu", "int8", "local")]
    assert fp32.state == int8.state == "ok"
    assert int8.compression_ratio == 4.0 and int8.size_mb == pytest.approx(0.001)
    assert int8.cosine == 0.995 and int8.accuracy == 98.6 and int8.accuracy_drop == pytest.approx(0.4)
    for row in (fp32, int8):
        assert row.samples == 60 and row.p50 <= row.p90 <= row.p99 and row.fps > 0 and row.init_ms > 0
    assert int8.speedup == pytest.approx(fp32.p50 / int8.p50) and int8.speedup_ref == "x86-cpu fp32"
    assert fp32.speedup == pytest.approx(1.0)
    bad = rows[("other-model-with-a-really-long-name.onnx", "x86-cpu", "int8", "local")]
    assert bad.state == "verify_failed" and "cosine" in bad.reason
    failed = rows[("tiny.onnx", "x86-cpu", "fp32", "jetson-lab-unit-with-long-name")]
    assert failed.state == "failed" and failed.stage == "bench" and "connection refused" in failed.reason
    assert rows[("tiny.onnx", "x86-cpu", "int8", "phone")].state == "skipped"
    assert [t.model for t in report.tables] == sorted(t.model for t in report.tables)


def test_export_failures_from_a_build_are_rows_too(results):
    inputs = load([results["results"]])
    inputs.builds.append(
        Build(
            model="tiny.onnx",
            target="android-arm64",
            precision="int8",
            status="failed",
            stage="export",
            error="onnx2tf: unsupported op",
        )
    )
    row = _rows(build_report(inputs))[("tiny.onnx", "android-arm64", "int8", "-")]
    assert row.state == "failed" and row.stage == "export" and row.reason == "onnx2tf: unsupported op"


def test_a_note_names_its_stage_only_when_it_has_one(results):
    """A release's exclusion is a gate's verdict; the demo's 'time it on the device' is a remark."""
    inputs = load([results["results"]])
    for target, stage in (("intel-gpu", None), ("intel-npu", "gate")):
        inputs.builds.append(
            Build("tiny.onnx", target, "fp16", note=f"{target} note", note_stage=stage, manifest={})
        )
    rows = _rows(build_report(inputs))
    assert rows[("tiny.onnx", "intel-gpu", "fp16", "-")].stage is None
    assert rows[("tiny.onnx", "intel-npu", "fp16", "-")].stage == "gate"
    text = render_text(build_report(inputs), width=80)
    assert "intel-gpu fp16: intel-gpu note" in text and "intel-npu fp16 (gate): intel-npu note" in text


def test_text_stays_within_80_columns_and_never_folds_a_cell(results):
    report = build_report([results["results"]])
    text = render_text(report, width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    for row in report.rows:
        # the row key starts one line of every table (cells are whole, never wrapped)
        assert any(line.startswith(row.target) and row.precision in line for line in text.splitlines())
    assert "FAIL-verify" in text and "FAILED" in text and "skipped" in text
    assert "connection refused" in text  # reasons listed, wrapped under the tables
    headers = [line for line in text.splitlines() if line.startswith("target ")]
    assert len(headers) >= 2  # the columns that do not fit go into a further table
    wide = render_text(report, width=200)
    assert len([line for line in wide.splitlines() if line.startswith("target ")]) < len(headers)


def test_markdown_and_json(results, tmp_path):
    report = build_report([results["results"]])
    md = write_report(report, tmp_path / "r.md").read_text()
    assert md.count("\n| ") >= len(report.rows) + len(report.tables)
    assert "❎ failed verification" in md and "❌ failed" in md
    data = json.loads(write_report(report, tmp_path / "r.json").read_text())
    rows = [row for model in data["models"] for row in model["rows"]]
    assert len(rows) == len(report.rows)
    assert {r["state_label"] for r in rows} >= {"exported and verified", "export or run failed"}


def test_html_is_one_self_contained_file_with_plots(results, tmp_path):
    report = build_report([results["results"]])
    html = write_report(report, tmp_path / "r.html").read_text()
    assert "default-src 'none'" in html  # the browser may fetch nothing
    assert "<script" not in html
    assert not re.search(r'(src|href)="(?!data:|#)', html)  # every reference is inline or an anchor
    images = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html)
    assert len(images) >= 2  # latency distribution and the trade-off chart
    for blob in images:
        root = ET.fromstring(base64.b64decode(blob))
        assert root.tag.endswith("svg")
    assert 'name="viewport"' in html
    assert html.count('<table class="results">') == len(report.tables)


def test_html_plots_are_deterministic(results, tmp_path):
    a = write_report(build_report([results["results"]]), tmp_path / "a.html").read_text()
    b = write_report(build_report([results["results"]]), tmp_path / "b.html").read_text()
    assert a == b


def test_cli_writes_every_format_and_refuses_bad_input(results, run_cli, tmp_path):
    code, out, err = run_cli("report", results["results"], "-o", tmp_path / "r.html", "-o", tmp_path / "r.md")
    assert code == 0, err
    assert (tmp_path / "r.html").is_file() and (tmp_path / "r.md").is_file()
    assert "== tiny.onnx" in out
    code, out, err = run_cli("report", results["results"], "-o", tmp_path / "r.pdf")
    assert code == 2 and "suffix picks the format" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli("report", tmp_path / "missing.jsonl")
    assert code == 2 and "results not found" in err
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"a": 1}\n')
    code, out, err = run_cli("report", junk)
    assert code == 2 and "junk.jsonl:1" in err


def test_the_api_record_is_what_json_prints(results, run_cli, tmp_path):
    from edgekit import api

    out = tmp_path / "r.json"
    code, printed, err = run_cli("report", results["results"], "-o", out, "--json")
    assert code == 0, err
    record = api.report(api.ReportRequest([results["results"]], outputs=[out]))
    assert json.loads(printed) == record.to_json() and record.written == [str(out)]
    again = api.ReportRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record and again.report is None and again.regressions() == []
    document = json.loads(out.read_text())
    assert document == record.document and "written" not in document  # the file is the report alone


def test_a_directory_of_artifacts_reports_unbenchmarked_rows(results):
    report = build_report([results["tmp"]])  # the folder holds results.jsonl and the artifact dirs
    rows = _rows(report)
    assert ("tiny.onnx", "x86-cpu", "fp32", "local") in rows
    assert all(r.device is not None for r in report.rows)  # benched artifacts are not listed twice


def test_html_without_matplotlib_says_how_to_get_the_plots(results, tmp_path, monkeypatch):
    from edgekit.report import plots

    monkeypatch.setattr(plots, "available", lambda: False)
    html = write_report(build_report([results["results"]]), tmp_path / "r.html").read_text()
    assert "<img" not in html and "pip install 'edgekit[report]'" in html
    assert '<table class="results">' in html
