"""TensorRT backend: everything up to the engine build runs here for real (onnxruntime, CPU); the engine
builds are marked `tensorrt` and skip where TensorRT or a GPU is absent. trtexec is faked only in the
quoting test (a shell script that records its argv), and named so."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shlex
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgekit import ingest, targets
from edgekit.backends import get_backend
from edgekit.backends.base import ExportJob, ExportOptions
from edgekit.backends.ort import OrtRunner
from edgekit.backends.trt import calibration, cuda
from edgekit.backends.trt import formats as fmt
from edgekit.calib import CalibrationSet
from edgekit.errors import BadInput, MissingDependency
from tests.models import plain_conv_net, sample_set, save

TRT_TARGETS = {
    "jetson-nano": "TRT-8201-EntropyCalibration2",
    "jetson-xavier-nx": "TRT-8502-EntropyCalibration2",
    "jetson-orin-nano": "TRT-100300-EntropyCalibration2",
    "x86-gpu": "TRT-100300-EntropyCalibration2",
}
DATA = Path(__file__).parent / "data"
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
needs_engine = pytest.mark.skipif(
    not (HAVE_TRT and cuda.gpu_present()),
    reason="engine builds need the `tensorrt` package and an NVIDIA GPU (pip install 'edgekit[tensorrt]')",
)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "prepared-cache"))


def _conv_net(path: Path, batch: int | str = 1) -> Path:
    """A 16x16 conv net, PyTorch-style tensor names and an input named 'input:0'."""
    model, _ = plain_conv_net(batch=batch, stride=1, inp="input:0", torch_names=True, seed=0)
    return save(model, path)


def _export(
    tmp_path: Path,
    target_name: str,
    precision: str = "int8",
    *,
    batch="1",
    extra=None,
    method="entropy",
    ignore=(),
):
    backend = get_backend("tensorrt")
    target = targets.get(target_name)
    batch_dim = int(batch) if str(batch).isdigit() else batch
    model = _conv_net(tmp_path / f"net_{batch}.onnx", batch=batch_dim)
    prepared = ingest.prepare(
        model,
        ingest.PrepareOptions(
            min_opset=backend.min_opset, max_opset=target.opset_max, name_pattern=backend.name_pattern
        ),
    )
    calib_path = tmp_path / "calib.npz"
    np.savez(calib_path, **sample_set(onnx.load(str(model)), 16, seed=1, uniform=(-1.0, 1.0)))
    calib = CalibrationSet.load(calib_path).validate(prepared.inputs)
    out = tmp_path / f"{target_name}.{precision}.{batch}"
    out.mkdir()
    options = ExportOptions(calib_method=method, extra=dict(extra or {}), ignore=list(ignore))
    result = backend.export(ExportJob(prepared, target, precision, out, calib, options))
    return result, out, calib, model


def _manifest(result, target_name: str, precision: str) -> dict:
    return {
        "entry": result.entry,
        "inputs": [s.to_json() for s in result.inputs],
        "outputs": [s.to_json() for s in result.outputs],
        "precision": precision,
        "target": target_name,
        "backend": "tensorrt",
        "details": result.details,
    }


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


# ---- versions and the calibration cache --------------------------------------------------------
@pytest.mark.parametrize(
    ("version", "code"),
    [
        ("8.2.1", 8201),
        ("8.5.2", 8502),
        ("8.6.1", 8601),
        ("10.0.0", 100000),
        ("10.3.0", 100300),
        ("10.16.2", 101602),
    ],
)
def test_version_code_encoding(version, code):
    assert fmt.version_code(version) == code
    assert fmt.version_from_code(code) == version


def test_cache_round_trip_is_bit_exact():
    rng = random.Random(7)
    amax = {f"/layer{i}/Conv_output_0": rng.uniform(1e-4, 50.0) for i in range(50)}
    amax["input_1:0"] = 1.0
    amax["weird name: with colon"] = 3.5
    scales = {name: fmt.amax_to_scale(value) for name, value in amax.items()}
    text = fmt.write_calib_cache(scales, "8.2.1")
    parsed = fmt.parse_calib_cache(text)
    assert parsed.version_code == 8201 and parsed.algorithm == "EntropyCalibration2"
    assert list(parsed.scales) == list(scales)
    for name, scale in scales.items():
        assert struct.pack(">f", parsed.scales[name]) == struct.pack(">f", scale)
    assert fmt.parse_calib_cache(fmt.write_calib_cache(parsed.scales, "8.2.1")).scales == parsed.scales


def test_cache_line_format_matches_tensorrt():
    # scale = amax / 127 as big-endian float32 hex; amax 127 -> scale 1.0 -> 3f800000
    text = fmt.write_calib_cache({"data": fmt.amax_to_scale(127.0)}, "10.3.0")
    assert text == "TRT-100300-EntropyCalibration2\ndata: 3f800000\n"
    assert fmt.parse_calib_cache("TRT-7000-EntropyCalibration2\nprob: 3c010a14\n").scales[
        "prob"
    ] == pytest.approx(1 / 127, rel=1e-3)


def test_cache_rejects_garbage():
    with pytest.raises(BadInput):
        fmt.parse_calib_cache("not a cache\n")
    with pytest.raises(BadInput):
        fmt.parse_calib_cache("TRT-8201-EntropyCalibration2\nx: 12zz\n")
    with pytest.raises(BadInput):
        fmt.write_calib_cache({"a\nb": 1.0}, "8.2.1")


@pytest.mark.parametrize("target_name", list(TRT_TARGETS))
def test_int8_export_header_and_same_scales(tmp_path, target_name):
    result, out, _, _ = _export(tmp_path, target_name)
    cache = fmt.parse_calib_cache((out / "calib.cache").read_text())
    assert (out / "calib.cache").read_text().splitlines()[0] == TRT_TARGETS[target_name]
    assert result.details["trt_version_target"] == targets.get(target_name).runtime["tensorrt"]
    qdq = calibration.qdq_activation_scales(out / "model.qdq.onnx")
    assert qdq, "the Q/DQ model quantizes no activation"
    for name, scale in qdq.items():  # the Q/DQ ONNX carries exactly the cache's scales
        assert struct.pack(">f", scale) == struct.pack(">f", cache.scales[name]), name
    assert result.entry == "model.qdq.onnx"
    assert result.details["calib_cache"] == "calib.cache"
    # TensorRT 8.x's ONNX parser rejects INT8 weight initializers: float weights behind Q/DQ there
    trt8 = fmt.parse_version(targets.get(target_name).runtime["tensorrt"])[0] < 10
    int8_tensors = [i for i in onnx.load(str(out / "model.qdq.onnx")).graph.initializer if i.data_type == 3]
    assert any(len(i.dims) > 1 for i in int8_tensors) != trt8
    assert result.details["calibration"]["qdq"]["weights"] == ("float with Q/DQ" if trt8 else "int8")
    assert {"model.onnx", "model.qdq.onnx", "calib.cache", "build.json", "build.sh"} <= set(os.listdir(out))


# ---- the Q/DQ ONNX against FP32 ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("target_name", "batch", "method"),
    [
        ("jetson-orin-nano", "1", "entropy"),
        ("jetson-xavier-nx", "N", "minmax"),
        ("x86-gpu", "1", "percentile"),
    ],
)
def test_qdq_onnx_matches_fp32(tmp_path, target_name, batch, method):
    result, out, calib, model = _export(tmp_path, target_name, batch=batch, method=method)
    backend = get_backend("tensorrt")
    reference = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    with backend.open_runner(out, _manifest(result, target_name, "int8")) as runner:
        assert isinstance(runner, OrtRunner)
        batches = (
            [calib.arrays["input:0"][:4]] if batch == "N" else [x[None] for x in calib.arrays["input:0"]]
        )
        cosines = []
        for x in batches:
            got = runner.infer({"input:0": x})["logits"]
            want = reference.run(["logits"], {"input:0": x})[0]
            assert got.shape == want.shape
            cosines.append(_cosine(got, want))
    assert min(cosines) > 0.98, cosines


def test_dynamic_batch_profile(tmp_path):
    result, out, _, _ = _export(tmp_path, "jetson-orin-nano", batch="N", extra={"max_batch": "16"})
    recipe = json.loads((out / "build.json").read_text())
    assert recipe["profile"] == {
        "min": {"input:0": [1, 3, 16, 16]},
        "opt": {"input:0": [1, 3, 16, 16]},
        "max": {"input:0": [16, 3, 16, 16]},
    }
    assert "--maxShapes='input:0':16x3x16x16" in recipe["argv"]
    assert result.inputs[0].shape[0] == "N"


# ---- the no-native-INT8 path and the recipe ----------------------------------------------------
def test_jetson_nano_int8_builds_fp16_with_one_warning(tmp_path):
    result, out, _, _ = _export(tmp_path, "jetson-nano")
    assert result.effective_precision == "fp16"
    assert len(result.warnings) == 1
    assert "no native INT8" in result.warnings[0] and "FP16 is the right choice" in result.warnings[0]
    argv = result.details["build"]["argv"]
    assert argv[:2] == ["trtexec", "--onnx=model.onnx"]
    assert {"--int8", "--calib=calib.cache", "--fp16"} <= set(argv)
    assert result.details["int8_native"] is False
    assert result.details["engine"] is None
    assert os.access(out / "build.sh", os.X_OK)


@pytest.mark.parametrize("target_name", ["jetson-orin-nano", "x86-gpu"])
def test_demo_int8_qdq_meets_the_target_gate(tmp_path, target_name):
    """The demo's TensorRT INT8 bundle (its Q/DQ ONNX, through onnxruntime) passes the target's default
    fidelity gate on the labelled validation set, with Q/DQ only where TensorRT runs INT8."""
    from edgekit.fidelity import compare
    from edgekit.resources import demo_paths

    paths = demo_paths()
    backend, target = get_backend("tensorrt"), targets.get(target_name)
    prepared = ingest.prepare(paths["model"], ingest.PrepareOptions(min_opset=13, max_opset=target.opset_max))
    calib = CalibrationSet.load(paths["calib"]).validate(prepared.inputs)
    val = CalibrationSet.load(paths["val"]).validate(prepared.inputs, "validation set")
    out = tmp_path / "bundle"
    out.mkdir()
    result = backend.export(ExportJob(prepared, target, "int8", out, calib, ExportOptions()))
    qdq = result.details["calibration"]["qdq"]
    assert qdq["placement"] == "tensorrt" and qdq["int8_nodes"] > 0 and qdq["per_channel_weights"]
    reference = ort.InferenceSession(str(prepared.path), providers=["CPUExecutionProvider"])
    name = prepared.inputs[0].name
    with backend.open_runner(out, _manifest(result, target_name, "int8")) as runner:
        got = np.concatenate([runner.infer({name: f[name]})["logits"] for f in val.feeds(1)])
    want = np.concatenate([reference.run(None, {name: f[name]})[0] for f in val.feeds(1)])
    report = compare({"logits": want}, {"logits": got}, val.labels, target.fidelity)
    assert report.passed, report.failures


def test_ignore_patterns_keep_nodes_in_float(tmp_path):
    result, out, _, _ = _export(tmp_path, "jetson-orin-nano", extra={}, ignore=["/conv2/*"])
    float_nodes = result.details["calibration"]["qdq"]["float_nodes"]
    (name,) = [n for n in float_nodes if n.startswith("/conv2/")]
    assert float_nodes[name] == "excluded by request"
    model = onnx.load(str(out / "model.qdq.onnx"))
    conv = next(n for n in model.graph.node if n.name == name)
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    assert all(producers.get(t) != "DequantizeLinear" for t in conv.input)


def test_int8_without_any_int8_layer_says_so(tmp_path):
    """Every weighted layer GEMV-shaped (batch-1 MatMuls): TensorRT would build a float engine."""
    from tests.models import two_vector_net

    model, _ = two_vector_net()
    path = save(model, tmp_path / "vec.onnx")
    prepared = ingest.prepare(path, ingest.PrepareOptions(min_opset=13, max_opset=17))
    np.savez(tmp_path / "c.npz", **sample_set(model, 8, seed=1))
    calib = CalibrationSet.load(tmp_path / "c.npz").validate(prepared.inputs)
    out = tmp_path / "o"
    out.mkdir()
    target = targets.get("jetson-orin-nano")
    result = get_backend("tensorrt").export(ExportJob(prepared, target, "int8", out, calib, ExportOptions()))
    assert any("no layer of this model in INT8" in w and "--fp16" in w for w in result.warnings)
    assert result.details["calibration"]["qdq"]["int8_nodes"] == 0


def test_native_int8_targets_build_from_qdq(tmp_path):
    result, _, _, _ = _export(tmp_path, "jetson-orin-nano")
    argv = result.details["build"]["argv"]
    assert "--onnx=model.qdq.onnx" in argv and "--int8" in argv
    assert not any(a.startswith("--calib") for a in argv)
    assert result.effective_precision is None and result.warnings == []


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_float_exports_have_no_int8(tmp_path, precision):
    result, out, _, _ = _export(tmp_path, "jetson-xavier-nx", precision)
    argv = result.details["build"]["argv"]
    assert "--int8" not in argv and ("--fp16" in argv) == (precision == "fp16")
    assert result.entry == "model.onnx" and not (out / "calib.cache").exists()


def test_int8_without_calibration_set_is_refused(tmp_path):
    backend = get_backend("tensorrt")
    target = targets.get("jetson-orin-nano")
    prepared = ingest.prepare(
        _conv_net(tmp_path / "m.onnx"), ingest.PrepareOptions(max_opset=target.opset_max)
    )
    with pytest.raises(BadInput, match="calibration set"):
        backend.export(ExportJob(prepared, target, "int8", tmp_path / "o", None, ExportOptions()))


def test_trtexec_int8_needs_calib_or_qdq():
    with pytest.raises(BadInput, match="random data|without --calib"):
        fmt.TrtexecCommand(onnx="m.onnx", int8=True).argv()
    assert "--int8" in fmt.TrtexecCommand(onnx="m.onnx", int8=True, calib="c.cache").argv()
    assert "--int8" in fmt.TrtexecCommand(onnx="m.onnx", int8=True, explicit_quantization=True).argv()


HOSTILE = [
    "my model.onnx",
    'it\'s $(rm -rf ~); `x` "q".onnx',
    "dir with spaces/ünï.onnx",
    "-n.onnx",
    "a*b?.onnx",
]


@pytest.mark.parametrize("path", HOSTILE)
def test_trtexec_command_line_quoting(path):
    cmd = fmt.TrtexecCommand(
        onnx=path,
        save_engine=path + ".engine",
        int8=True,
        calib=path + ".cache",
        fp16=True,
        min_shapes={"in:0": [1, 3, 8, 8], "b,c": [1, 2]},
        opt_shapes={"in:0": [2, 3, 8, 8], "b,c": [2, 2]},
        max_shapes={"in:0": [4, 3, 8, 8], "b,c": [4, 2]},
        timing_cache="timing cache",
        export_times="t.json",
    )
    argv = cmd.argv()
    assert shlex.split(cmd.shell()) == argv
    assert f"--onnx={path}" in argv and f"--calib={path}.cache" in argv
    assert "--minShapes='in:0':1x3x8x8,'b,c':1x2" in argv


def test_build_sh_passes_argv_intact_to_fake_trtexec(tmp_path):
    """Runs the generated build.sh with a FAKE trtexec (records argv) to prove the quoting survives sh."""
    record = tmp_path / "argv.txt"
    fake = tmp_path / "fake-trtexec"
    fake.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done > {shlex.quote(str(record))}\n')
    fake.chmod(0o755)
    cmd = fmt.TrtexecCommand(
        onnx=HOSTILE[1], save_engine="e n.engine", int8=True, calib=HOSTILE[0], fp16=True
    )
    script = tmp_path / "bundle dir" / "build.sh"
    script.parent.mkdir()
    script.write_text(fmt.build_script(cmd))
    subprocess.run(["sh", str(script)], check=True, env={**os.environ, "TRTEXEC": str(fake)}, timeout=30)
    assert record.read_text().split("\0")[:-1] == cmd.argv()[1:]


def test_single_quote_in_input_name_is_refused():
    with pytest.raises(BadInput, match="single quote"):
        fmt.shape_spec({"it's": [1]})


# ---- local engine build switches (no TensorRT here) --------------------------------------------
@pytest.mark.skipif(HAVE_TRT, reason="checks the behaviour without TensorRT")
def test_host_target_without_tensorrt_leaves_bundle(tmp_path):
    result, out, _, _ = _export(tmp_path, "x86-gpu")
    assert result.details["engine"] is None
    assert any("left for the device" in n for n in result.details["notes"])
    assert not (out / "model.engine").exists()


@pytest.mark.skipif(HAVE_TRT, reason="checks the behaviour without TensorRT")
def test_required_local_build_without_tensorrt_exits_3(tmp_path):
    with pytest.raises(MissingDependency) as info:
        _export(tmp_path, "x86-gpu", extra={"build_engine": "true"})
    assert info.value.exit_code == 3 and "edgekit[tensorrt]" in str(info.value)


@pytest.mark.parametrize(
    ("module", "heavy"),
    [
        ("edgekit.backends.trt.backend", ("tensorrt", "pycuda", "cuda")),
        ("edgekit.backends.trt.formats", ("tensorrt", "pycuda", "cuda", "onnx", "onnxruntime")),
        ("edgekit.backends.trt", ("tensorrt", "pycuda", "cuda", "onnx", "onnxruntime")),
    ],
)
def test_backend_import_stays_light(module, heavy):
    code = (
        f"import sys, {module}; "
        f"bad = [m for m in {heavy!r} if m in sys.modules]; "
        "print(bad); sys.exit(bool(bad))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# ---- trtexec output parsing --------------------------------------------------------------------
# Written from the format of a real TensorRT 8.2.1 run on a Jetson Nano (JetPack 4.6.x; one percentile).
LOG_82 = (DATA / "trtexec_8.2.1_jetson_nano.log").read_text()

# Written from the format of TensorRT 10.x runs (device list with UUID on a Jetson Orin; 90/95/99%).
LOG_10 = (DATA / "trtexec_10.3.0_jetson_orin.log").read_text()


def test_parse_trtexec_82_summary_and_header():
    info = fmt.parse_trtexec_log(LOG_82)
    assert info["tensorrt"] == "8.2.1" and info["version_code"] == 8201 and info["status"] == "passed"
    assert info["device"] == {
        "name": "NVIDIA Tegra X1",
        "compute_capability": "5.3",
        "sms": 1,
        "memory_mib": 3955,
    }
    assert info["summary_format"] == "8.2"
    assert info["throughput_qps"] == pytest.approx(11.0613)
    assert info["latency_ms"] == {
        "min": 89.312,
        "max": 91.492,
        "mean": 90.3919,
        "p50": 90.3035,
        "p99": 91.492,
    }
    assert info["gpu_compute_ms"]["p99"] == pytest.approx(91.2045)
    assert info["end_to_end_ms"]["p50"] == pytest.approx(90.3167)
    assert info["queries"] == 35 and info["total_gpu_compute_s"] == pytest.approx(3.15371)


def test_parse_trtexec_10x_summary_and_header():
    info = fmt.parse_trtexec_log(LOG_10)
    assert info["tensorrt"] == "10.3.0" and info["version_code"] == 100300
    assert info["device"]["name"] == "Orin" and info["device"]["compute_capability"] == "8.7"
    assert info["summary_format"] == ">=8.5"
    assert info["latency_ms"]["p90"] == pytest.approx(10.2996)
    assert info["latency_ms"]["p95"] == pytest.approx(10.8698)
    assert info["gpu_compute_ms"] == {
        "min": 5.34595,
        "max": 13.3388,
        "mean": 7.58404,
        "p50": 7.14139,
        "p90": 10.2881,
        "p95": 10.8175,
        "p99": 12.9485,
    }
    assert info["throughput_qps"] == pytest.approx(130.298)


def _export_times_text(latencies: list[float], warmup: int) -> str:
    """A trace laid out as sampleReporting.cpp's exportJSONTrace writes it ('[', '  {..}', ', {..}', ']')."""
    lines, t, sep = ["["], 0.0, "  "
    for lat in latencies[:warmup] + latencies[warmup:]:
        h2d, d2h, compute = 0.05, 0.02, lat - 0.07
        rec = {
            "startEnqMs": t,
            "endEnqMs": t + 0.01,
            "startH2dMs": t,
            "endH2dMs": t + h2d,
            "startComputeMs": t + h2d,
            "endComputeMs": t + h2d + compute,
            "startD2hMs": t + h2d + compute,
            "endD2hMs": t + lat,
            "h2dMs": h2d,
            "computeMs": compute,
            "d2hMs": d2h,
            "latencyMs": lat,
            "endToEndMs": lat,
        }
        lines.append(sep + "{ " + ", ".join(f'"{k}" : {v:.6g}' for k, v in rec.items()) + " }")
        sep = ", "
        t += lat
    lines.append("]")
    return "\n".join(lines) + "\n"


