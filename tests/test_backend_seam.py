"""The backend seam: every backend question is asked of the Backend object (edgekit/backends/base.py),
and `--option KEY=VALUE` is parsed into each backend's typed Options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekit import targets
from edgekit.backends import get_backend, parse_options, target_status
from edgekit.backends.base import ExportOptions, TensorSpec, manifest_specs
from edgekit.errors import BadInput
from tests.artifacts import make_artifact


# ---- typed options ----------------------------------------------------------------------------------
def test_options_are_typed_and_only_given_keys_are_recorded() -> None:
    ov = parse_options("openvino", ["preset=MIXED", "fast_bias_correction=no", "inference_precision=f16"])
    assert (ov.preset, ov.fast_bias_correction, ov.inference_precision) == ("mixed", False, "f16")
    assert ov.given() == {"preset": "mixed", "fast_bias_correction": False, "inference_precision": "f16"}
    assert ov.to_json()["model_type"] == "auto"
    trt = parse_options("tensorrt", ["max_batch=16", "build_engine=yes", "min_shapes=x:1x3x8x8"])
    assert trt.given() == {"max_batch": 16, "build_engine": True, "min_shapes": "x:1x3x8x8"}
    tfl = parse_options("tflite", ['onnx2tf={"disable_group_convolution": true}'])
    assert tfl.given() == {"onnx2tf": {"disable_group_convolution": True}}
    # the API may pass typed values directly; they are checked the same way
    assert parse_options("tensorrt", {"max_batch": 4}).given() == {"max_batch": 4}


@pytest.mark.parametrize(
    ("backend", "items", "needle"),
    [
        (
            "openvino",
            ["prset=mixed"],
            "--option prset: not an option of the openvino backend. Did you mean 'preset'?",
        ),
        ("openvino", ["preset=fast"], "--option preset=fast: valid values are auto, performance, mixed"),
        ("openvino", ["fast_bias_correction=maybe"], "fast_bias_correction is true or false"),
        ("tensorrt", ["max_batch=1.5"], "--option max_batch=1.5: max_batch takes an integer"),
        ("tensorrt", ["max_bach=16"], "Did you mean 'max_batch'?"),
        ("tensorrt", ["int8_mode=implicit"], "valid values are qdq, calib"),
        ("tflite", ["onnx2tf=x"], "--option onnx2tf=x: onnx2tf takes a JSON object"),
        ("onnxruntime", ["threads=2"], "not an option of the onnxruntime backend, which takes no --option"),
        ("openvino", ["preset"], "--option 'preset' must be KEY=VALUE"),
        ("openvino", ["=x"], "must be KEY=VALUE"),
        ("openvino", ["preset=mixed", "preset=performance"], "--option preset is given twice"),
        ("tensorrt", {"max_batch": True}, "max_batch takes an integer"),
    ],
)
def test_option_mistakes_are_one_line_bad_input(backend: str, items, needle: str) -> None:
    with pytest.raises(BadInput) as info:
        parse_options(backend, items)
    message = str(info.value)
    assert needle in message and "\n" not in message and info.value.exit_code == 2


def test_options_of_parses_once_and_leaves_typed_extra() -> None:
    """Backends not yet on typed options read `ExportOptions.extra`: after `options_of` it holds typed
    values (the `--option onnx2tf=...` ValueError came from a string reaching onnx2tf's kwargs)."""
    options = ExportOptions(extra={"onnx2tf": '{"a": 1}'})
    backend = get_backend("tflite")
    parsed = backend.options_of(options)
    assert options.extra == {"onnx2tf": {"a": 1}} and options.backend_options is parsed
    assert backend.options_of(options) is parsed
    with pytest.raises(BadInput, match="not an option of the onnxruntime backend"):
        get_backend("onnxruntime").options_of(ExportOptions(extra={"onnx2tf": "{}"}))


def test_cli_rejects_a_mistyped_option_before_any_work(tmp_path: Path, run_cli) -> None:
    from tests.models import write_model_and_sets

    model, _, _, _ = write_model_and_sets(tmp_path, "conv")
    out = tmp_path / "out"
    code, _, err = run_cli("export", model, "--target", "x86-cpu", "--option", "thread=2", "-o", out)
    assert code == 2, err
    assert err.strip().count("\n") == 0 and "not an option of the onnxruntime backend" in err
    assert not out.exists()


# ---- the questions -----------------------------------------------------------------------------------
def test_precisions_and_calibration() -> None:
    ort, ov, trt = get_backend("onnxruntime"), get_backend("openvino"), get_backend("tensorrt")
    assert ort.needs_calibration("int8", ExportOptions())
    assert not ort.needs_calibration("int8", ExportOptions(dynamic_int8=True))
    assert not ort.needs_calibration("fp16", ExportOptions())
    assert ov.needs_calibration("int8", ExportOptions(dynamic_int8=True))  # NNCF is static only
    assert trt.needs_calibration("int8", ExportOptions(dynamic_int8=True))
    assert not ort.needs_calibration("int8", ExportOptions(weights_only=True))
    assert not ort.needs_calibration("int4", ExportOptions())  # weight-only: a set refines, never required
    with pytest.raises(BadInput, match="exports fp32, fp16, int8, int4, not 'int2'"):
        ort.check_precision("int2", targets.get("x86-cpu"))
    with pytest.raises(BadInput, match="target 'intel-npu' supports fp16, int8, not fp32"):
        ov.check_precision("fp32", targets.get("intel-npu"))


def test_deployable_files_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"x" * 10)
    (tmp_path / "model.onnx.data").write_bytes(b"x" * 100)
    (tmp_path / "export.log").write_bytes(b"x" * 1000)
    ort = get_backend("onnxruntime")
    assert ort.deployable_files(tmp_path, "model.onnx") == ["model.onnx", "model.onnx.data"]
    assert ort.deployable_bytes(tmp_path, "model.onnx") == 110
    (tmp_path / "model.xml").write_bytes(b"x" * 7)
    (tmp_path / "model.bin").write_bytes(b"x" * 70)
    assert get_backend("openvino").deployable_bytes(tmp_path, "model.xml") == 77
    roles = {r["path"]: r["role"] for r in get_backend("openvino").file_records(tmp_path, "model.xml")}
    assert roles == {
        "model.xml": "entry",
        "model.bin": "model",
        "model.onnx": "aux",
        "model.onnx.data": "aux",
        "export.log": "aux",
    }


