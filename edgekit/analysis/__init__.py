"""Static analysis of an ONNX model: the numbers behind `edgekit inspect`.

Works on a copy of the model where weights held in Constant nodes are initializers, input shapes are
fixed (from `input_shapes`, remaining symbolic dims assumed 1) and shapes are inferred. Reports the
I/O, opset, op histogram, parameter count, weight bytes per precision, MACs per op type, peak
activation memory from a liveness walk, and a runtime-memory estimate per precision that
`fit_table` compares with each device's memory.
"""

from __future__ import annotations

from edgekit.analysis.costs import MAC_OPS, node_macs, weight_bytes
from edgekit.analysis.decoder import DecoderLayout, context_memory, recognize
from edgekit.analysis.fit import (
    device_memory_mb,
    fit_table,
    local_memory_mb,
    measured_growth_mb,
    measured_memory,
    record_source_sha256,
)
from edgekit.analysis.report import ModelReport, TensorRow, analyze, estimate_bytes, memory_model
from edgekit.analysis.shapes import assume_ones, is_float, static_shapes
from edgekit.memory_model import (
    ACTIVATION_BYTES,
    DEFAULT_RUNTIME,
    ESTIMATE_FORMULA,
    INT4_GROUP,
    LARGE_TENSOR_BYTES,
    MB,
    MEMORY_MODELS,
    PRECISIONS,
    MemoryModel,
)

__all__ = [
    "ACTIVATION_BYTES",
    "DecoderLayout",
    "context_memory",
    "recognize",
    "DEFAULT_RUNTIME",
    "ESTIMATE_FORMULA",
    "INT4_GROUP",
    "LARGE_TENSOR_BYTES",
    "MAC_OPS",
    "MB",
    "MEMORY_MODELS",
    "PRECISIONS",
    "MemoryModel",
    "ModelReport",
    "TensorRow",
    "analyze",
    "assume_ones",
    "device_memory_mb",
    "estimate_bytes",
    "fit_table",
    "is_float",
    "local_memory_mb",
    "measured_growth_mb",
    "measured_memory",
    "memory_model",
    "node_macs",
    "record_source_sha256",
    "static_shapes",
    "weight_bytes",
]
