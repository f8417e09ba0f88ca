"""Backend registry. Modules are imported only when a backend is used, so `edgekit --help` and
`edgekit targets` never import tensorflow, openvino or tensorrt.

A new backend is one module (or package) in this package, one row in `BACKENDS`, one target TOML and
one runner class in `edgekit/agent.py`: everything else asks the `Backend` object (see `base.py`).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from edgekit.backends.base import Backend
from edgekit.backends.options import BackendOptions
from edgekit.errors import BadInput, suggest

if TYPE_CHECKING:
    from edgekit.targets import TargetProfile

# name -> "module:Class"; a backend is one file (or package) in this package.
BACKENDS: dict[str, str] = {
    "onnxruntime": "edgekit.backends.ort:OnnxRuntimeBackend",
    "openvino": "edgekit.backends.ov:OpenVinoBackend",
    "tflite": "edgekit.backends.tflite:TFLiteBackend",
    "tensorrt": "edgekit.backends.trt:TensorRTBackend",
}

_instances: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise BadInput(f"unknown backend '{name}'.{suggest(name, BACKENDS)} Valid: {', '.join(BACKENDS)}")
    if name not in _instances:
        module_name, class_name = BACKENDS[name].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                raise BadInput(f"backend '{name}' is not part of this edgekit build") from exc
            raise
        _instances[name] = getattr(module, class_name)()
    return _instances[name]


def implemented() -> list[str]:
    """Backends whose module exists in this build (without importing their heavy dependencies)."""
    out = []
    for name, target in BACKENDS.items():
        if importlib.util.find_spec(target.split(":")[0]) is not None:
            out.append(name)
    return out


def parse_options(backend_name: str, items: Iterable[str] | Mapping[str, Any] | None) -> BackendOptions:
    """`--option KEY=VALUE` strings -> the backend's typed Options (BadInput: one line, closest key)."""
    return get_backend(backend_name).parse_options(items)


def target_status(profile: TargetProfile) -> dict[str, Any]:
    """What `edgekit targets` shows for a profile: {"status": one line, "installed": bool}."""
    if profile.backend not in BACKENDS:
        status = f"unknown backend '{profile.backend}'.{suggest(profile.backend, BACKENDS)}".rstrip(".")
    elif profile.backend not in implemented():
        status = "backend not in this build"
    else:
        status = get_backend(profile.backend).status()
    return {"status": status, "installed": status.startswith("installed")}
