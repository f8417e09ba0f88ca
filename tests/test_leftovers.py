"""Issue 19: runs leave no files where they should not: an INT8 export of a model with dynamic dims
(onnxruntime's quantization helpers save temporaries to the working directory) leaves the user's
working directory empty."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests import models


def square_mixing_net() -> onnx.ModelProto:
    """Dynamic [b, 4, h, w] input whose output adds a map to its own transpose: onnxruntime's symbolic
    shape inference cannot merge h with w on its own, and then saves its partial model (and, for
    weights over 1 KB, a <uuid>.data file) into the working directory."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array((rng.standard_normal((16, 4, 3, 3)) * 0.2).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((4, 16, 3, 3)) * 0.2).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Transpose", ["c2"], ["t"], perm=[0, 1, 3, 2], name="transpose"),
        helper.make_node("Add", ["c2", "t"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes, "square", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4, "h", "w"])], [w1, w2],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("target", ["x86-cpu", "jetson-orin-nano"])
@pytest.mark.parametrize("kind", ["dynamic", "square"])
def test_int8_export_of_a_dynamic_model_leaves_the_working_directory_empty(
    kind: str, target: str, tmp_path: Path, monkeypatch, run_cli
) -> None:
    if kind == "dynamic":
        model, fixed = models.dynamic_net()[0], {"images": [1, 3, 24, 24]}
    else:
        model, fixed = square_mixing_net(), {"x": [1, 4, 16, 16]}
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    path = inputs / "dyn.onnx"
    onnx.save(model, str(path))
    calib = inputs / "calib.npz"
    np.savez(calib, **models.sample_set(model, 8, fixed=fixed))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    code, _, err = run_cli(
        "export", path, "--target", target, "--int8", "--calib", calib, "-o", tmp_path / "out"
    )
    assert code in (0, 1), err
    assert sorted(p.name for p in cwd.iterdir()) == []


def test_quant_preprocess_and_inspect_leave_the_working_directory_empty(
    tmp_path: Path, monkeypatch, run_cli
) -> None:
    """The raw dynamic model (before ingest could merge its dims): the symbolic inference stops, and
    onnxruntime would save sym_shape_infer_temp.onnx and <uuid>.data where the process runs."""
    from edgekit import quant

    path = tmp_path / "square.onnx"
    onnx.save(square_mixing_net(), str(path))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    quant.preprocess(path, tmp_path / "pre.onnx")
    onnx.checker.check_model(str(tmp_path / "pre.onnx"))
    assert sorted(p.name for p in cwd.iterdir()) == []
    code, _, err = run_cli("inspect", path)
    assert code == 0, err
    assert sorted(p.name for p in cwd.iterdir()) == []


def test_temp_dirs_of_a_killed_run_are_removed_by_the_next_run(tmp_path: Path) -> None:
    """`edgekit bench` SIGKILLed while its job's temp directory exists: the next edgekit command
    removes what the dead run left in the temp directory (nothing of a live run's)."""
    import json
    import os
    import subprocess
    import sys

    from tests.proc_util import wait_for
    from tests.report_helpers import artifact

    root = Path(__file__).resolve().parents[1]
    temp = tmp_path / "tmp"
    temp.mkdir()
    art = artifact(tmp_path / "tiny.x86-cpu.fp32", width=64, depth=2)
    env = {
        **os.environ,
        "TMPDIR": str(temp),
        "PYTHONPATH": str(root),
        "EDGEKIT_CACHE_DIR": str(tmp_path / "cache"),
    }
    devices = tmp_path / "devices.toml"
    devices.write_text(f'[devices.here]\ntransport = "local"\nworkdir = "{tmp_path / "work"}"\n')
    bench = subprocess.Popen(
        [sys.executable, "-m", "edgekit", "bench", str(art), "--devices", str(devices), "--device", "here",
         "--iterations", "100000000", "--warmup", "1", "-o", str(tmp_path / "r.jsonl")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    try:
        found = wait_for(lambda: [p for p in temp.rglob("edgekit-job-*")], 90)
        assert found, "the bench never made its job directory"
    finally:
        bench.kill()
        bench.communicate(timeout=60)
    assert any(temp.iterdir()), "the killed run left nothing (nothing to test)"
    live = temp / f"edgekit-run-{os.getppid()}-keep"  # a live process's run directory stays
    live.mkdir()
    code = subprocess.run(
        [sys.executable, "-m", "edgekit", "targets", "--json"], env=env, capture_output=True, cwd=tmp_path
    )
    assert code.returncode == 0, code.stderr
    json.loads(code.stdout)
    assert sorted(p.name for p in temp.iterdir()) == [live.name]