def test_parse_export_times_percentiles():
    """A trace is summarised with the agent's statistics, like every other latency record."""
    from edgekit.agent import latency_stats

    latencies = [float(v) for v in range(1, 101)]  # 1..100 ms
    text = _export_times_text([500.0, 400.0] + latencies, warmup=2)
    everything = fmt.parse_export_times(text)
    assert everything["queries"] == 102
    stats = fmt.parse_export_times(text, warmup_ms=900.0)["latency_ms"]  # warm-up: compute starts < 900 ms
    assert stats == latency_stats(latencies)
    assert stats["count"] == 100 and stats["min"] == 1.0 and stats["max"] == 100.0
    for q in (50, 90, 95, 99):
        assert stats[f"p{q}"] == pytest.approx(np.percentile(latencies, q))
    assert stats["std"] == pytest.approx(float(np.std(latencies)))
    compute = fmt.parse_export_times(text, warmup_ms=900.0)["gpu_compute_ms"]
    assert compute["min"] == pytest.approx(0.93)


def test_parse_export_times_rejects_garbage():
    with pytest.raises(BadInput):
        fmt.parse_export_times("{not json")
    with pytest.raises(BadInput):
        fmt.parse_export_times("[]")


# ---- engine builds (TensorRT + GPU only) -------------------------------------------------------
@pytest.mark.tensorrt
@needs_engine
@pytest.mark.parametrize("int8_mode", ["qdq", "calib"])
def test_local_engine_build_and_verify(tmp_path, int8_mode):
    import tensorrt as trt

    if int8_mode == "calib" and not hasattr(trt, "IInt8EntropyCalibrator2"):
        pytest.skip("this TensorRT has no implicit calibration (removed in TensorRT 11)")
    result, out, calib, model = _export(
        tmp_path, "x86-gpu", extra={"int8_mode": int8_mode, "build_engine": "1"}
    )
    assert result.details["engine"] == "model.engine" and (out / "model.engine").stat().st_size > 0
    assert (out / "timing.cache").exists()
    reference = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    with get_backend("tensorrt").open_runner(out, _manifest(result, "x86-gpu", "int8")) as runner:
        from edgekit.backends.trt.engine import EngineRunner

        assert isinstance(runner, EngineRunner)
        x = calib.arrays["input:0"][:1]
        got = runner.infer({"input:0": x})["logits"]
    assert _cosine(got, reference.run(["logits"], {"input:0": x})[0]) > 0.98


