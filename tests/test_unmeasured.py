"""Issue 19, "nothing unmeasured passes": a result that was never measured is never a pass."""

from __future__ import annotations

from types import SimpleNamespace

from edgekit.services import precision as auto


def _outcome(manifest_details: dict) -> SimpleNamespace:
    manifest = {"details": manifest_details, "size": {"artifact_bytes": 100}, "effective_precision": "int8"}
    return SimpleNamespace(fidelity=None, manifest=manifest, path=None)


def test_auto_row_without_fidelity_or_search_is_not_measured_not_passed() -> None:
    row = auto._fidelity_row(_outcome({}))  # e.g. --dynamic: no search record, no verification
    assert row["passed"] is not True
    assert row["status"] == "not measured"


def test_auto_row_with_a_search_record_keeps_its_verdict() -> None:
    assert auto._fidelity_row(_outcome({"int8_search": {"passed": True}}))["passed"] is True
    assert auto._fidelity_row(_outcome({"int8_search": {"passed": False}}))["status"] == "gate failed"


def test_pipeline_bench_without_the_unsplit_model_says_fidelity_not_measured(tmp_path, run_cli) -> None:
    import json

    import numpy as np
    import onnx

    from edgekit.api import SplitRequest, split
    from tests import models

    path = tmp_path / "res.onnx"
    onnx.save(models.resnet_ish(size=16, width=4, blocks=2), str(path))
    val = tmp_path / "val.npz"
    np.savez(val, input=np.random.default_rng(0).standard_normal((4, 1, 3, 16, 16)).astype(np.float32))
    split(SplitRequest(path, parts=2, out_dir=tmp_path / "res.split", profile=False))
    code, _, err = run_cli(
        "export", tmp_path / "res.split", "--target", "x86-cpu", "--fp32", "-o", tmp_path / "out"
    )
    assert code == 0, err
    path.unlink()  # the unsplit model is gone: end-to-end fidelity cannot be measured
    results = tmp_path / "results.jsonl"
    code, out, err = run_cli(
        "bench", tmp_path / "out" / "res.pipeline", "--device", "local", "--device", "local",
        "--val", val, "--warmup", "1", "-o", results, "--json",
    )  # fmt: skip
    assert code != 0, "a pipeline whose fidelity was not measured does not exit 0"
    record = json.loads(out)[0]
    assert record["fidelity"]["status"] == "not measured" and record["fidelity"]["passed"] is None
    assert "unsplit model" in record["fidelity"]["reason"]
    assert "not measured" in err


def test_inspect_int4_fit_is_labelled_an_estimate_while_the_target_cannot_export_int4(tmp_path) -> None:
    import onnx

    from edgekit import analysis
    from edgekit import targets as target_profiles
    from edgekit.cli.render.fleet import _fit_table
    from tests import analysis_models as models

    path = tmp_path / "m.onnx"
    onnx.save(models.chain_model()[0], str(path))
    report = analysis.analyze(path)
    rows = analysis.fit_table(report, [{"name": "board", "target": "x86-cpu", "memory_mb": 4096}])
    by = {r["precision"]: r for r in rows}
    assert by["fp32"]["fits"] is True and by["fp32"]["fits_basis"] == "estimate"
    if "int4" not in target_profiles.get("x86-cpu").precisions:
        assert by["int4"]["fits_basis"] == "estimate: x86-cpu cannot export int4 yet"
    table = _fit_table(rows)
    cells = [str(c) for col in table.columns for c in col._cells]
    assert any("estimate" in c for c in cells)


def test_split_predictions_say_where_their_node_times_come_from(tmp_path) -> None:
    """Node time shares come from onnxruntime on this host (optimisations off); a plan for a TensorRT
    device says its prediction spreads the device's measured whole-model time by those shares."""
    import json

    import onnx

    from edgekit import ingest
    from edgekit.api import SplitRequest, split
    from tests import models

    path = tmp_path / "res.onnx"
    onnx.save(models.resnet_ish(size=16, width=4, blocks=2), str(path))
    record = split(SplitRequest(path, parts=2, out_dir=tmp_path / "p", verify_samples=1))
    predicted = json.loads((record.path / "pipeline.json").read_text())["predicted"]
    assert "onnxruntime" in predicted["basis"] and "this host" in predicted["basis"]

    devices = tmp_path / "devices.toml"
    devices.write_text(
        '[devices.local]\ntransport = "local"\ntarget = "x86-cpu"\n'
        '[devices.orin]\nhost = "127.0.0.1"\ntarget = "jetson-orin-nano"\nlink_mbps = 100\nlink_latency_ms = 1\n'
    )
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps({
        "status": "ok", "kind": "bench", "timestamp": "2026-01-01T00:00:00+00:00",
        "artifact": {"name": "res.jetson-orin-nano.fp32", "precision": "fp32", "target": "jetson-orin-nano",
                     "source_sha256": ingest.model_sha256(path)},
        "device": {"name": "orin"}, "latency_ms": {"p50": 2.0},
    }) + "\n")  # fmt: skip
    request = SplitRequest(
        path, devices=["local", "orin"], devices_file=devices, results=[results], out_dir=tmp_path / "d",
        verify_samples=1,
    )  # fmt: skip
    data = json.loads((split(request).path / "pipeline.json").read_text())
    basis = data["predicted"]["basis"]
    assert "onnxruntime" in basis and "this host" in basis
    assert any("orin" in n and "tensorrt" in n and "onnxruntime" in n for n in data["notes"]), data["notes"]
