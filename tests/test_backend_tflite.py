"""TFLite backend: real onnx2tf conversions (offline), real LiteRT inference, compared with ONNX Runtime
on the FP32 source model. Each conversion is one subprocess of ~5-15 s; the suite does nine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgekit.backends import get_backend
from edgekit.backends.base import ExportJob, ExportOptions, ExportResult
from edgekit.calib import CalibrationSet
from edgekit.errors import BadInput
from edgekit.ingest import PrepareOptions, prepare
from edgekit.targets import TargetProfile
from edgekit.targets import get as get_target
from tests import models
from tests.tflite_models import odd_names

pytest.importorskip("onnx2tf")
pytest.importorskip("ai_edge_litert")

# the shared models (tests/models.py) these tests convert, by the name their files get
BUILDERS = {
    "conv_net": lambda: models.plain_conv_net(size=32, inp="input", seed=0)[0],  # 3-channel 4-D image
    "opset11_constants": lambda: models.constant_weights_net(opset=11)[0],
    "two_inputs": lambda: models.two_input_net()[0],
    "dynamic_dims": lambda: models.dynamic_conv(seed=4)[0],
    "transformer_block": lambda: models.transformer_block(8, 16, heads=1, mlp=2, inp="x", out="y", seed=5)[0],
}


def _model(tmp: Path, key: str) -> Path:
    return models.save(BUILDERS[key](), tmp / f"{key}.onnx")


ANDROID = TargetProfile(name="android-arm64", backend="tflite", io={"dtype": "int8"}, threads=2)
RPI = TargetProfile(name="rpi4-arm64", backend="tflite", io={"dtype": "float"}, threads=2)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "prepared"))


def _job(
    model: Path,
    tmp: Path,
    precision: str,
    target: TargetProfile = ANDROID,
    shapes: dict[str, list[int]] | None = None,
    calib: bool = True,
    **options: object,
) -> tuple[ExportJob, Path]:
    """Prepare as the export command does and load the calibration set keyed by prepared names."""
    backend = get_backend("tflite")
    prepared = prepare(
        model,
        PrepareOptions(
            input_shapes=shapes or {},
            static_shapes=backend.needs_static_shapes,
            min_opset=backend.min_opset,
            name_pattern=backend.name_pattern,
        ),
    )
    npz = tmp / f"{model.stem}_calib.npz"
    samples = models.sample_set(onnx.load(str(model)), 16, 0, shapes, uniform=(0.0, 1.0), keep_batch=True)
    np.savez(npz, **samples)
    calib_set = None
    if calib:
        to_prepared = {source: new for new, source in prepared.name_map.items()}
        calib_set = CalibrationSet.load(npz).renamed(to_prepared)
        calib_set.validate(prepared.inputs)
    out = tmp / f"{model.stem}.{precision}"
    return ExportJob(prepared, target, precision, out, calib_set, ExportOptions(**options)), npz


def _export_and_compare(job: ExportJob, npz: Path, model: Path, min_cos: float) -> ExportResult:
    backend = get_backend("tflite")
    result = backend.export(job)
    manifest = {
        "entry": result.entry,
        "inputs": [s.to_json() for s in result.inputs],
        "outputs": [s.to_json() for s in result.outputs],
        "precision": job.precision,
        "details": result.details,
    }
    manifest = json.loads(json.dumps(manifest))  # what verify reads back from manifest.json
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    data = np.load(npz)
    with backend.open_runner(job.out_dir, manifest) as runner:
        for index in range(4):
            feed = {vi.name: data[vi.name][index] for vi in session.get_inputs()}  # source names, NCHW
            want = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
            got = runner.infer(feed)
            assert set(got) == set(want), "outputs must be keyed by the ONNX source names"
            for name, ref in want.items():
                assert got[name].shape == ref.shape, f"{name}: not back in the source layout"
                cos = float(np.dot(ref.ravel(), got[name].ravel()))
                cos /= float(np.linalg.norm(ref) * np.linalg.norm(got[name])) or 1.0
                assert cos > min_cos, f"{model.name} {job.precision} output {name}: cosine {cos:.4f}"
    return result


@pytest.mark.slow
def test_conv_net_fp32_fp16_int8_offline(tmp_path: Path) -> None:
    """The 1x3x32x32 image model: the case where onnx2tf downloads sample images. All three
    precisions convert with networking refused, match ONNX Runtime, and int8 is full-integer."""
    model = _model(tmp_path, "conv_net")
    results = {}
    for precision, min_cos in (("fp32", 0.99), ("fp16", 0.99), ("int8", 0.95)):
        job, npz = _job(model, tmp_path, precision)
        results[precision] = result = _export_and_compare(job, npz, model, min_cos)
        net = result.details["network"]
        assert net["attempts"] == [], f"the conversion tried to reach the network: {net['attempts']}"
        assert "socket guard" in net["isolation"]
        assert "written from 16 calibration samples" in result.details["calibration_input"]
        log_text = (job.out_dir / "convert.log").read_text()
        assert "onnx2tf" in log_text and "Connection" not in log_text
        assert sorted(p.name for p in job.out_dir.iterdir()) == ["convert.log", "model.tflite"]
        assert result.inputs[0].layout == "NHWC" and result.inputs[0].shape == [1, 32, 32, 3]
        assert result.outputs[0].source_name == "logits"
    int8 = results["int8"]
    assert int8.details["variant"] == "full_integer_quant"
    assert int8.details["flex_ops"] == [] and int8.details["float_ops"] == {}
    assert "CONV_2D" in int8.details["ops"]
    assert [s.dtype for s in int8.inputs + int8.outputs] == ["int8", "int8"]
    assert all(s.quant and s.quant["scale"] > 0 for s in int8.inputs + int8.outputs)
    assert results["fp16"].details["variant"] == "float16"
    assert results["fp32"].inputs[0].quant is None
    assert not any(r.warnings for r in results.values()), {k: r.warnings for k, r in results.items()}
    sizes = {p: (tmp_path / f"conv_net.{p}" / "model.tflite").stat().st_size for p in results}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]


@pytest.mark.slow
def test_odd_names_two_outputs_int8_float_io(tmp_path: Path) -> None:
    """'@' / ':' / '/' names are renamed for TensorFlow and mapped back; the NCHW feature-map output
    comes back from NHWC; rpi4's float I/O picks onnx2tf's *_integer_quant file."""
    model = models.save(odd_names(), tmp_path / "odd_names.onnx")
    job, npz = _job(model, tmp_path, "int8", target=RPI)
    result = _export_and_compare(job, npz, model, 0.95)
    assert result.details["variant"] == "integer_quant"
    assert [s.source_name for s in result.inputs] == ["in@put:0"]
    assert [s.source_name for s in result.outputs] == ["pooled:0", "feat@map:0"]
    assert [s.dtype for s in result.inputs + result.outputs] == ["float32"] * 3
    assert result.outputs[1].layout == "NHWC" and result.outputs[1].shape == [1, 16, 16, 4]
    assert result.details["io_map"]["output_order"].startswith("signature")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("builder", "precision", "shapes", "options"),
    [
        ("opset11_constants", "int8", None, {"dynamic_int8": True}),
        ("two_inputs", "int8", None, {}),
        ("dynamic_dims", "fp32", {"x": [1, 3, 16, 16]}, {}),
        ("transformer_block", "int8", None, {}),
    ],
    ids=["opset11-constants-dynamic-range", "two-inputs-int8", "dynamic-dims-fixed", "transformer-int8"],
)
def test_varied_models_convert(tmp_path: Path, builder, precision, shapes, options) -> None:
    model = _model(tmp_path, builder)
    job, npz = _job(model, tmp_path, precision, shapes=shapes, **options)
    result = _export_and_compare(job, npz, model, 0.95 if precision == "int8" else 0.99)
    assert result.details["network"]["attempts"] == []
    if options.get("dynamic_int8"):
        assert result.details["variant"] == "dynamic_range_quant"
        assert result.inputs[0].dtype == "float32"
    if builder == "transformer_block":
        # onnx2tf treats a rank-3 tensor as NCW and makes it NWC: recorded, and undone by the runner
        assert result.inputs[0].layout == "NWC" and result.inputs[0].shape == [1, 16, 8]
        assert "SOFTMAX" in result.details["ops"] and result.details["flex_ops"] == []


@pytest.mark.slow
def test_one_conversion_serves_every_precision_of_one_calibration_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The -oiqt run of an int8 export is cached: fp32, the same int8 again and rpi4's float-I/O int8
    reuse it (same convert.log, post-checks rerun, same details); another calibration set converts
    again."""
    from edgekit.backends.tflite import convert

    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))  # not the session's
    runs: list[dict] = []
    real = convert.run_converter

    def counting(box: object, args: dict, *rest: object) -> dict:
        runs.append(dict(args))
        return real(box, args, *rest)

    monkeypatch.setattr(convert, "run_converter", counting)
    model = _model(tmp_path, "conv_net")
    int8_job, npz = _job(model, tmp_path, "int8")
    int8 = _export_and_compare(int8_job, npz, model, 0.95)
    assert len(runs) == 1 and runs[0]["output_integer_quantized_tflite"] is True
    entry = int8.details["onnx2tf_cache"]["entry"]
    assert int8.details["onnx2tf_cache"] == {"hit": False, "entry": entry}
    assert entry and (tmp_path / "cache" / "onnx2tf" / entry / "meta.json").is_file()
    log_bytes = (int8_job.out_dir / "convert.log").read_bytes()

    fp32_job, _ = _job(model, tmp_path, "fp32")
    fp32 = _export_and_compare(fp32_job, npz, model, 0.99)
    (tmp_path / "again").mkdir()
    again_job, _ = _job(model, tmp_path / "again", "int8")  # the same calibration set, a new artifact
    again = _export_and_compare(again_job, npz, model, 0.95)
    rpi_job, _ = _job(model, tmp_path / "again", "int8", target=RPI)
    rpi_job.out_dir = tmp_path / "rpi.int8"
    rpi = _export_and_compare(rpi_job, npz, model, 0.95)
    assert len(runs) == 1, "fp32, int8 again and rpi4 int8 must reuse the first conversion"
    for job, result in ((fp32_job, fp32), (again_job, again), (rpi_job, rpi)):
        assert result.details["onnx2tf_cache"] == {"hit": True, "entry": entry}
        assert (job.out_dir / "convert.log").read_bytes() == log_bytes
        assert sorted(p.name for p in job.out_dir.iterdir()) == ["convert.log", "model.tflite"]
    assert fp32.details["variant"] == "float32" and fp32.inputs[0].dtype == "float32"
    assert rpi.details["variant"] == "integer_quant" and rpi.inputs[0].dtype == "float32"
    per_run = ("onnx2tf_cache", "int8_search")  # the search's record carries its own timings
    same = {k: v for k, v in again.details.items() if k not in per_run}
    assert same == {k: v for k, v in int8.details.items() if k not in per_run}
    for key in ("recipe", "score", "passed"):
        assert again.details["int8_search"][key] == int8.details["int8_search"][key]
    assert [s.to_json() for s in again.inputs + again.outputs] == [
        s.to_json() for s in int8.inputs + int8.outputs
    ]

    other_npz = tmp_path / "other_calib.npz"
    np.savez(
        other_npz, **models.sample_set(onnx.load(str(model)), 16, 7, uniform=(0.0, 1.0), keep_batch=True)
    )
    prepared = int8_job.prepared
    other = CalibrationSet.load(other_npz).renamed({src: new for new, src in prepared.name_map.items()})
    other.validate(prepared.inputs)
    other_job = ExportJob(prepared, ANDROID, "int8", tmp_path / "other.int8", other, ExportOptions())
    result = _export_and_compare(other_job, other_npz, model, 0.95)
    assert len(runs) == 2, "another calibration set must not reuse the conversion"
    assert result.details["onnx2tf_cache"]["hit"] is False
    assert result.details["onnx2tf_cache"]["entry"] != entry


