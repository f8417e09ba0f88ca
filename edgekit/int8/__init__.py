"""INT8 that meets its gate: recipe search, sensitive-node fallback and `--precision auto`, for every
backend (issue 10). `engine` is backend-agnostic (what a backend implements for it: `adapter`); `ort_qdq` / `qdq_export`
drive onnxruntime's quantizer (ONNX Runtime and TensorRT Q/DQ; graph surgery on the Q/DQ model:
`qdq_surgery`), `nncf_search` drives NNCF (OpenVINO). Nothing heavy is imported here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def search_record(manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    """The manifest's `int8_search` section, wherever the backend put it in `details`."""
    details = manifest.get("details") or {}
    for where in (details, details.get("calibration"), details.get("quantization")):
        if isinstance(where, Mapping) and isinstance(where.get("int8_search"), dict):
            return where["int8_search"]
    return None
