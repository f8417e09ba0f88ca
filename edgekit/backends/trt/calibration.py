"""Host-side INT8 calibration for TensorRT: activation ranges (onnxruntime, CPU), TensorRT's symmetric
scales, the calibration cache and the explicit-quantization (Q/DQ) ONNX built from the same scales."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import quant
from edgekit.backends.trt import formats as fmt
from edgekit.errors import BadInput

METHODS = ("entropy", "minmax", "percentile")


def compute_ranges(model_path: Path, calib: Any, method: str) -> dict[str, tuple[float, float]]:
    """(min, max) of every activation tensor, with onnxruntime on the CPU (histograms symmetric for
    entropy/percentile, as TensorRT's scales are)."""
    if method not in METHODS:
        raise BadInput(f"unknown calibration method '{method}'; choose one of {', '.join(METHODS)}")
    return quant.compute_ranges(model_path, calib, method, symmetric=method != "minmax")


def scales_from_ranges(ranges: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """TensorRT's symmetric scale per tensor: max(|min|, |max|) / 127 as float32 (never 0)."""
    out: dict[str, float] = {}
    for name, (low, high) in ranges.items():
        amax = max(abs(low), abs(high))
        if not np.isfinite(amax):
            raise BadInput(f"calibration produced a non-finite range for tensor '{name}'; check the data")
        out[name] = fmt.amax_to_scale(max(amax, 1e-6))
    return out


def calibrate(model_path: Path, calib: Any, method: str = "entropy") -> dict[str, float]:
    """One calibration pass: TensorRT scales of every activation tensor."""
    return scales_from_ranges(compute_ranges(model_path, calib, method))


def quantize_qdq_from_scales(
    model_path: Path, out_path: Path, calib: Any, scales: Mapping[str, float]
) -> None:
    """Q/DQ ONNX with symmetric INT8 activations and per-channel symmetric INT8 weights, whose activation
    scales are exactly `scales` (onnxruntime's TensorQuantOverrides, zero point 0)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(model_path), load_external_data=False)
    weights = {init.name for init in model.graph.initializer}
    overrides = {
        name: [{"scale": np.array(scale, dtype=np.float32), "zero_point": np.array(0, dtype=np.int8)}]
        for name, scale in scales.items()
        if name not in weights
    }
    with quant.quiet():
        quantize_static(
            str(model_path),
            str(out_path),
            quant.ort_reader(calib, limit=1),  # ranges come from the overrides; one sample satisfies the API
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "TensorQuantOverrides": overrides,
            },
        )


def qdq_activation_scales(model_path: Path) -> dict[str, float]:
    """Scale of every activation QuantizeLinear in a Q/DQ ONNX, keyed by the tensor it quantizes."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out: dict[str, float] = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits and node.input[1] in inits:
            # onnxruntime renames a quantized graph output to '<name>_QuantizeLinear_Input'
            name = node.input[0].removesuffix("_QuantizeLinear_Input")
            out[name] = float(np.asarray(inits[node.input[1]]).reshape(-1)[0])
    return out