def test_dynamic_dims_need_a_shape(tmp_path: Path) -> None:
    model = _model(tmp_path, "dynamic_dims")
    with pytest.raises(BadInput, match="--input-shape x:1,3,<H>,<W>"):
        _job(model, tmp_path, "fp32")


@pytest.mark.slow
def test_unsupported_op_fails_with_a_short_reason(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("FancyOp", ["r"], ["y"], domain="com.example"),
    ]
    graph = helper.make_graph(
        nodes,
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)]
    onnx_model = helper.make_model(graph, opset_imports=opsets)
    onnx_model.ir_version = 8
    path = tmp_path / "custom.onnx"
    onnx.save(onnx_model, str(path))
    job, _ = _job(path, tmp_path, "fp32", calib=False)
    with pytest.raises(BadInput) as info:
        get_backend("tflite").export(job)
    message = str(info.value)
    assert "no converter for the ONNX op 'FancyOp'" in message
    assert "\n" not in message and "full log:" in message
    assert info.value.exit_code == 2


def test_int8_without_calibration_is_refused(tmp_path: Path) -> None:
    model = _model(tmp_path, "opset11_constants")
    job, _ = _job(model, tmp_path, "int8", calib=False)
    with pytest.raises(BadInput, match="needs a calibration set"):
        get_backend("tflite").export(job)


