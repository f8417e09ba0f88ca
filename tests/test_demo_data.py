"""The committed demo model and its data sets (calibration/digits/, made by scripts/train_demo.py).

Only numpy and onnxruntime: torch is a dev-only dependency of the training script.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgekit.calib import CalibrationSet, InputInfo
from edgekit.resources import demo_paths

PATHS = demo_paths()
SAMPLE_SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(PATHS["model"]), opts, providers=["CPUExecutionProvider"])


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def test_files_exist_and_are_small() -> None:
    for path in PATHS.values():
        assert path.is_file(), f"missing {path}; run scripts/train_demo.py"
    assert PATHS["model"].stat().st_size < 200_000
    assert PATHS["calib"].stat().st_size + PATHS["val"].stat().st_size < 500_000


def test_model_contract(session: ort.InferenceSession) -> None:
    model = onnx.load(str(PATHS["model"]))
    onnx.checker.check_model(model)
    assert {op.domain: op.version for op in model.opset_import}.get("", 0) == 13
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    assert (inp.name, inp.shape, inp.type) == ("input", [1, 1, 8, 8], "tensor(float)")
    assert (out.name, out.shape, out.type) == ("logits", [1, 10], "tensor(float)")


def test_calib_npz() -> None:
    data = _npz(PATHS["calib"])
    assert set(data) == {"input"}
    x = data["input"]
    assert x.dtype == np.float32
    assert x.shape == (200, *SAMPLE_SHAPE)
    assert np.isfinite(x).all()


def test_val_npz() -> None:
    data = _npz(PATHS["val"])
    assert set(data) == {"input", "labels"}
    x, y = data["input"], data["labels"]
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.ndim == 4 and x.shape[1:] == SAMPLE_SHAPE and x.shape[0] >= 500
    assert y.shape == (x.shape[0],)
    assert set(np.unique(y).tolist()) == set(range(10))
    assert np.isfinite(x).all()


def test_fp32_accuracy(session: ort.InferenceSession) -> None:
    data = _npz(PATHS["val"])
    x, y = data["input"], data["labels"]
    predictions = np.array(
        [session.run(["logits"], {"input": x[i : i + 1]})[0].argmax() for i in range(len(x))]
    )
    accuracy = float((predictions == y).mean())
    assert accuracy >= 0.95, f"demo model FP32 accuracy {accuracy:.4f} < 0.95"


def test_sets_pass_the_calibration_reader() -> None:
    spec = [InputInfo("input", (1, 1, 8, 8), np.dtype(np.float32))]
    calib = CalibrationSet.load(PATHS["calib"])
    calib.validate(spec, "calibration set")
    assert len(calib) == 200 and calib.labels is None
    val = CalibrationSet.load(PATHS["val"])
    val.validate(spec, "validation set")
    assert val.labels is not None and len(val.labels) == len(val)
