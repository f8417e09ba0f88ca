"""Issue 15's plumbing: --task / --metric and the task gates through the CLI, the API and the release
config; the task recorded at export and used by every verdict; verdicts on samples the INT8 search did
not select on; arm64 INT8 scored and verified with reference Q/DQ numerics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from helpers import assert_one_line
from models import conv_net, sample_set

from edgekit import api
from edgekit.errors import BadInput
from edgekit.int8 import holdout
from edgekit.task_options import GATE_KEYS, TASKS, load_metric, task_of


def _project(tmp: Path, calib_count: int = 32, val_count: int = 12, same: bool = False) -> dict[str, Path]:
    model, _ = conv_net()
    path = tmp / "conv.onnx"
    onnx.save(model, str(path))
    calib, val = tmp / "calib.npz", tmp / "val.npz"
    np.savez(calib, **sample_set(model, calib_count, seed=1))
    if same:
        val = calib
    else:
        np.savez(val, **sample_set(model, val_count, seed=2))
    return {"model": path, "calib": calib, "val": val}


def _export(run_cli, paths: dict[str, Path], target: str, out: Path, *args: Any) -> dict[str, Any]:
    """INT8 with --val; judged as raw outputs unless `args` say otherwise (random inputs make the conv
    net's class ranking fragile: these tests are about the plumbing, not its top-1 agreement)."""
    if "--task" not in args:
        args = ("--task", "raw", *args)
    code, stdout, err = run_cli(
        "export", paths["model"], "-t", target, "--int8", "--calib", paths["calib"], "--val", paths["val"],
        "-o", out, "--search-budget", "60", "--json", *args,
    )  # fmt: skip
    assert code == 0, err
    return json.loads(stdout)["manifest"]


# ---- the words a user says ---------------------------------------------------------------------------
def test_task_names_agree_with_fidelity() -> None:
    from edgekit.fidelity.tasks import TASKS as FIDELITY_TASKS
    from edgekit.targets import Gates

    assert TASKS == FIDELITY_TASKS
    assert set(GATE_KEYS) <= set(Gates.__dataclass_fields__)


@pytest.mark.parametrize("verb", ["export", "verify", "bench"])
def test_every_verb_takes_task_metric_and_task_gates(run_cli, verb: str) -> None:
    code, out, _ = run_cli(verb, "--help")
    assert code == 0
    for flag in ("--task", "--metric", "--min-f1", "--min-mask-iou", "--min-embedding-cosine", "--min-metric",
                 "--min-slice-cosine", "--max-kl", "--min-cosine"):  # fmt: skip
        assert flag in out, (verb, flag)


@pytest.mark.parametrize(
    "args,needle",
    [
        (("--task", "detetc"), "Invalid value for '--task'"),
        (("--metric", "nocolon"), "must be 'module:function'"),
        (("--metric", "mod:not a name"), "must be 'module:function'"),
        (("--min-f1", "high"), "Invalid value for '--min-f1'"),
        (("--max-kl", "x"), "Invalid value for '--max-kl'"),
    ],
)
def test_bad_task_metric_and_gate_values_are_one_line_exit_2(run_cli, tmp_path: Path, args, needle) -> None:
    paths = _project(tmp_path)
    for verb in (
        ("export", paths["model"], "-t", "x86-cpu", "-o", tmp_path / "o"),
        ("verify", tmp_path, "--val", paths["val"]),
        ("bench", tmp_path, "--val", paths["val"]),
    ):
        code, _, err = run_cli(*verb, *args)
        assert_one_line(code, err, 2, needle)
    assert not (tmp_path / "o").exists()


def test_a_metric_module_that_does_not_import_is_refused_before_work(run_cli, tmp_path: Path) -> None:
    paths = _project(tmp_path)
    code, _, err = run_cli(
        "export", paths["model"], "-t", "x86-cpu", "-o", tmp_path / "o", "--metric", "no_such_module_x:f"
    )
    assert_one_line(code, err, 2, "cannot import module 'no_such_module_x'")
    assert not (tmp_path / "o").exists()
    (tmp_path / "mymetric_mod.py").write_text("def score(reference, actual, labels):\n    return 1.0\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        assert load_metric("mymetric_mod:score")({}, {}, None) == 1.0
        with pytest.raises(BadInput, match="has no 'scor'"):
            load_metric("mymetric_mod:scor")
    finally:
        sys.path.remove(str(tmp_path))


def test_requests_take_task_metric_and_every_gate() -> None:
    def metric(reference, actual, labels):
        return 1.0

    req = api.ExportRequest("m.onnx", "x86-cpu", task="detect", metric=metric, gate_overrides={"min_f1": 0.8})
    assert req.to_json()["task"] == "detect" and req.to_json()["metric"].endswith("metric")
    assert (
        api.VerifyRequest("a", "v.npz", task="embed", gate_overrides={"min_embedding_cosine": 0.9}).task
        == "embed"
    )
    assert api.BenchRequest(["a"], metric="m:f", gate_overrides={"max_kl": 0.1}).metric == "m:f"
    with pytest.raises(BadInput, match="task 'dog' is not a task"):
        api.VerifyRequest("a", "v.npz", task="dog")
    with pytest.raises(BadInput, match="unknown gate 'min_fl'. Did you mean 'min_f1'"):
        api.BenchRequest(["a"], gate_overrides={"min_fl": 1})


# ---- honest verdicts ---------------------------------------------------------------------------------
def _reader(count: int, seed: int) -> Any:
    from edgekit.calib import CalibrationSet, InputInfo

    rng = np.random.default_rng(seed)
    data = CalibrationSet({"x": rng.standard_normal((count, 4)).astype(np.float32)}, source=f"s{seed}.npz")
    return data.validate([InputInfo("x", (1, 4), np.dtype("float32"))])


def test_plan_selection_and_verdict_never_share_a_sample() -> None:
    big = holdout.plan(_reader(40, 1), _reader(12, 2))
    assert big.selection_set == "calibration" and big.verdict == list(range(12))
    assert not set(big.selection) & set(big.calibrate) and len(big.selection) == 8
    small = holdout.plan(_reader(8, 1), _reader(12, 2))
    assert small.selection_set == "validation" and len(small.selection) == 6
    assert not set(small.selection) & set(small.verdict) and len(small.verdict) == 6
    same = _reader(40, 1)
    twice = holdout.plan(same, same)  # the same file as --calib and --val
    assert twice.excluded_duplicates == twice.selection and not set(twice.verdict) & set(twice.selection)
    assert len(twice.verdict) == 32
    lone = holdout.plan(_reader(8, 1), _reader(1, 2))  # one validation sample: nothing to split
    assert lone.selection_set == "calibration" and lone.verdict == [0]
    assert "themselves" in lone.describe_selection()
    labelled = holdout.plan(_reader(40, 1), _reader(12, 2), need_labels=True)
    assert labelled.selection_set == "validation"  # accuracy control needs labelled selection samples


def test_with_val_the_manifest_shows_disjoint_selection_and_verdict(run_cli, tmp_path: Path) -> None:
    paths = _project(tmp_path, calib_count=32, val_count=12)
    manifest = _export(run_cli, paths, "x86-cpu", tmp_path / "o")
    samples = manifest["samples"]
    assert samples["disjoint"] is True
    selection, verdict = samples["selection"], samples["verdict"]
    assert (
        selection["set"] == "calibration" and selection["source"] == "calib.npz" and selection["count"] == 8
    )
    assert verdict["set"] == "validation" and verdict["source"] == "val.npz" and verdict["count"] == 12
    assert selection["score"]["passed"] is not None and verdict["score"]["passed"] is True
    assert len(selection["indices_sha256"]) == 64 and len(selection["indices"]) == 8
    assert manifest["fidelity"]["samples"] == 12
    assert manifest["details"]["int8_search"]["scored_on"] == "8 held-out calibration samples"
    # every fidelity record names what produced it
    fidelity = manifest["fidelity"]
    assert fidelity["runtime"].startswith("onnxruntime ") and fidelity["precision"] == "int8"
    assert fidelity["device"].startswith("this host")
    assert manifest["task"]["kind"] in TASKS and manifest["task"]["outputs"]


def test_a_small_calibration_set_selects_on_part_of_val(run_cli, tmp_path: Path) -> None:
    paths = _project(tmp_path, calib_count=8, val_count=12)
    manifest = _export(run_cli, paths, "x86-cpu", tmp_path / "o")
    selection, verdict = manifest["samples"]["selection"], manifest["samples"]["verdict"]
    assert selection["set"] == verdict["set"] == "validation"
    assert not set(selection["indices"]) & set(verdict["indices"])
    assert selection["count"] + verdict["count"] == 12 and manifest["fidelity"]["samples"] == verdict["count"]
    assert manifest["details"]["int8_search"]["scored_on"].startswith(
        f"{selection['count']} validation samples"
    )


def test_the_same_file_as_calib_and_val_keeps_selected_samples_out_of_the_verdict(
    run_cli, tmp_path: Path
) -> None:
    paths = _project(tmp_path, calib_count=32, same=True)
    manifest = _export(run_cli, paths, "x86-cpu", tmp_path / "o")
    samples = manifest["samples"]
    assert samples["disjoint"] is True
    assert sorted(samples["verdict"]["excluded_duplicates"]) == sorted(samples["selection"]["indices"])
    assert manifest["fidelity"]["samples"] == 32 - 8


# ---- the task every verdict is judged by ---------------------------------------------------------------
def test_verify_judges_by_the_manifests_task_and_task_overrides(run_cli, tmp_path: Path, monkeypatch) -> None:
    from edgekit.services import verification

    paths = _project(tmp_path)
    code, out, err = run_cli(
        "export", paths["model"], "-t", "x86-cpu", "-o", tmp_path / "o", "--task", "classify", "--json"
    )
    assert code == 0, err
    manifest = json.loads(out)["manifest"]
    assert manifest["task"]["kind"] == "classify" and manifest["task"]["source"] == "--task"
    artifact = json.loads(out)["artifact"]
    seen: list[Any] = []
    real = verification.compare

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("task"))
        return real(*args, **kwargs)

    monkeypatch.setattr(verification, "compare", spy)
    report = api.verify(api.VerifyRequest(artifact, paths["val"], write=False))
    assert seen[-1].kind == "classify"  # from the manifest
    assert report.runtime.startswith("onnxruntime") and report.precision == "fp32"
    api.verify(api.VerifyRequest(artifact, paths["val"], write=False, task="raw"))
    assert seen[-1].kind == "raw" and seen[-1].source == "--task"


def test_task_of_reads_the_manifest_then_the_model(tmp_path: Path) -> None:
    paths = _project(tmp_path)
    recorded = {"kind": "embed", "source": "--task", "outputs": ["logits"], "params": {}, "slices": {}}
    assert task_of({"task": recorded}, None, paths["model"]).kind == "embed"
    assert task_of({"task": recorded}, "raw", paths["model"]).kind == "raw"
    assert task_of({}, None, paths["model"]).kind in TASKS


def test_release_tasks_carry_task_and_metric_to_export_and_verify(tmp_path: Path, monkeypatch) -> None:
    from edgekit.release import build

    seen: dict[str, Any] = {}

    class Outcome:
        path = tmp_path / "built"

    def fake_export(req: Any) -> Any:
        seen["export"] = (req.task, req.metric)
        Outcome.path.mkdir(exist_ok=True)
        return Outcome()

    def fake_verify(req: Any) -> Any:
        seen["verify"] = (req.task, req.metric)
        from edgekit.fidelity import FidelityReport

        return FidelityReport(samples=1, outputs=[])

    from edgekit.services import exporting, verification

    monkeypatch.setattr(exporting, "export", fake_export)
    monkeypatch.setattr(verification, "verify", fake_verify)
    task = build.Task("k", "n", "m.onnx", "x86-cpu", "int8", val="v.npz", task="classify", metric="mod:fn")
    result = build.run_task(task, tmp_path)
    assert result["status"] == "ok", result
    assert seen == {"export": ("classify", "mod:fn"), "verify": ("classify", "mod:fn")}


# ---- targets that are not this host ---------------------------------------------------------------------
def test_arm64_int8_is_scored_and_verified_with_reference_qdq_numerics(run_cli, tmp_path: Path) -> None:
    import platform

    from edgekit.backends import get_backend
    from edgekit.targets import get as get_target

    assert get_target("arm64-cpu").architecture == "arm64" and get_target("x86-cpu").architecture == "x86_64"
    foreign, native = ("arm64-cpu", "x86-cpu") if "86" in platform.machine() else ("x86-cpu", "arm64-cpu")
    paths = _project(tmp_path)
    for target, kind in ((foreign, "reference"), (native, "host")):
        manifest = _export(run_cli, paths, target, tmp_path / target)
        assert manifest["numerics"]["kind"] == kind
        assert manifest["details"]["int8_search"]["numerics"] == kind
        assert ("Q/DQ fusion off" in manifest["fidelity"]["runtime"]) == (kind == "reference")
        artifact = tmp_path / target / manifest["name"]
        with get_backend("onnxruntime").open_runner(artifact, manifest) as runner:
            options = runner.session.get_session_options()
            try:
                fused = options.get_session_config_entry("session.disable_quant_qdq") != "1"
            except RuntimeError:  # never set: onnxruntime's default, Q/DQ fused
                fused = True
        assert fused == (kind == "host")


def test_a_profile_arch_must_be_known(tmp_path: Path) -> None:
    from edgekit.targets import TargetProfile

    path = tmp_path / "odd.toml"
    path.write_text('name = "odd"\nbackend = "onnxruntime"\narch = "mips"\n')
    with pytest.raises(BadInput, match="arch = 'mips' is not one of arm64, x86_64"):
        TargetProfile.from_file(path)
    path.write_text('name = "odd"\nbackend = "onnxruntime"\narch = "aarch64"\n')
    assert TargetProfile.from_file(path).architecture == "arm64"


# ---- a user's metric drives the gate and the search -------------------------------------------------------
METRIC_MODULE = '''\
import json
import os

import numpy as np


def agreement(reference, actual, labels):
    """Share of samples whose arg-max agrees; every call is logged (output names, sample count)."""
    with open(os.environ["GATE_METRIC_LOG"], "a") as log:
        log.write(json.dumps({"keys": sorted(reference), "samples": len(next(iter(reference.values())))}) + "\\n")
    ref, act = next(iter(reference.values())), next(iter(actual.values()))
    return float(np.mean(ref.reshape(len(ref), -1).argmax(1) == act.reshape(len(act), -1).argmax(1)))
'''


def test_metric_module_function_drives_the_search_and_the_gate(run_cli, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "gate_test_metric.py").write_text(METRIC_MODULE)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("GATE_METRIC_LOG", str(log))
    monkeypatch.syspath_prepend(str(tmp_path))
    paths = _project(tmp_path, calib_count=32, val_count=12)
    metric = ("--metric", "gate_test_metric:agreement")
    manifest = _export(run_cli, paths, "x86-cpu", tmp_path / "a", *metric, "--min-metric", "0.5")
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert {c["samples"] for c in calls} >= {8, 12}  # the search's 8 held-out samples, the verdict's 12
    assert all(c["keys"] == ["logits"] for c in calls)  # the source model's output names
    assert manifest["metric"] == "gate_test_metric:agreement"
    assert manifest["fidelity"]["metric"]["value"] >= 0.5 and manifest["fidelity"]["passed"]
    # a floor the metric cannot reach: the gate fails on it, naming it
    code, out, err = run_cli(
        "export", paths["model"], "-t", "x86-cpu", "--calib", paths["calib"], "--val", paths["val"],
        "-o", tmp_path / "b", "--task", "raw", *metric, "--min-metric", "1.5", "--json",
    )  # fmt: skip
    assert code == 1 and "metric" in err, err
    # verify imports the recorded metric again
    artifact = tmp_path / "a" / manifest["name"]
    report = api.verify(
        api.VerifyRequest(artifact, paths["val"], write=False, gate_overrides={"min_metric": 1.5})
    )
    assert not report.passed and report.metric is not None


def test_a_classifier_released_on_its_accuracy_drop_not_its_cosine(tmp_path: Path, monkeypatch) -> None:
    """[[model]] task = "classify" with max_accuracy_drop = 3.0: judged by accuracy drop and top-1
    agreement, so an artifact with a cosine below min_cosine is released (issue 15's text classifier)."""
    from edgekit.fidelity import compare
    from edgekit.targets import Gates

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((200, 4)).astype(np.float32) * 3
    labels = logits.argmax(1)
    noisy = logits * 0.7 + 0.5  # ranking kept ...
    for i in range(3):  # ... but for 3 of 200 samples: 1.5 points of accuracy
        order = noisy[i].argsort()
        noisy[i, order[-1]], noisy[i, order[-2]] = noisy[i, order[-2]], noisy[i, order[-1]]
    from edgekit.fidelity import TaskSpec

    gates = Gates(max_accuracy_drop=3.0, min_top1_agreement=90.0)
    classify = TaskSpec("classify", "--task", ("logits",))
    report = compare({"logits": logits}, {"logits": noisy}, labels, gates, task=classify)
    raw = compare({"logits": logits}, {"logits": noisy}, labels, gates)
    assert report.outputs[0].cosine < 0.99 and not raw.passed  # raw judging refuses it on cosine ...
    assert report.passed, report.failures  # ... the task judges accuracy drop and agreement
    assert report.accuracy_drop is not None and report.accuracy_drop <= 3.0


def test_bench_val_and_verify_device_judge_by_the_task_and_name_the_device(run_cli, tmp_path: Path) -> None:
    """On-device fidelity (the local device, through the agent): the manifest's task, --task overriding
    it, and the runtime/precision/device that produced the numbers."""
    from helpers import local_device, write_devices

    paths = _project(tmp_path)
    code, out, err = run_cli(
        "export", paths["model"], "-t", "x86-cpu", "-o", tmp_path / "o", "--task", "classify", "--json"
    )
    assert code == 0, err
    artifact = json.loads(out)["artifact"]
    devices = write_devices(tmp_path / "devices.toml", local_device("here", "x86-cpu", tmp_path / "work"))
    code, out, err = run_cli(
        "bench", artifact, "--device", "here", "--devices", devices, "--iterations", "2", "--warmup", "0",
        "--val", paths["val"], "-o", tmp_path / "results.jsonl", "--json",
    )  # fmt: skip
    assert code == 0, err
    (record,) = json.loads(out)
    fidelity = record["fidelity"]
    assert fidelity["task"]["kind"] == "classify" and fidelity["precision"] == "fp32"
    assert fidelity["device"].startswith("here") and fidelity["runtime"].startswith("onnxruntime")
    report = api.verify(
        api.VerifyRequest(
            artifact, paths["val"], device="here", devices_file=devices, task="raw", write=False
        )
    )
    assert report.task["kind"] == "raw" and report.device.startswith("here")


def test_the_last_shard_of_a_split_takes_the_unsplit_models_task(tmp_path: Path) -> None:
    from edgekit.split.export import _unsplit_task

    paths = _project(tmp_path)
    shards = [{"outputs": [{"name": "hidden"}]}, {"outputs": [{"name": "logits"}]}]
    data = {"source": {"path": str(paths["model"])}, "shards": shards}
    assert _unsplit_task(data) == task_of({}, None, paths["model"]).kind
    shards[-1]["outputs"] = [{"name": "other"}]  # the task's outputs are not the last shard's: its own
    assert _unsplit_task(data) is None
    assert _unsplit_task({"source": {"path": str(tmp_path / "gone.onnx")}, "shards": shards}) is None