def test_onnx2tf_gets_the_command_line_signature_export(tmp_path: Path) -> None:
    """Every conversion passes output_signaturedefs=True, as `onnx2tf -i ... -o ...` does: convert()'s
    default (False) first JSON-serialises the Keras model's config, constants included, which made large
    float models several times slower (benchmarks/bench_tflite_large.py). A user option still wins."""
    from edgekit.backends.tflite.plan import InputPlan, convert_args, plan

    model = _model(tmp_path, "conv_net")
    for precision in ("fp32", "fp16", "int8"):
        job, _ = _job(model, tmp_path, precision)
        inputs = [InputPlan.of(i) for i in job.prepared.inputs]
        args = convert_args(tmp_path, tmp_path / "m.onnx", inputs, plan(job), job)
        assert args["output_signaturedefs"] is True and args["not_use_onnxsim"] is True
    job, _ = _job(model, tmp_path, "fp32", extra={"onnx2tf": {"output_signaturedefs": False}})
    inputs = [InputPlan.of(i) for i in job.prepared.inputs]
    assert (
        convert_args(tmp_path, tmp_path / "m.onnx", inputs, plan(job), job)["output_signaturedefs"] is False
    )


def test_network_guard_refuses_and_records(tmp_path: Path) -> None:
    """The guard the converter runs under: a download attempt fails at once and is recorded."""
    from edgekit.sandbox import offline_env

    env, record = offline_env(tmp_path, "TFLite conversion")
    code = "import urllib.request\nurllib.request.urlopen('https://github.com/PINTO0309/onnx2tf', timeout=5)"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "disabled during edgekit's TFLite conversion" in proc.stderr
    assert record.read_text().strip(), "the attempt must be recorded"


