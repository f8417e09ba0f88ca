"""OpenVINO backend: IR (.xml + .bin) at FP32 / FP16, and INT8 through NNCF post-training quantization.

Export converts the prepared ONNX with `openvino.convert_model`. FP16 is FP16 *weight compression* at
save time (the IR's inputs and outputs stay float32); INT8 quantizes the uncompressed model with NNCF
(FakeQuantize nodes) from the shared calibration set, optionally under accuracy control.

Why the f32 hint matters: on CPUs with AVX-512 BF16 or AMX, OpenVINO's CPU plugin runs models in bf16
unless told otherwise, so an "FP32" artifact would be verified at bf16 and its fidelity numbers would
describe the wrong thing. FP32 artifacts are therefore compiled with INFERENCE_PRECISION_HINT=f32, and
every export records the precision the runtime actually chose (read back from the compiled model).

Modules: `backend` (export and the seam's answers: device string from the target profile, IR files),
`runtime` (`compile_ir`, free of edgekit imports so that the device agent can carry a copy of it; the
host runner), `int8` (NNCF), `options` (`--option` keys).
"""

from __future__ import annotations

from edgekit.backends.ov.backend import ENTRY, WEIGHTS, OpenVinoBackend
from edgekit.backends.ov.int8 import choose_quantization, resolve_ignored, reverted_layers
from edgekit.backends.ov.options import OpenVinoOptions
from edgekit.backends.ov.runtime import HOST_DEVICE, OpenVinoRunner, compile_ir, execution_summary

__all__ = [
    "ENTRY",
    "HOST_DEVICE",
    "WEIGHTS",
    "OpenVinoBackend",
    "OpenVinoOptions",
    "OpenVinoRunner",
    "choose_quantization",
    "compile_ir",
    "execution_summary",
    "resolve_ignored",
    "reverted_layers",
]