@pytest.mark.tensorrt
@needs_engine
def test_local_engine_build_dynamic_batch(tmp_path):
    result, out, calib, _ = _export(tmp_path, "x86-gpu", batch="N", extra={"build_engine": "1"})
    with get_backend("tensorrt").open_runner(out, _manifest(result, "x86-gpu", "int8")) as runner:
        assert runner.infer({"input:0": calib.arrays["input:0"][:3]})["logits"].shape == (3, 10)


def test_bundle_copies_external_weights(tmp_path):
    """A prepared model over ~1.8 GB keeps its weights in a file beside it; the bundle takes both."""
    from edgekit.backends.trt.backend import _copy_model

    model, weights = plain_conv_net()
    source = tmp_path / "prepared" / "model.onnx"
    source.parent.mkdir()
    onnx.save(model, str(source), save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    _copy_model(source, bundle / "model.onnx")
    assert sorted(os.listdir(bundle)) == ["model.onnx", "model.onnx.data"]
    loaded = onnx.load(str(bundle / "model.onnx"))
    arrays = [onnx.numpy_helper.to_array(i) for i in loaded.graph.initializer]
    assert sum(a.size for a in arrays) == sum(w.size for w in weights)


def test_backend_answers_for_targets_and_demo():
    backend = get_backend("tensorrt")
    assert (backend.bundle_only() is None) == HAVE_TRT
    host, device = targets.get("x86-gpu"), targets.get("jetson-orin-nano")
    assert backend.times_here(host, {"details": {"engine": "model.engine"}})
    assert not backend.times_here(host, {"details": {"engine": None}})
    assert not backend.times_here(device, {"details": {"engine": "model.engine"}})
