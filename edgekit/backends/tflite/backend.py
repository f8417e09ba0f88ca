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

from edgekit.backends.base import Backend, ExportJob, ExportOptions, ExportResult, HostRunner, manifest_specs
from edgekit.backends.tflite import convert
from edgekit.backends.tflite.cache import CACHE_META, LOG_NAME, ConversionCache
from edgekit.backends.tflite.flatbuffer import analyze_flatbuffer, post_checks
from edgekit.backends.tflite.iomap import map_io, specs
from edgekit.backends.tflite.options import TFLiteOptions
from edgekit.backends.tflite.plan import (
    InputPlan,
    Plan,
    channels_last_inputs,
    convert_args,
    plan,
    thread_count,
    write_inputs_data,
)
from edgekit.backends.tflite.runner import TFLiteRunner
from edgekit.errors import BadInput
from edgekit.sandbox import keep_log, last_error_line

log = logging.getLogger(__name__)

ENTRY = "model.tflite"
DISTRIBUTIONS = (
    "onnx2tf",
    "tensorflow",
    "tf-keras",
    "ai-edge-litert",
    "ai-edge-quantizer",
    "onnx-graphsurgeon",
)


class TFLiteBackend(Backend):
    name = "tflite"
    extra = "tflite"
    modules = (
        "onnx2tf",
        "tensorflow",
        "tf_keras",
        "ai_edge_litert",
        "ai_edge_quantizer",
        "onnx_graphsurgeon",
        "sng4onnx",
    )
    needs_static_shapes = True
    name_pattern = "[A-Za-z0-9_]"  # TensorFlow rejects '@', ':', '/', ... in op names
    min_opset = 13
    precisions = ("fp32", "fp16", "int8", "int4")  # int4 and --weights-only through ai-edge-quantizer
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

    def needs_calibration(self, precision: str, options: ExportOptions) -> bool:
        """Weight-only INT8 and INT4 quantize weights only (a given set still scores the search)."""
        return super().needs_calibration(precision, options) and not getattr(options, "weights_only", False)

    def export(self, job: ExportJob) -> ExportResult:
        self.require()
        chosen = plan(job)
        prepared = job.prepared
        kept_nhwc = channels_last_inputs(prepared.path, prepared.inputs)
        inputs = [InputPlan.of(info, kept_nhwc) for info in prepared.inputs]
        job.out_dir.mkdir(parents=True, exist_ok=True)
        log_path = job.out_dir / LOG_NAME
        warnings: list[str] = list(prepared.warnings)
        entry_path = job.out_dir / ENTRY
        model_name = prepared.source_path.name
        searching = chosen.int8 == "static" and job.calib is not None
        aeq_plan = chosen.int8 in ("aeq", "weights")
        onnx2tf_variant = "float32" if aeq_plan else chosen.variant
        if searching or (aeq_plan and job.calib is not None):
            from edgekit.int8.search_inputs import bound

            job = bound(job)
        conv_job = job
        search: dict[str, Any] | None = None
        with convert.converter_sandbox() as box:
            work = box.dir
            model_path = work / "model.onnx"
            shutil.copyfile(prepared.path, model_path)
            data_note = write_inputs_data(work, inputs, conv_job)
            base_args = convert_args(work, model_path, inputs, chosen, conv_job)
            conversions: dict[str, tuple[Path, Any, float, dict[str, Any]]] = {}

            def converted(quant_type: str | None = None) -> Path:
                """The folder holding every onnx2tf file of one conversion (cached by its arguments)."""
                args = dict(base_args)
                if quant_type is not None:
                    args["quant_type"] = quant_type
                key = str(args.get("quant_type"))
                if key not in conversions:
                    conversions[key] = self._convert(
                        box, conv_job, args, onnx2tf_variant, log_path, model_name
                    )
                return conversions[key][0]

            folder = converted()
            shutil.copyfile(folder / f"model_{onnx2tf_variant}.tflite", entry_path)
            selective: dict[str, Any] | None = None
            if aeq_plan or searching:
                from edgekit.backends.tflite.selective_export import SelectiveExport

                aeq = SelectiveExport(
                    self, box, job, chosen, inputs, folder / "model_float32.tflite", log_path
                )
            if aeq_plan:
                best_path, selective = aeq.export_plan()
                shutil.copyfile(best_path, entry_path)
                warnings += aeq.warnings
            if searching:
                from edgekit.int8.tflite_search import search_tflite, tflite_scoring_set

                def run(path: Path, data: Any) -> Any:
                    return self.run_candidate(path, inputs, conv_job, data)

                best, variant, search = search_tflite(
                    job,
                    chosen.variant,
                    chosen.io in ("int8", "uint8"),
                    str(base_args.get("quant_type", "per-channel")),
                    converted,
                    run,
                    tflite_scoring_set(job),
                )
                shutil.copyfile(best, entry_path)
                if variant != chosen.variant:  # float activations: onnx2tf's dynamic-range file
                    warnings.append(
                        f"--allow-float-ops: INT8 met the gate only with every activation in float "
                        f"(int8 weights, {chosen.io} I/O became float32): onnx2tf has no per-node fallback"
                    )
                    chosen = Plan(
                        variant, "dynamic-range int8 (int8 weights, float activations)", "float32", "dynamic"
                    )
            if searching and search is not None:
                replaced = aeq.after_onnx2tf(search, chosen, entry_path)
                if replaced is not None:
                    was_dynamic = chosen.int8 == "dynamic"
                    chosen, selective = replaced
                    if was_dynamic and chosen.int8 == "aeq":
                        # the per-op fallback replaced onnx2tf's every-activation-in-float file
                        warnings = [w for w in warnings if not w.startswith("--allow-float-ops: INT8 met")]
                        warnings.append(
                            "--allow-float-ops: INT8 met the gate with "
                            f"{len(selective.get('reverted', []))} TFLite op(s) in float (ai-edge-quantizer "
                            "selective quantization), instead of onnx2tf's every activation in float"
                        )
                warnings += aeq.warnings
            _, network, convert_s, cache_note = conversions[str(base_args.get("quant_type"))]

        analysis = analyze_flatbuffer(entry_path.read_bytes())
        n_threads = thread_count(job.options.threads or job.target.threads)
        io_map = map_io(entry_path, inputs, job, min(n_threads, os.cpu_count() or 1))
        in_specs, out_specs = specs(io_map, prepared)
        warnings += post_checks(chosen, analysis, in_specs, out_specs, model_name)
        details = {
            "variant": chosen.variant,
            "onnx2tf_file": f"<stem>_{'float32' if chosen.int8 in ('aeq', 'weights') else chosen.variant}.tflite",
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
        if search is not None:
            details["int8_search"] = search
        if selective is not None:
            details["selective_quantization"] = selective
            if selective.get("float_outputs"):
                details["float_outputs"] = selective["float_outputs"]
        return ExportResult(
            entry=ENTRY,
            inputs=in_specs,
            outputs=out_specs,
            toolchain=self.versions(),
            details=details,
            warnings=warnings,
            effective_precision=None,
        )

    def _convert(
        self, box: Any, job: ExportJob, args: dict[str, Any], variant: str, log_path: Path, model_name: str
    ) -> tuple[Path, Any, float, dict[str, Any]]:
        """One onnx2tf conversion (or its cached output): (the folder with every model_<variant>.tflite
        it wrote, the network record, seconds, the cache note)."""
        work = box.dir
        cache = ConversionCache.for_job(job, args, work, self.versions())
        hit = cache.find(variant)
        if hit is not None:
            log.info("%s: onnx2tf output from the cache (%s)", model_name, hit.name)
            if not log_path.exists():
                shutil.copyfile(hit / LOG_NAME, log_path)
            meta = json.loads((hit / CACHE_META).read_text())
            return hit, meta["network"], float(meta["convert_seconds"]), {"hit": True, "entry": hit.name}
        out = Path(args["output_folder_path"])
        shutil.rmtree(out, ignore_errors=True)
        run_log = log_path if not log_path.exists() else work / f"convert-{args.get('quant_type')}.log"
        started = time.perf_counter()
        network = convert.run_converter(box, args, run_log, model_name)
        convert_s = time.perf_counter() - started
        produced = out / f"model_{variant}.tflite"
        if not produced.exists():
            reason = last_error_line(run_log) or f"onnx2tf wrote no {produced.name}"
            kept = keep_log(run_log, model_name, "tflite")
            raise convert.TFLiteConversionFailed(
                f"onnx2tf did not produce the {variant} model for {model_name}: {reason} (full log: {kept})"
            )
        stored = cache.store(out, run_log, network, convert_s)
        # each conversion keeps its files apart (the next one reuses onnx2tf's output folder)
        kept_dir = work / f"variants-{args.get('quant_type')}"
        shutil.rmtree(kept_dir, ignore_errors=True)
        kept_dir.mkdir()
        for path in out.glob("model_*.tflite"):
            shutil.copyfile(path, kept_dir / path.name)
        return kept_dir, network, convert_s, {"hit": False, "entry": stored.name if stored else None}

    def run_candidate(self, path: Path, inputs: list[InputPlan], job: ExportJob, data: Any) -> Any:
        """A candidate .tflite through the host runner `verify` uses, on the search's scoring set."""
        from edgekit.int8.tflite_search import run_tflite

        threads = min(thread_count(job.options.threads or job.target.threads), os.cpu_count() or 1)
        io_map = map_io(path, inputs, job, threads)
        in_specs, out_specs = specs(io_map, job.prepared)
        runner = TFLiteRunner(path, in_specs, out_specs, io_map, threads)
        try:
            return run_tflite(runner, data, job.prepared.source_name)
        finally:
            runner.close()

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
