"""`edgekit release` end to end on the bundled digits CNN (ONNX Runtime targets, benchmarked on the
local device through the agent): the dist tree and its checksums, the cache (nothing rebuilt when
nothing changed; a new calibration set rebuilds only INT8), gates, --allow-failures, reproducibility."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile

import pytest

from tests.release_project import make_project, new_calibration, release_json

ARTIFACTS = ["digits.x86-cpu.fp32", "digits.x86-cpu.int8", "digits.arm64-cpu.fp32", "digits.arm64-cpu.int8"]


def _cache(data: dict) -> dict[str, str]:
    return {a["name"]: a["cache"]["export"] for a in data["artifacts"]}


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One project released three times: fresh, unchanged, with a new calibration set."""
    from edgekit.cli import main

    root = tmp_path_factory.mktemp("release")
    config = make_project(root)
    runs = []
    patch = pytest.MonkeyPatch()
    patch.setenv("EDGEKIT_CACHE_DIR", str(root / "cache"))  # a cache of its own: the first run builds all

    def release() -> dict:
        with pytest.raises(SystemExit) as exit_info:
            main(["release", "--config", str(config), "--json"])
        assert exit_info.value.code in (0, None)
        return release_json(root)

    try:
        runs.append(release())
    except BaseException:
        patch.undo()
        raise
    shutil.copytree(root / "dist" / "digits-1.0.0", root / "first")
    try:
        runs.append(release())
        new_calibration(root)
        runs.append(release())
    finally:
        patch.undo()
    return {"root": root, "runs": runs}


