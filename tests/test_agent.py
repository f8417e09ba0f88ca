"""The device agent: Python 3.6 syntax, one JSON document, real runtimes on tiny models."""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.artifacts import make_artifact

AGENT = Path(__file__).resolve().parent.parent / "edgekit" / "agent.py"


def test_agent_parses_as_python36():
    ast.parse(AGENT.read_text(), feature_version=(3, 6))


def _python36() -> str | None:
    candidates = [
        shutil.which("python3.6"),
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.6*/bin/python3.6"))),
    ]
    for exe in candidates:
        if exe and subprocess.run([exe, "-c", "pass"], capture_output=True).returncode == 0:
            return exe
    return None


PY36 = _python36()


@pytest.mark.skipif(PY36 is None, reason="no Python 3.6 interpreter here (the ast check above still runs)")
def test_agent_runs_under_real_python36(tmp_path):
    """Jetson Nano's Python: the probe works, and a bench without onnxruntime names the missing runtime."""
    subprocess.run([PY36, "-m", "py_compile", str(AGENT)], check=True)
    probe = json.loads(
        subprocess.run([PY36, str(AGENT), "--probe"], stdout=subprocess.PIPE, check=True).stdout
    )
    assert probe["status"] == "ok" and probe["environment"]["python"].startswith("3.6")
    art = make_artifact(tmp_path / "art")
    res = _run(_job(art), tmp_path, python=PY36)
    assert res["status"] == "failed" and res["error_kind"] == "missing_runtime"
    assert (
        res["error"].startswith("runtime onnxruntime not found")
        and "pip3 install onnxruntime" in res["error"]
    )