def test_failure_reason_picks_the_last_error_line(tmp_path: Path) -> None:
    from edgekit.sandbox import last_error_line

    log = tmp_path / "convert.log"
    log.write_text(
        "INFO: lots of output\n\x1b[31mERROR:\x1b[0m The trace log is below.\nTraceback (most recent call "
        "last):\n  File x\nValueError: Dimensions must be equal, but are 3 and 4\n\n"
    )
    assert last_error_line(log) == "ValueError: Dimensions must be equal, but are 3 and 4"


def test_targets_and_light_import() -> None:
    android, rpi = get_target("android-arm64"), get_target("rpi4-arm64")
    assert android.backend == rpi.backend == "tflite"
    assert android.io["dtype"] == "int8" and rpi.io["dtype"] == "float"
    assert android.default_precision == "int8" and android.threads
    code = (
        "import sys, edgekit.backends.tflite\n"
        "print(sorted(m for m in ('tensorflow', 'onnx2tf') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, cwd=root
    )
    assert out.stdout.strip() == "[]"


# ---- termination: the converter dies with edgekit, SIGTERM cleans up as Ctrl-C does -----------------
def _start_export(tmp_path: Path) -> tuple[subprocess.Popen[str], int, Path, Path]:
    """`python3 -m edgekit export` of a real model, stopped once its onnx2tf converter child runs."""
    from tests.proc_util import children, wait_for

    model = _model(tmp_path, "conv_net")
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), TMPDIR=str(tmp), EDGEKIT_CACHE_DIR=str(tmp_path / "cache"))
    argv = [sys.executable, "-m", "edgekit", "export", str(model), "--target", "android-arm64", "--fp32"]
    proc = subprocess.Popen([*argv, "-o", str(out)], env=env, stderr=subprocess.PIPE, text=True, cwd=root)
    found = wait_for(lambda: [pid for pid, cmd in children(proc.pid) if "call_driver.py" in cmd], 240)
    if not found:
        proc.kill()
        pytest.fail(f"no converter child appeared: {proc.communicate()[1][-2000:]}")
    time.sleep(1.0)  # let it get going (TensorFlow importing)
    return proc, found[0], out, tmp


@pytest.mark.slow
def test_sigterm_stops_the_converter_and_leaves_nothing(tmp_path: Path) -> None:
    from tests.proc_util import alive, wait_for

    proc, converter, out, tmp = _start_export(tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "terminated by SIGTERM" in err and "Traceback" not in err
    assert wait_for(lambda: not alive(converter), 5), "the onnx2tf converter outlived edgekit"
    assert not list(out.glob(".tmp-*")), "a staged artifact directory was left behind"
    # (onnxruntime writes a `.ses` session file to TMPDIR on import: not ours, not a leftover)
    assert list(tmp.glob("edgekit-*")) == [], "the converter's sandbox directory was left behind"


@pytest.mark.slow
def test_sigkill_of_edgekit_kills_the_converter(tmp_path: Path) -> None:
    """Nothing in edgekit runs after SIGKILL (or the OOM killer): the kernel's parent-death signal ends
    the converter, and the next sandbox removes the directory the dead one left."""
    from edgekit.sandbox import sweep_stale
    from tests.proc_util import alive, wait_for

    proc, converter, _, tmp = _start_export(tmp_path)
    proc.kill()
    proc.communicate(timeout=60)
    assert wait_for(lambda: not alive(converter), 10), "the onnx2tf converter outlived a SIGKILLed edgekit"
    # the sandbox lives in the killed run's own temp directory (edgekit.tempdirs); the next run sweeps both
    from edgekit.tempdirs import sweep

    (run,) = tmp.glob("edgekit-run-*")
    left = list(run.glob("edgekit-sandbox-*"))
    assert left and sweep_stale(run) == left and not any(p.exists() for p in left)
    assert sweep(tmp) == [run] and not run.exists()
