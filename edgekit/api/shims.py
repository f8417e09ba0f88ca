"""Stand-ins for the backend hooks helper A1 (arch-core) adds to `edgekit.backends`.

TODO(A1): at merge each call `shims.X(backend, ...)` becomes `backend.X(...)` (and
`shims.target_status(profile)` becomes `backends.target_status(profile)`), and this module goes. The
signatures and messages follow arch-core's; until then these hold what the backends' code knows today
(which `--option` keys each reads, which precisions need a calibration set), so that the API checks
both before any work.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from typing import Any

from edgekit.backends.base import Backend, ExportOptions
from edgekit.errors import BadInput, suggest
from edgekit.targets import TargetProfile

# key -> what its value takes, per backend (read by backends/*.py as `job.options.extra[key]`)
_OPTION_KEYS: dict[str, dict[str, str]] = {
    "onnxruntime": {},
    "openvino": {
        "preset": "str",
        "model_type": "str",
        "fast_bias_correction": "str",
        "inference_precision": "str",
    },
    "tflite": {"onnx2tf": "object"},
    "tensorrt": {
        "min_shapes": "str",
        "opt_shapes": "str",
        "max_shapes": "str",
        "max_batch": "int",
        "int8_mode": "str",
        "build_engine": "str",
    },
}


def _convert(key: str, value: Any, kind: str) -> Any:
    shown = f"--option {key}={value}"
    if kind == "int":
        try:
            return int(value)
        except (TypeError, ValueError):
            raise BadInput(f"{shown}: {key} takes an integer") from None
    if kind == "object":
        if isinstance(value, Mapping):
            return dict(value)
        try:
            parsed = json.loads(str(value))
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise BadInput(f"{shown}: {key} takes a JSON object, e.g. --option '{key}={{\"name\": value}}'")
        return parsed
    return value


def options_of(backend: Backend, options: ExportOptions) -> dict[str, Any]:
    """Check `options.extra` (from `--option KEY=VALUE`) against what `backend` reads and leave the
    converted values in it: one-line BadInput for an unknown key (with the closest name) or a value of
    the wrong kind. TODO(A1): backend.options_of(options)."""
    known = _OPTION_KEYS.get(backend.name)
    if known is None:
        return options.extra
    who = f"the {backend.name} backend"
    for key in options.extra:
        if key not in known:
            if not known:
                raise BadInput(f"--option {key}: not an option of {who}, which takes no --option")
            raise BadInput(
                f"--option {key}: not an option of {who}.{suggest(key, known)} Options: {', '.join(known)}"
            )
    options.extra = {k: _convert(k, v, known[k]) for k, v in options.extra.items()}
    return options.extra


def needs_calibration(backend: Backend, precision: str, options: ExportOptions) -> bool:
    """Whether this export needs a calibration set. TODO(A1): backend.needs_calibration(precision, options)."""
    if backend.name in ("openvino", "tensorrt"):
        return precision == "int8"  # NNCF and TensorRT's host calibration are always static
    return precision == "int8" and not options.dynamic_int8


def target_status(profile: TargetProfile) -> dict[str, Any]:
    """{"status": one line, "installed": bool} for `edgekit targets`. TODO(A1): backends.target_status."""
    from edgekit.backends import BACKENDS, get_backend, implemented

    if profile.backend not in BACKENDS:
        status = f"unknown backend '{profile.backend}'.{suggest(profile.backend, BACKENDS)}".rstrip(".")
    elif profile.backend not in implemented():
        status = "backend not in this build"
    else:
        backend = get_backend(profile.backend)
        missing = backend.missing_modules()
        if missing:
            status = f"missing {', '.join(missing)} (pip install 'edgekit[{backend.extra}]')"
        elif backend.name == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
            status = "installed (bundle only: no tensorrt here, engines build on the device)"
        else:
            status = "installed"
    return {"status": status, "installed": status.startswith("installed")}
