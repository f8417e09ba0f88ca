"""`--option KEY=VALUE` of the tflite backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgekit.backends.options import BackendOptions


@dataclass
class TFLiteOptions(BackendOptions):
    onnx2tf: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "extra onnx2tf.convert() keyword arguments, a JSON object"},
    )
