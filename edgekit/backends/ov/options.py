"""`--option KEY=VALUE` of the openvino backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from edgekit.backends.options import BackendOptions


@dataclass
class OpenVinoOptions(BackendOptions):
    """`--option KEY=VALUE` of the openvino backend."""

    preset: Literal["auto", "performance", "mixed"] = field(
        default="auto", metadata={"help": "NNCF preset for INT8 (auto: chosen from the graph's activations)"}
    )
    model_type: Literal["auto", "transformer", "none"] = field(
        default="auto", metadata={"help": "NNCF model type for INT8 (auto: transformer for attention graphs)"}
    )
    fast_bias_correction: bool = field(
        default=True, metadata={"help": "NNCF's fast bias correction (false: the slower, exact one)"}
    )
    inference_precision: Literal["f32", "f16", "bf16"] | None = field(
        default=None, metadata={"help": "INFERENCE_PRECISION_HINT for FP16/INT8 IRs (default: the device's)"}
    )
