"""Backend registry. Modules are imported only when a backend is used, so `edgekit --help` and
`edgekit targets` never import tensorflow, openvino or tensorrt."""

from __future__ import annotations

import importlib

from edgekit.backends.base import Backend
from edgekit.errors import BadInput, suggest

# name -> "module:Class"; a backend is one file in this package.
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
