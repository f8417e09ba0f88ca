"""TensorRT backend, one module per job:

- `formats`: the calibration cache, trtexec command lines and trtexec output (standard library only);
- `calibration`: host-side ranges and scales, the cache and the Q/DQ ONNX from the same scales;
- `placement`: where Q/DQ goes for TensorRT (only where it runs INT8);
- `profiles`: optimization profiles for dynamic inputs;
- `cuda`: device buffers (cuda-python or pycuda);
- `engine`: the local engine build and the engine runner (TensorRT Python API);
- `backend`: `TensorRTBackend` (export, host runner, on-device entry);
- `device`: the on-device engine build through the bundle's build.sh.

Importing this package imports none of them: `TensorRTBackend` and the other public names load on first
use, so `edgekit.backends.trt.formats` stays light (no onnx, numpy or tensorrt).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TensorRTBackend": "backend",
    "gpu_present": "cuda",
    "qdq_activation_scales": "calibration",
    "quantize_for_tensorrt": "calibration",
    "EngineRunner": "engine",
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
