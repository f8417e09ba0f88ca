"""`--option KEY=VALUE` of the tensorrt backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from edgekit.backends.options import BackendOptions
from edgekit.backends.trt.profiles import DEFAULT_MAX_BATCH


@dataclass
class TensorRTOptions(BackendOptions):
    min_shapes: str | None = field(
        default=None, metadata={"help": "optimization profile minimum, NAME:1x3x224x224[,NAME:...]"}
    )
    opt_shapes: str | None = field(
        default=None, metadata={"help": "optimization profile optimum (as min_shapes)"}
    )
    max_shapes: str | None = field(
        default=None, metadata={"help": "optimization profile maximum (as min_shapes)"}
    )
    max_batch: int = field(
        default=DEFAULT_MAX_BATCH,
        metadata={"help": "largest batch of a dynamic batch axis (profile max)"},
    )
    int8_mode: Literal["qdq", "calib"] | None = field(
        default=None,
        metadata={
            "help": "INT8 build: qdq (explicit Q/DQ ONNX) or calib (calibration cache); default by target"
        },
    )
    build_engine: bool = field(
        default=False,
        metadata={"help": "build the engine on this machine at export (needs TensorRT and a GPU)"},
    )