def test_device_string_comes_from_the_target_profile() -> None:
    ov = get_backend("openvino")
    for name, device in (("intel-cpu", "CPU"), ("intel-gpu", "GPU"), ("intel-npu", "NPU")):
        assert ov.run_device(targets.get(name), {}) == device
    # a profile not found here: the device the manifest recorded at export
    assert ov.run_device(None, {"details": {"device": "GPU"}}) == "GPU"
    assert get_backend("onnxruntime").run_device(targets.get("x86-cpu"), {}) == "CPU"


def test_times_here_is_the_backends_answer() -> None:
    ort, ov, trt = get_backend("onnxruntime"), get_backend("openvino"), get_backend("tensorrt")
    assert ort.times_here(targets.get("x86-cpu"), {})
    assert ov.times_here(targets.get("intel-cpu"), {})
    assert not ov.times_here(targets.get("intel-gpu"), {})  # the host would compile for its CPU
    assert not trt.times_here(targets.get("x86-gpu"), {"details": {"engine": None}})
    assert trt.times_here(targets.get("x86-gpu"), {"details": {"engine": "model.engine"}})
    assert not trt.times_here(targets.get("jetson-nano"), {"details": {"engine": "model.engine"}})


def test_device_files_leave_device_built_engines_home() -> None:
    manifest = {
        "entry": "model.qdq.onnx",
        "files": [
            {"path": "model.qdq.onnx", "sha256": "a"},
            {"path": "build.sh", "sha256": "b"},
            {"path": "engines/orin/model.engine", "sha256": "c"},
        ],
    }
    assert [p for p, _ in get_backend("tensorrt").device_files(manifest)] == ["model.qdq.onnx", "build.sh"]
    assert len(get_backend("onnxruntime").device_files(manifest)) == 3


def test_status_lines_for_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    trt = get_backend("tensorrt")
    monkeypatch.setattr(type(trt), "engine_available", lambda self: False)
    assert trt.status() == "installed (bundle only: no tensorrt here, engines build on the device)"
    assert target_status(targets.get("x86-gpu"))["installed"]
    monkeypatch.setattr(type(trt), "engine_available", lambda self: True)
    assert trt.status() == "installed"
    odd = targets.TargetProfile(name="odd", backend="onnxrt")
    row = target_status(odd)
    assert not row["installed"] and row["status"] == "unknown backend 'onnxrt'. Did you mean 'onnxruntime'?"


# ---- one spec builder, one parser ------------------------------------------------------------------
def test_tensor_spec_builder_and_parser() -> None:
    import numpy as np

    image = TensorSpec.build("x:0", (None, 3, "H", 224), np.float32, "x")
    assert image.shape == ["?", 3, "H", 224] and image.layout == "NCHW" and image.dtype == "float32"
    mask = TensorSpec.build("m", [1, 1, 8, 8], "int64")
    assert mask.layout == "" and mask.source_name == "m"
    nhwc = TensorSpec.build("t", [1, 8, 8, 3], "int8", layout="NHWC", quant={"scale": 0.1, "zero_point": 0})
    manifest = {"inputs": [image.to_json(), mask.to_json()], "outputs": [nhwc.to_json()]}
    inputs, outputs = manifest_specs(json.loads(json.dumps(manifest)))
    assert inputs == [image, mask] and outputs == [nhwc]


def test_host_runner_is_the_one_ort_runner(tmp_path: Path) -> None:
    import numpy as np

    from edgekit.backends.ort import OrtRunner

    art = make_artifact(tmp_path / "a")
    manifest = json.loads((art / "manifest.json").read_text())
    with get_backend("onnxruntime").open_runner(art, manifest) as runner:
        assert isinstance(runner, OrtRunner)
        out = runner.infer({"x": np.ones((1, 16), np.float32)})
    assert out["y"].shape == (1, 16)
    manifest["entry"] = "missing.onnx"
    with pytest.raises(BadInput, match="missing.onnx is missing"):
        get_backend("onnxruntime").open_runner(art, manifest)
