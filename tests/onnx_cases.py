"""Shared by the ingest/opset/graph tests: ONNX Runtime helpers, old-exporter models, onnx's test data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

ONNX_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"


def session(model: str | Path | onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run(model: str | Path | onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(v) for v in session(model).run(None, feeds)]


def outputs_equal(a: onnx.ModelProto, b: onnx.ModelProto, feed: dict[str, np.ndarray]) -> None:
    for got, want in zip(run(b, feed), run(a, feed), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def old_exporter(model: onnx.ModelProto, ir_version: int = 3) -> onnx.ModelProto:
    """The model as pre-2019 exporters wrote it: every initializer also a graph input, IR 3."""
    listed = {vi.name for vi in model.graph.input}
    model.graph.input.extend(
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
        for t in model.graph.initializer
        if t.name not in listed
    )
    model.ir_version = ir_version
    return model


def pytorch_cases() -> list[Path]:
    """onnx's PyTorch exports (IR 3, opset 6-9) that come with inputs and PyTorch's outputs."""
    dirs = [ONNX_DATA / "pytorch-converted", ONNX_DATA / "pytorch-operator"]
    return sorted(p.parent for d in dirs if d.is_dir() for p in d.glob("*/model.onnx"))


def load_case(case: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    data = case / "test_data_set_0"
    inputs = [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in sorted(data.glob("input_*.pb"))]
    outputs = [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in sorted(data.glob("output_*.pb"))]
    return inputs, outputs
