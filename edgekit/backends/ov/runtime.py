"""Compiling and running an IR: `compile_ir` (the f32 hint for FP32 artifacts, threads), what the compiled
model really runs at (`execution_summary`), and the host runner used by `verify`.

`compile_ir` is deliberately free of edgekit imports so that the device agent can carry a copy of it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import HostRunner, TensorSpec

log = logging.getLogger(__name__)

HOST_DEVICE = "CPU"  # verify runs on this machine's CPU, whatever the target
# runtime layer types that are bookkeeping, not compute: left out of the execution-precision summary
_NON_COMPUTE = {"Input", "Output", "Parameter", "Result", "Const", "Constant", "Reorder"}


def compile_ir(
    xml_path: str | Path,
    device: str = "CPU",
    precision: str = "fp32",
    threads: int | None = None,
    inference_precision: str | None = None,
) -> Any:
    """Compile an IR for `device`; returns an `openvino.CompiledModel`.

    FP32 artifacts get the f32 inference-precision hint (otherwise CPUs with BF16/AMX and GPUs run them
    at reduced precision); FP16 and INT8 artifacts run at the device's default unless
    `inference_precision` (e.g. "f32", "f16", "bf16") overrides it. `threads` sets
    INFERENCE_NUM_THREADS (CPU only).
    """
    import openvino as ov

    config: dict[str, Any] = {}
    hint = inference_precision or ("f32" if precision == "fp32" else None)
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    if threads and device.upper().startswith("CPU"):
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return ov.Core().compile_model(str(xml_path), device, config)


def execution_summary(compiled: Any) -> dict[str, Any]:
    """The precision a compiled model really runs at: the plugin's hint, read back, and the count of
    compute layers per runtime precision (e.g. {"i8": 20, "f32": 3})."""
    out: dict[str, Any] = {}
    try:
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        out["inference_precision"] = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    except Exception as exc:  # noqa: BLE001 - some plugins do not expose the property
        log.debug("INFERENCE_PRECISION_HINT not readable: %s", exc)
    try:
        out["threads"] = int(compiled.get_property("INFERENCE_NUM_THREADS"))
    except Exception:  # noqa: BLE001
        pass
    try:
        counts: Counter[str] = Counter()
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if "layerType" in info and info["layerType"].astype(str) in _NON_COMPUTE:
                continue
            if "runtimePrecision" in info:
                counts[info["runtimePrecision"].astype(str)] += 1
        out["layer_precisions"] = dict(sorted(counts.items()))
    except Exception as exc:  # noqa: BLE001 - informational
        log.debug("runtime model not readable: %s", exc)
    return out


class OpenVinoRunner(HostRunner):
    """Runs an IR on this machine's CPU (the target's GPU/NPU is not assumed to be here)."""

    def __init__(self, compiled: Any, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
        super().__init__(inputs, outputs)
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.execution = execution_summary(compiled)
        self.execution["device"] = HOST_DEVICE
        self.device = HOST_DEVICE

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        data = {
            spec.name: np.ascontiguousarray(feed[spec.source_name], dtype=np.dtype(spec.dtype))
            for spec in self.inputs
        }
        result = self.request.infer(data)
        out: dict[str, np.ndarray] = {}
        for spec in self.outputs:
            value = np.array(result[spec.name])  # a copy: the request reuses its output buffers
            if np.issubdtype(value.dtype, np.floating) and value.dtype != np.float32:
                value = value.astype(np.float32)
            out[spec.source_name] = value
        return out

    def close(self) -> None:
        self.request = None
        self.compiled = None
