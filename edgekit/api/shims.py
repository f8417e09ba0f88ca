"""Stand-ins for the backend hooks helper A1 (arch-core) adds to `edgekit.backends`.

TODO(A1): when `Backend.parse_options`, `Backend.needs_calibration` and the backend's status line for
`edgekit targets` land, each function here becomes a one-line call to the backend and this module
goes. Until then they hold the knowledge the backends' code has today (which `--option` keys each
reads, which precisions need a calibration set), so that the API checks both before any work.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from edgekit.backends.base import Backend, ExportOptions
from edgekit.errors import BadInput, suggest
from edgekit.targets import TargetProfile

# key -> what the value must be, per backend (read by backends/*.py as `job.options.extra[key]`)
_OPTION_KEYS: dict[str, dict[str, str]] = {
    "onnxruntime": {},
    "openvino": {
        "model_type": "transformer or none",
        "preset": "performance or mixed",
        "fast_bias_correction": "true or false",
        "inference_precision": "an OpenVINO precision hint such as f32 or f16",
    },
    "tflite": {"onnx2tf": "a mapping of onnx2tf.convert arguments (Python API only)"},
    "tensorrt": {
        "min_shapes": "NAME:1x3x224x224[,NAME:...]",
        "opt_shapes": "NAME:1x3x224x224[,NAME:...]",
        "max_shapes": "NAME:1x3x224x224[,NAME:...]",
        "max_batch": "an integer",
        "int8_mode": "qdq or calib",
        "build_engine": "true or false",
    },
}
_MAPPING_KEYS = {"onnx2tf"}
_INTEGER_KEYS = {"max_batch"}


def parse_backend_options(backend: Backend, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Check `--option KEY=VALUE` pairs against what `backend` reads: one-line BadInput for an unknown
    key (with the closest name) or a value of the wrong kind. TODO(A1): backend.parse_options(extra)."""
    known = _OPTION_KEYS.get(backend.name)
    if known is None:
        return dict(extra)
    for key, value in extra.items():
        if key not in known:
            valid = ", ".join(sorted(known)) or "none"
            raise BadInput(
                f"--option {key}: the {backend.name} backend has no option '{key}'.{suggest(key, known)} "
                f"Its options: {valid}"
            )
        if key in _MAPPING_KEYS and not isinstance(value, Mapping):
            raise BadInput(f"--option {key}={value}: {key} must be {known[key]}")
        if key in _INTEGER_KEYS:
            try:
                int(value)
            except (TypeError, ValueError):
                raise BadInput(f"--option {key}={value}: {key} must be an integer") from None
    return dict(extra)


def needs_calibration(
    backend: Backend, target: TargetProfile, precision: str, options: ExportOptions
) -> bool:
    """Whether this export needs a calibration set. TODO(A1): backend.needs_calibration(precision, options)."""
    if precision != "int8":
        return False
    # onnxruntime and TFLite have a dynamic-range int8 mode; OpenVINO (NNCF) and TensorRT always calibrate
    if backend.name == "onnxruntime":
        return not options.dynamic_int8
    if backend.name == "tflite":
        return not (options.dynamic_int8 or str(target.quantization.get("mode", "static")) == "dynamic")
    return True


def status_line(backend: Backend) -> str:
    """`installed`, or what is missing and how to install it. TODO(A1): the backend's own status line."""
    missing = backend.missing_modules()
    if missing:
        return f"missing {', '.join(missing)} (pip install 'edgekit[{backend.extra}]')"
    if backend.name == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
        return "installed (bundle only: no tensorrt here, engines build on the device)"
    return "installed"