@pytest.mark.slow
def test_dist_holds_artifacts_report_sums_and_tarball(released):
    root = released["root"] / "first"
    assert sorted(p.name for p in (root / "artifacts").iterdir()) == sorted(ARTIFACTS)
    for name in (
        "release.json",
        "SHA256SUMS",
        "report.html",
        "report.md",
        "report.json",
        "results.jsonl",
        "digits-1.0.0.tar.gz",
    ):
        assert (root / name).is_file(), name
    check = subprocess.run(
        ["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=root, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    listed = {line.split("  ", 1)[1] for line in (root / "SHA256SUMS").read_text().splitlines()}
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert listed == on_disk
    unpacked = root.parent / "unpacked"
    with tarfile.open(root / "digits-1.0.0.tar.gz") as tar:
        tar.extractall(unpacked, filter="data")
    inner = unpacked / "digits-1.0.0"
    check = subprocess.run(
        ["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=inner, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert (inner / "artifacts" / "digits.x86-cpu.int8" / "manifest.json").is_file()


@pytest.mark.slow
def test_release_json_records_files_toolchain_fidelity_bench_and_gates(released):
    data = released["runs"][0]
    root = released["root"] / "first"
    files = {f["path"]: f for f in data["files"]}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel not in ("release.json", "SHA256SUMS", "digits-1.0.0.tar.gz"):
            assert files[rel]["bytes"] == path.stat().st_size
    assert data["toolchain"]["onnxruntime"]["onnxruntime"] and data["toolchain"]["onnxruntime"]["edgekit"]
    assert data["gates"]["passed"] and not data["gates"]["excluded"]
    for artifact in data["artifacts"]:
        assert artifact["status"] == "ok" and artifact["fidelity"]["passed"]
        assert artifact["fidelity"]["samples"] > 0 and artifact["fidelity"]["accuracy"] is not None
        bench = artifact["bench"]["local"]
        assert bench["status"] == "ok" and bench["p50_ms"] > 0
        assert {g["gate"] for g in artifact["gates"]} >= {"export", "fidelity"}
        manifest = json.loads((root / artifact["dir"] / "manifest.json").read_text())
        assert manifest["fidelity"]["passed"] and artifact["files"]
    assert data["models"][0]["params"] > 0 and data["models"][0]["calibration"]["sha256"]
    records = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    assert len(records) == len(ARTIFACTS) and all(r["latency_samples_ms"] for r in records)


@pytest.mark.slow
def test_an_unchanged_release_rebuilds_nothing(released):
    first, second = released["runs"][0], released["runs"][1]
    assert set(_cache(first).values()) == {"miss"}
    assert set(_cache(second).values()) == {"hit"}
    assert all(
        a["cache"]["verify"] == "hit" and a["cache"]["bench"] == {"local": "hit"} for a in second["artifacts"]
    )
    assert second["seconds"]["build_s"] < first["seconds"]["build_s"]
    # the same artifacts, byte for byte
    assert [a["files"] for a in first["artifacts"]] == [a["files"] for a in second["artifacts"]]


@pytest.mark.slow
def test_a_new_calibration_set_rebuilds_only_int8(released):
    third = released["runs"][2]
    assert _cache(third) == {name: ("miss" if name.endswith("int8") else "hit") for name in ARTIFACTS}


def test_a_failed_gate_releases_nothing_and_allow_failures_marks_it(tmp_path, run_cli):
    targets = '[[target]]\nname = "x86-cpu"\nprecisions = ["fp32"]\n\n[[target]]\nname = "strict-cpu"\nprecisions = ["fp32"]\n'
    config = make_project(tmp_path, targets=targets, gates="", bench_extra="max_p90_ms = { local = 10000.0 }")
    code, out, err = run_cli("release", "--config", config)
    assert code == 1, err
    assert "digits.strict-cpu.fp32: fidelity: " in err and "cosine" in err
    assert not (tmp_path / "dist" / "digits-1.0.0").exists()
    assert not list((tmp_path / "dist").glob(".tmp-*"))
    code, out, err = run_cli("release", "--config", config, "--allow-failures", "--json")
    assert code == 0, err
    assert "left out: digits.strict-cpu.fp32: fidelity: " in err
    data = release_json(tmp_path)
    from edgekit import api

    record = api.ReleaseRecord.from_json(json.loads(out))  # --json prints the API's record
    assert (
        record.release == data
        and not record.passed
        and record.path == str(tmp_path / "dist" / "digits-1.0.0")
    )
    assert record.to_json() == json.loads(out)
    status = {a["name"]: a["status"] for a in data["artifacts"]}
    assert status == {"digits.x86-cpu.fp32": "ok", "digits.strict-cpu.fp32": "excluded"}
    assert data["gates"]["excluded"] == ["digits.strict-cpu.fp32"] and not data["gates"]["passed"]
    assert [p.name for p in (tmp_path / "dist" / "digits-1.0.0" / "artifacts").iterdir()] == [
        "digits.x86-cpu.fp32"
    ]
    report = (tmp_path / "dist" / "digits-1.0.0" / "report.md").read_text()
    assert "strict-cpu" in report and "failed verification" in report
    gates = {g["gate"] for a in data["artifacts"] for g in a["gates"]}
    assert "max_p90_ms@local" in gates
    # the release re-reported: one row per artifact, the excluded one with its state and reason
    from edgekit.report import build_report

    rows = {r.target: r for r in build_report([tmp_path / "dist" / "digits-1.0.0"]).rows}
    assert sorted(rows) == ["strict-cpu", "x86-cpu"]
    assert rows["x86-cpu"].state == "ok" and rows["x86-cpu"].p50 is not None
    assert rows["strict-cpu"].state == "verify_failed" and "cosine" in rows["strict-cpu"].reason


def test_a_latency_limit_fails_the_release(tmp_path, run_cli):
    targets = '[[target]]\nname = "x86-cpu"\nprecisions = ["fp32"]\n'
    config = make_project(tmp_path, targets=targets, bench_extra="max_p50_ms = { local = 0.000001 }")
    code, out, err = run_cli("release", "--config", config)
    assert code == 1 and "digits.x86-cpu.fp32: max_p50_ms@local: p50" in err


@pytest.mark.slow
def test_two_builds_give_the_same_artifacts(tmp_path, run_cli):
    """--no-cache twice: the same model files, byte for byte (ONNX Runtime is deterministic); the
    check that --check-reproducible runs says so too."""
    config = make_project(tmp_path, release_extra='out = "a"')
    assert run_cli("release", "--config", config, "--no-cache", "--check-reproducible")[0] == 0
    text = config.read_text().replace('out = "a"', 'out = "b"')
    config.write_text(text)
    assert run_cli("release", "--config", config, "--no-cache")[0] == 0
    a, b = release_json(tmp_path, out="a"), release_json(tmp_path, out="b")
    models = lambda data: {  # noqa: E731
        (art["name"], f["path"]): f["sha256"]
        for art in data["artifacts"]
        for f in art["files"]
        if f["path"] != "manifest.json"
    }
    # every artifact's files (model, and the INT8 search's sensitivity.json where it ranked nodes)
    assert models(a) == models(b) and {name for name, _ in models(a)} == set(ARTIFACTS)
    repro = a["reproducibility"]
    assert repro["checked"] and sorted(repro["reproducible"]) == sorted(ARTIFACTS)