def test_agent_imports_only_stdlib_at_top_level():
    tree = ast.parse(AGENT.read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            top.add((node.module or "").split(".")[0])
    assert top <= set(sys.stdlib_module_names), top - set(sys.stdlib_module_names)


def _run(job: dict, tmp: Path, *extra: str, python: str = sys.executable) -> dict:
    path = tmp / "job.json"
    path.write_text(json.dumps(job))
    proc = subprocess.run([python, str(AGENT), *extra, str(path)], stdout=subprocess.PIPE, check=False)
    lines = proc.stdout.decode().strip().splitlines()
    assert len(lines) == 1, proc.stdout  # exactly one JSON document on stdout
    return json.loads(lines[0])


def _job(art: Path, **kw) -> dict:
    manifest = json.loads((art / "manifest.json").read_text())
    job = {
        "entry": str(art / manifest["entry"]),
        "backend": manifest["backend"],
        "precision": "fp32",
        "inputs": manifest["inputs"],
        "outputs": manifest["outputs"],
        "iterations": 20,
        "warmup": 2,
        "threads": 1,
        "seed": 0,
    }
    job.update(kw)
    return job


def test_onnxruntime_benchmark_and_validation_outputs(tmp_path):
    import onnxruntime as ort

    art = make_artifact(tmp_path / "art")
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    np.savez(tmp_path / "val.npz", x=x)
    res = _run(_job(art, validation="val.npz"), tmp_path)
    assert res["status"] == "ok", res
    lat = res["latency_ms"]
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert res["iterations"] == 20 and res["init_ms"] > 0 and res["first_inference_ms"] > 0
    assert res["peak_rss_mb"] > 0 and res["throughput_fps"] > 0
    env = res["environment"]
    assert (
        env["kernel"] and env["cpu"] and env["python"] and env["runtimes"]["onnxruntime"] == ort.__version__
    )
    out = np.load(res["validation"]["outputs_file"])
    sess = ort.InferenceSession(str(art / "model.onnx"), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {"x": x[i : i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(out["y"], ref, rtol=1e-5, atol=1e-6)


def test_percentiles_match_numpy():
    sys.path.insert(0, str(AGENT.parent))
    try:
        import agent  # noqa: PLC0415 - the file as the device sees it
    finally:
        sys.path.pop(0)
    values = list(np.random.default_rng(1).exponential(size=101))
    stats = agent.latency_stats(values)
    for q in (50, 90, 95, 99):
        assert stats[f"p{q}"] == pytest.approx(np.percentile(values, q))
    assert stats["std"] == pytest.approx(np.std(values))


def test_missing_runtime_is_named(tmp_path):
    art = make_artifact(tmp_path / "art")
    res = _run(_job(art, backend="tensorrt"), tmp_path)
    if shutil.which("trtexec"):
        pytest.skip("trtexec present")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt installed")
    except ImportError:
        pass
    assert res["status"] == "failed" and res["error_kind"] == "missing_runtime"
    assert res["error"].startswith("runtime tensorrt not found") and "install" in res["error"]


def test_openvino_ir(tmp_path):
    ov = pytest.importorskip("openvino")
    art = make_artifact(tmp_path / "art")
    model = ov.convert_model(str(art / "model.onnx"))
    ov.save_model(model, str(tmp_path / "art" / "model.xml"))
    res = _run(
        _job(art, entry=str(tmp_path / "art" / "model.xml"), backend="openvino", device="CPU"), tmp_path
    )
    assert res["status"] == "ok", res
    assert res["runtime"]["name"] == "openvino" and res["latency_ms"]["p50"] > 0


def test_usage_error_is_json(tmp_path):
    proc = subprocess.run([sys.executable, str(AGENT)], stdout=subprocess.PIPE, check=False)
    res = json.loads(proc.stdout)
    assert proc.returncode == 2 and res["status"] == "failed" and "usage" in res["error"]


def _agent_module():
    sys.path.insert(0, str(AGENT.parent))
    try:
        import agent  # noqa: PLC0415 - the file as the device sees it
    finally:
        sys.path.pop(0)
    return agent


def test_channel_last_inputs_are_transposed_not_reshaped():
    """[1, 3, 8] (NCW) into a [1, 8, 3] (NWC) artifact: row w holds the 3 channels at w."""
    agent = _agent_module()
    x = np.arange(24, dtype=np.float32).reshape(1, 3, 8)
    got = agent.adapt_input(np, {"shape": [1, 8, 3], "layout": "NWC", "dtype": "float32"}, x)
    assert got.shape == (1, 8, 3)
    assert got[0, 0].tolist() == [0, 8, 16] and got[0, 7].tolist() == [7, 15, 23]
    # a square NHWC input whose shape alone cannot tell the layout: transposed all the same
    x4 = np.arange(64, dtype=np.float32).reshape(1, 4, 4, 4)
    got4 = agent.adapt_input(np, {"shape": [1, 4, 4, 4], "layout": "NHWC", "dtype": "float32"}, x4)
    np.testing.assert_array_equal(got4, x4.transpose(0, 2, 3, 1))
    x5 = np.arange(2 * 3 * 2 * 4 * 5, dtype=np.float32).reshape(2, 3, 2, 4, 5)
    spec5 = {"shape": ["n", 2, 4, 5, 3], "layout": "NDHWC", "dtype": "float32"}
    np.testing.assert_array_equal(agent.adapt_input(np, spec5, x5), x5.transpose(0, 2, 3, 4, 1))


def test_channel_last_outputs_come_back_channel_first():
    agent = _agent_module()
    for layout, shape in (("NWC", (2, 8, 3)), ("NHWC", (2, 5, 6, 3)), ("NDHWC", (1, 2, 3, 4, 3))):
        y = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        spec = {"shape": list(shape), "layout": layout, "dtype": "float32"}
        back = agent.adapt_output(np, spec, y)
        np.testing.assert_array_equal(agent.adapt_input(np, spec, back), y)  # the exact inverse
        assert back.shape[1] == 3


def test_inputs_that_do_not_fit_are_refused():
    agent = _agent_module()
    spec = {"name": "x", "shape": [1, 5, 5], "layout": "NCW", "dtype": "float32"}
    with pytest.raises(agent.AgentError, match=r"input 'x': shape \[1, 3, 8\] does not fit"):
        agent.adapt_input(np, spec, np.zeros((1, 3, 8), np.float32))
    # size-1 axes are not a layout; dynamic dims take any size
    squeezed = agent.adapt_input(np, {"shape": [1, 1, 10], "dtype": "float32"}, np.ones((1, 10), np.float32))
    assert squeezed.shape == (1, 1, 10)
    dynamic = {"shape": ["n", 3, "h", "w"], "layout": "NCHW", "dtype": "float32"}
    assert agent.adapt_input(np, dynamic, np.ones((2, 3, 24, 20), np.float32)).shape == (2, 3, 24, 20)
    quant = {"shape": [1, 4], "dtype": "int8", "quant": {"scale": 0.5, "zero_point": 1}}
    assert agent.adapt_input(np, quant, np.array([[0.0, 1.0, 100.0, -100.0]])).tolist() == [[1, 3, 127, -128]]
