"""ADAPTER (temporary, for the merge of the `arch-tflite` split): the TFLite backend's answers to the
backend seam (`edgekit.backends.base.Backend`) and its typed `--option`s, kept out of `tflite.py` so
the split of that module into the `edgekit/backends/tflite/` package does not conflict with them.

MERGE NOTE: once `edgekit.backends.tflite` is a package, move `TFLiteOptions` and the class
attributes below onto its `TFLiteBackend`, point the registry row in `edgekit/backends/__init__.py`
back at `edgekit.backends.tflite:TFLiteBackend`, read `self.options_of(job.options).onnx2tf` instead
of `job.options.extra.get("onnx2tf", {})`, and delete this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgekit.backends import tflite
from edgekit.backends.options import BackendOptions


@dataclass
class TFLiteOptions(BackendOptions):
    """`--option KEY=VALUE` of the tflite backend."""

    onnx2tf: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "extra onnx2tf.convert() keyword arguments, a JSON object"},
    )


class TFLiteBackend(tflite.TFLiteBackend):
    Options = TFLiteOptions
    model_suffixes = (".tflite",)
