"""The onnx2tf conversion cache: one onnx2tf run serves every precision of a model and calibration set.

One onnx2tf run is 5-10 s on a small model (minutes on a large one) and one -oiqt run writes every
variant, so the variants (not the int16-activation ones: never used, and onnx2tf 1.28 has no flag to skip
making them) and the log of a successful run are kept in `<cache root>/onnx2tf/<base>-<quant>`
(entries of the content cache, `edgekit.cache`: written whole or not at all). <base> hashes the prepared
model's sha256, the calibration set's sha256 (or none), every onnx2tf argument but the quantization
ones, and the toolchain versions; <quant> hashes the quantization arguments. A request is served by any
entry of its <base> holding its file whose quantization arguments produce that file identically:
float32/float16 come from any entry (onnx2tf makes them before, and independently of, quantization;
the names it changes under -oiqt / -osd are only those starting with '/', which the prepared model
never has), dynamic-range int8 needs the same quant_type, the integer files the same quant_type and
I/O types. So fp32, fp16 and int8 of one model with one calibration set run onnx2tf at most twice (a
float request runs without -oiqt), and a second target with the same quantization settings not at all.
Every post-check runs on a cache hit as on a fresh conversion; the artifact's convert.log is the cached
run's log, and the details say whether the cache served it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgekit.backends.base import ExportJob
from edgekit.cache import META, ContentCache, digest

log = logging.getLogger(__name__)

LOG_NAME = "convert.log"
CACHE_FORMAT = 1
CACHE_META = META
# onnx2tf arguments that change only the quantized files, and onnx2tf's defaults for them
QUANT_DEFAULTS = {"quant_type": "per-channel", "input_quant_dtype": "int8", "output_quant_dtype": "int8"}
QUANT_FLAGS = ("output_dynamic_range_quantized_tflite", "output_integer_quantized_tflite", *QUANT_DEFAULTS)
FLOAT_VARIANTS = ("float32", "float16")


def _quant_settings(quant: Mapping[str, Any]) -> dict[str, Any]:
    return {key: quant.get(key, default) for key, default in QUANT_DEFAULTS.items()}


def _serves(quant: Mapping[str, Any], wanted: Mapping[str, Any], variant: str) -> bool:
    """Whether a run with quantization arguments `quant` made `variant` as a run with `wanted` would."""
    if variant in FLOAT_VARIANTS:
        return True
    have, want = _quant_settings(quant), _quant_settings(wanted)
    if variant == "dynamic_range_quant":
        return have["quant_type"] == want["quant_type"]
    return have == want


class ConversionCache:
    """onnx2tf outputs of successful runs, shared by the precisions and targets of one model and
    calibration set (see the module docstring): entries of the content cache's `onnx2tf` kind."""

    def __init__(self, cache: ContentCache, base: str, quant: dict[str, Any], key: dict[str, Any]) -> None:
        self.cache = cache
        self.root = cache.root
        self.base = base
        self.quant = quant
        self.key = key

    @classmethod
    def for_job(
        cls, job: ExportJob, args: Mapping[str, Any], work: Path, versions: Mapping[str, str]
    ) -> ConversionCache:
        from edgekit import __version__
        from edgekit.ingest import file_sha256  # ingest imports onnx: not at module top

        # the working directory differs per run: arguments are compared with it taken out
        plain = json.loads(json.dumps(dict(args), default=str).replace(str(work), "<work>"))
        quant = {k: plain.pop(k) for k in QUANT_FLAGS if k in plain}
        key = {
            "format": CACHE_FORMAT,
            "edgekit": __version__,
            "toolchain": dict(versions),
            "model_sha256": file_sha256(job.prepared.path),
            "calibration_sha256": job.calib.sha256() if job.calib is not None else None,
            "args": plain,
        }
        return cls(ContentCache("onnx2tf"), digest(key, 20), quant, key)

    @property
    def name(self) -> str:
        return f"{self.base}-{digest(self.quant, 20)}"

    def find(self, variant: str) -> Path | None:
        """An entry holding `variant` as this run would make it: this run's own entry first."""
        entries = sorted(self.cache.entries(f"{self.base}-"), key=lambda item: item[0].name != self.name)
        for entry, meta in entries:
            try:
                complete = meta["format"] == CACHE_FORMAT and (entry / LOG_NAME).is_file()
                served = variant in meta["variants"] and _serves(meta["quant"], self.quant, variant)
            except (KeyError, TypeError):
                continue  # foreign: ignored, a fresh run replaces nothing
            if complete and served and (entry / f"model_{variant}.tflite").is_file():
                return entry
        return None

    def store(self, out: Path, log_path: Path, network: Mapping[str, Any], convert_s: float) -> Path | None:
        """Keep this run's variants and log (a whole entry or none). A failure here costs only the next
        conversion, so it is logged, never raised."""
        files = [
            path
            for path in sorted(out.glob("model_*.tflite"))
            if not path.stem.endswith("_with_int16_act")  # never chosen by plan.plan()
        ]
        meta = {
            **self.key,
            "quant": self.quant,
            "variants": [path.stem.removeprefix("model_") for path in files],
            "network": network,
            "convert_seconds": round(convert_s, 2),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        try:
            with self.cache.store(self.name, meta) as tmp:
                for path in files:
                    shutil.copyfile(path, tmp / path.name)
                shutil.copyfile(log_path, tmp / LOG_NAME)
        except OSError as exc:
            log.warning("could not keep the onnx2tf output in the cache %s: %s", self.root, exc)
            return None
        return self.cache.path(self.name)
