"""The TFLite backend: plan -> (cache or onnx2tf in the sandbox) -> flatbuffer checks -> I/O map."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgekit.backends.base import Backend, ExportJob, ExportResult, HostRunner, manifest_specs
from edgekit.backends.tflite import convert
from edgekit.backends.tflite.cache import CACHE_META, LOG_NAME, ConversionCache
from edgekit.backends.tflite.flatbuffer import analyze_flatbuffer, post_checks
from edgekit.backends.tflite.iomap import map_io, specs
from edgekit.backends.tflite.options import TFLiteOptions
from edgekit.backends.tflite.plan import InputPlan, convert_args, plan, thread_count, write_inputs_data
from edgekit.backends.tflite.runner import TFLiteRunner
from edgekit.errors import BadInput
from edgekit.sandbox import keep_log, last_error_line

log = logging.getLogger(__name__)

ENTRY = "model.tflite"
DISTRIBUTIONS = ("onnx2tf", "tensorflow", "tf-keras", "ai-edge-litert", "onnx-graphsurgeon")


class TFLiteBackend(Backend):
    name = "tflite"
    extra = "tflite"
    modules = ("onnx2tf", "tensorflow", "tf_keras", "ai_edge_litert", "onnx_graphsurgeon", "sng4onnx")
    needs_static_shapes = True
    name_pattern = "[A-Za-z0-9_]"  # TensorFlow rejects '@', ':', '/', ... in op names
    min_opset = 13
    Options = TFLiteOptions
    model_suffixes = (".tflite",)

    def versions(self) -> dict[str, str]:
        """From package metadata: never imports TensorFlow into this process."""
        out: dict[str, str] = {}
        for dist in DISTRIBUTIONS:
            try:
                out[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                out[dist] = "not installed"
        return out

    def export(self, job: ExportJob) -> ExportResult:
        self.require()
        chosen = plan(job)
        prepared = job.prepared
        inputs = [InputPlan.of(info) for info in prepared.inputs]
        job.out_dir.mkdir(parents=True, exist_ok=True)
        log_path = job.out_dir / LOG_NAME
        warnings: list[str] = list(prepared.warnings)
        entry_path = job.out_dir / ENTRY
        model_name = prepared.source_path.name
        with convert.converter_sandbox() as box:
            work = box.dir
            model_path = work / "model.onnx"
            shutil.copyfile(prepared.path, model_path)
            data_note = write_inputs_data(work, inputs, job)
            args = convert_args(work, model_path, inputs, chosen, job)
            cache = ConversionCache.for_job(job, args, work, self.versions())
            hit = cache.find(chosen.variant)
            if hit is not None:
                log.info("%s: onnx2tf output from the cache (%s)", model_name, hit.name)
                shutil.copyfile(hit / LOG_NAME, log_path)
                shutil.copyfile(hit / f"model_{chosen.variant}.tflite", entry_path)
                meta = json.loads((hit / CACHE_META).read_text())
                network, convert_s = meta["network"], float(meta["convert_seconds"])
                cache_note = {"hit": True, "entry": hit.name}
            else:
                started = time.perf_counter()
                network = convert.run_converter(box, args, log_path, model_name)
                convert_s = time.perf_counter() - started
                produced = work / "out" / f"model_{chosen.variant}.tflite"
                if not produced.exists():
                    reason = last_error_line(log_path) or f"onnx2tf wrote no {produced.name}"
                    kept = keep_log(log_path, model_name, "tflite")
                    raise convert.TFLiteConversionFailed(
                        f"onnx2tf did not produce the {chosen.label} model for {model_name}: {reason} "
                        f"(full log: {kept})"
                    )
                shutil.copyfile(produced, entry_path)
                stored = cache.store(work / "out", log_path, network, convert_s)
                cache_note = {"hit": False, "entry": stored.name if stored else None}

        analysis = analyze_flatbuffer(entry_path.read_bytes())
        n_threads = thread_count(job.options.threads or job.target.threads)
        io_map = map_io(entry_path, inputs, job, min(n_threads, os.cpu_count() or 1))
        in_specs, out_specs = specs(io_map, prepared)
        warnings += post_checks(chosen, analysis, in_specs, out_specs, model_name)
        details = {
            "variant": chosen.variant,
            "onnx2tf_file": f"<stem>_{chosen.variant}.tflite",
            "quantization": chosen.label,
            "io_dtype": chosen.io,
            "convert_seconds": round(convert_s, 2),
            "log": LOG_NAME,
            "network": network,
            "calibration_input": data_note,
            "ops": analysis["ops"],
            "float_ops": analysis["float_ops"],
            "flex_ops": analysis["flex_ops"],
            "custom_ops": analysis["custom_ops"],
            "io_map": io_map,
            "threads": n_threads,
            "delegate": "XNNPACK (LiteRT default delegate, OpResolverType.AUTO)",
            "onnx2tf_cache": cache_note,
        }
        return ExportResult(
            entry=ENTRY,
            inputs=in_specs,
            outputs=out_specs,
            toolchain=self.versions(),
            details=details,
            warnings=warnings,
            effective_precision=None,
        )

    def open_runner(
        self, artifact_dir: Path, manifest: Mapping[str, Any], threads: int | None = None
    ) -> HostRunner:
        self.require()
        entry = Path(artifact_dir) / manifest["entry"]
        if not entry.exists():
            raise BadInput(f"{artifact_dir}: the artifact file {manifest['entry']} is missing")
        details = manifest.get("details", {})
        if not threads:
            # the target's thread count, but never more threads than this host has cores
            threads = min(thread_count(details.get("threads")), os.cpu_count() or 1)
        return TFLiteRunner(
            entry,
            *manifest_specs(manifest),
            details.get("io_map", {}),
            thread_count(threads),
        )
