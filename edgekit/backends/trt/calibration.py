"""Host-side INT8 calibration for TensorRT: activation ranges (onnxruntime, CPU), TensorRT's symmetric
scales, the calibration cache and the explicit-quantization (Q/DQ) ONNX built from the same scales.

The entry point for a recipe search is `quantize_for_tensorrt(model, out, scales, exclude=...)`: the
scales come from one calibration pass (`calibrate(model, calib, method)`), a candidate recipe is
(method, per-channel or not, the nodes kept in float), and each candidate costs one Q/DQ insertion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import quant
from edgekit.backends.trt import formats as fmt
from edgekit.backends.trt import placement, qdq
from edgekit.errors import BadInput, InternalError


def compute_ranges(model_path: Path, calib: Any, method: str) -> dict[str, tuple[float, float]]:
    """(min, max) of every activation tensor, with onnxruntime on the CPU (histograms symmetric for
    entropy/percentile, as TensorRT's scales are)."""
    if method not in quant.METHODS:
        raise BadInput(f"unknown calibration method '{method}'; choose one of {', '.join(quant.METHODS)}")
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


@dataclass
class QdqResult:
    """What `quantize_for_tensorrt` placed, for the manifest (and the recipe search's records)."""

    path: Path
    plan: placement.Plan
    qdq_nodes: int
    per_channel: bool
    int8_weights: bool
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "placement": "tensorrt",
            "qdq_nodes": self.qdq_nodes,
            "int8_nodes": len(self.plan.int8_nodes),
            "residual_adds": len(self.plan.residual_adds),
            "float_nodes": dict(self.plan.excluded),
            "per_channel_weights": self.per_channel,
            "weights": "int8" if self.int8_weights else "float with Q/DQ",
            "notes": list(self.notes),
        }


def quantize_for_tensorrt(
    model_path: Path,
    out_path: Path,
    scales: Mapping[str, float],
    *,
    exclude: Iterable[str] = (),
    per_channel: bool = True,
    int8_weights: bool = True,
) -> QdqResult:
    """Write the Q/DQ ONNX TensorRT builds an explicitly quantized engine from: Q/DQ only where TensorRT
    runs INT8 (see `placement`), activation scales exactly `scales` (symmetric, zero point 0), weights
    INT8 symmetric (per output channel unless `per_channel=False`), stored as INT8 (`int8_weights`,
    TensorRT >= 10) or as float behind a Q/DQ pair (TensorRT 8.x). `exclude`: node names kept in float
    (unnamed nodes are called '<OpType>#<index>').
    The result is checked by onnx.checker and an onnxruntime session before it is returned."""
    import onnx

    from edgekit.backends.ort import save_onnx

    model = onnx.load(str(model_path))
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise BadInput(
            f"{Path(model_path).name} already holds Q/DQ nodes (a quantization-aware model?): export it "
            "with --fp16 and TensorRT builds INT8 from its own Q/DQ nodes"
        )
    plan = placement.plan_placement(model, exclude)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    notes: list[str] = []
    if per_channel and opset < 13:
        per_channel = False
        notes.append(f"opset {opset} < 13 has no per-channel DequantizeLinear: per-tensor weights")
    result = qdq.insert_qdq(model, plan, scales, per_channel=per_channel, int8_weights=int8_weights)
    if result.missing_scales:
        notes.append(
            f"{len(result.missing_scales)} tensor(s) had no calibrated range and stay float: "
            + ", ".join(result.missing_scales[:5])
        )
    out_path = Path(out_path)
    save_onnx(result.model, out_path)
    try:
        quant.validate_model(out_path)
    except Exception as exc:  # noqa: BLE001 - a placement bug must not ship a broken bundle
        raise InternalError(f"the TensorRT Q/DQ model is invalid: {str(exc).splitlines()[0][:300]}") from exc
    return QdqResult(out_path, plan, result.qdq_nodes, per_channel, int8_weights, notes)


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
