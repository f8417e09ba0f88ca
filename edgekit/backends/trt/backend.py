"""The TensorRT backend: a bundle the device builds its engine from, verified on the host.

TensorRT engines are tied to the GPU and TensorRT version that built them, so for Jetson targets the
artifact is a *bundle* built on the device: the ONNX the engine is built from (opset lowered to the
target's maximum by ingest), for INT8 a calibration cache with the target's version header and an
explicit-quantization Q/DQ ONNX made from the same scales (Q/DQ only where TensorRT runs INT8, see
`placement`), and `build.json` / `build.sh` with the trtexec command line. The Q/DQ ONNX is what the
host verifies (onnxruntime, CPU); `on_device_entry` builds the engine on each device.

How INT8 is built (by feature, not by version string):
- targets with native INT8: the Q/DQ ONNX (explicit quantization; the only path in TensorRT 11, which
  removed the implicit calibrators and BuilderFlag.INT8/FP16 in favour of strong typing);
- targets without (Jetson Nano, sm_53): `--int8 --calib=calib.cache --fp16`, so TensorRT may pick FP16
  kernels, which it does on Maxwell; the result says fp16 and a warning says why.
No tensorrt / cuda import happens at module import time.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.backends.base import (
    Backend,
    ExportJob,
    ExportResult,
    HostRunner,
    TensorSpec,
    manifest_specs,
    name_matches,
)
from edgekit.backends.trt import calibration
from edgekit.backends.trt import formats as fmt
from edgekit.backends.trt.cuda import gpu_present
from edgekit.backends.trt.options import TensorRTOptions
from edgekit.backends.trt.profiles import Shapes, optimization_profile
from edgekit.errors import BadInput, EdgekitError, MissingDependency, NotApplicable, NotVerifiedHere
from edgekit.fsio import write_text_atomic

if TYPE_CHECKING:
    from collections.abc import Callable

    from edgekit.transport import Transport

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"  # the FP32 ONNX the engine is built from
QDQ_FILE = "model.qdq.onnx"  # explicit quantization, same scales as the cache
WEIGHTS_FILE = "model.wq.onnx"  # weight-only INT4/INT8: DequantizeLinear on weights (opset 21)
WEIGHT_ONLY_TRT = "10.0"  # the first TensorRT with INT4 weight-only (block-quantized) DequantizeLinear
CACHE_FILE = "calib.cache"
ENGINE_FILE = "model.engine"
TIMING_CACHE_FILE = "timing.cache"
TIMES_FILE = "times.json"
RECIPE_JSON = "build.json"
RECIPE_SH = "build.sh"
DEFAULT_TRT = "10.3.0"


@dataclass
class _Int8:
    """What the INT8 step produced: the mode, the details for the manifest, warnings."""

    mode: str  # "qdq" | "calib"
    details: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    effective: str | None = None


def _specs(infos: list[Any], prepared: Any) -> list[TensorSpec]:
    return [
        TensorSpec.build(i.name, i.shape, i.dtype, source_name=prepared.source_name(i.name)) for i in infos
    ]


def _copy_model(source: Path, dest: Path) -> None:
    """The ONNX file and its external-data files (a model over ~1.8 GB keeps its weights beside it;
    the file names they are referenced by stay the same)."""
    from edgekit.ingest import model_files

    for path in model_files(source):
        shutil.copyfile(path, dest if path == source else dest.parent / path.name)


def _excluded_nodes(job: ExportJob) -> list[str]:
    """Node names matching `--ignore` patterns: kept in float in the Q/DQ ONNX."""
    if not job.options.ignore:
        return []
    model = job.prepared.load()
    return [
        n.name
        for n in model.graph.node
        if n.name and any(name_matches(n.name, p) for p in job.options.ignore)
    ]


class TensorRTBackend(Backend):
    name = "tensorrt"
    extra = "tensorrt"
    # the bundle (ONNX, cache, Q/DQ ONNX, recipe) needs only onnxruntime; engines need `tensorrt`
    modules: tuple[str, ...] = ()
    engine_modules = ("tensorrt",)
    needs_static_shapes = False
    # TensorRT takes any tensor name; trtexec shape specs quote names holding ',' or ':'
    name_pattern = None
    min_opset = 13
    precisions = ("fp32", "fp16", "int8", "int4")
    Options = TensorRTOptions
    model_suffixes = (".onnx", ".data", ".engine", ".plan")

    def engine_available(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.engine_modules)

    def versions(self) -> dict[str, str]:
        out = {m: str(importlib.import_module(m).__version__) for m in ("onnx", "onnxruntime")}
        if self.engine_available():
            try:
                out["tensorrt"] = str(importlib.import_module("tensorrt").__version__)
            except Exception:  # noqa: BLE001 - informational
                out["tensorrt"] = "unknown"
        return out

    def bundle_only(self) -> str | None:
        """`edgekit targets` status: without TensorRT here the bundle is made and engines build on
        the device (None when engines can be built here)."""
        if self.engine_available():
            return None
        return "bundle only: no tensorrt here, engines build on the device"

    def times_here(self, target: Any, manifest: Mapping[str, Any]) -> bool:
        """Whether timing the host runner times TensorRT itself: only for an engine built here (the
        host runner of a bundle is onnxruntime on the Q/DQ ONNX)."""
        return target.build == "host" and bool((manifest.get("details") or {}).get("engine"))

    # -- export ----------------------------------------------------------------------------------
    def export(self, job: ExportJob) -> ExportResult:
        target, out, precision = job.target, Path(job.out_dir), job.precision
        if precision not in self.precisions:
            raise BadInput(f"precision '{precision}' is not one of {', '.join(self.precisions)} for TensorRT")
        trt_version = str(target.runtime.get("tensorrt", DEFAULT_TRT))
        major = fmt.parse_version(trt_version)[0]
        weight_only = precision == "int4" or (precision == "int8" and job.options.weights_only)
        if weight_only and major < int(WEIGHT_ONLY_TRT.split(".")[0]):
            what = "INT4" if precision == "int4" else "weight-only INT8"
            raise NotApplicable(
                f"{what} on TensorRT needs TensorRT >= {WEIGHT_ONLY_TRT} (block-quantized DequantizeLinear); "
                f"target '{target.name}' runs TensorRT {trt_version}: choose --int8 or --fp16"
            )
        out.mkdir(parents=True, exist_ok=True)
        _copy_model(Path(job.prepared.path), out / MODEL_FILE)
        options = self.options_of(job.options)
        profile = optimization_profile(job.prepared.inputs, job.calib, vars(options))
        mins, opts, maxs = profile
        cmd = fmt.TrtexecCommand(
            onnx=MODEL_FILE,
            save_engine=ENGINE_FILE,
            min_shapes=mins,
            opt_shapes=opts,
            max_shapes=maxs,
            timing_cache=TIMING_CACHE_FILE,
            export_times=TIMES_FILE,
        )
        notes: list[str] = []
        int8: _Int8 | None = None
        weights: dict[str, Any] | None = None
        if weight_only:
            weights = self._weight_only(job, out)
            cmd.onnx = WEIGHTS_FILE
            if major >= 11:
                cmd.strongly_typed = True
            else:
                cmd.fp16 = True  # activations in FP16 (weight-only: no activation scales)
            notes.append(
                f"weight-only {precision}: {WEIGHTS_FILE} holds DequantizeLinear weights at opset 21 (above the "
                f"profile's opset_max, which is TensorRT's ONNX parser for other ops); not built on a GPU here"
            )
        elif precision == "fp16":
            cmd.fp16 = major < 11
            notes.append(
                "fp16: FP16 kernels are chosen on the device; the host cannot run them, so this bundle is "
                "not verified here (verify it on the device)"
            )
        elif precision == "int8":
            int8 = self._int8(job, out, trt_version)
            if major >= 11:
                cmd.onnx, cmd.strongly_typed = QDQ_FILE, True
            elif int8.mode == "qdq":
                cmd.onnx, cmd.int8, cmd.fp16, cmd.explicit_quantization = QDQ_FILE, True, True, True
            else:
                cmd.int8, cmd.calib, cmd.fp16 = True, CACHE_FILE, True
        recipe = self._write_recipe(out, cmd, profile)
        engine, build_facts = self._maybe_build_here(job, out, cmd, int8, profile, notes)
        entry = QDQ_FILE if int8 else (WEIGHTS_FILE if weights else MODEL_FILE)
        details = {
            "build": recipe,
            "calib_cache": CACHE_FILE if int8 else None,
            "calibration": int8.details if int8 else None,
            "int8_native": target.int8_native,
            "trt_version_target": trt_version,
            "trt_version_code": fmt.version_code(trt_version),
            "compute_capability": target.compute_capability,
            "build_mode": target.build,
            "engine": engine,
            "engine_build": build_facts or None,
            "onnx": MODEL_FILE,
            "onnx_opset": job.prepared.opset,
            "qdq_onnx": QDQ_FILE if int8 else None,
            "host_runner": f"onnxruntime CPU runs {entry} (the Q/DQ ONNX for int8); the engine runs only "
            "where TensorRT and a GPU are present",
            "notes": notes,
        }
        if weights is not None:
            details["weight_only"] = weights
        return ExportResult(
            entry=entry,
            inputs=_specs(job.prepared.inputs, job.prepared),
            outputs=_specs(job.prepared.outputs, job.prepared),
            toolchain=self.versions(),
            details=details,
            warnings=int8.warnings if int8 else [],
            effective_precision=int8.effective if int8 else None,
        )

    def _weight_only(self, job: ExportJob, out: Path) -> dict[str, Any]:
        """INT4 (blocks along K) or INT8 (per output channel) weights as DequantizeLinear -> MatMul/Gemm
        at opset 21, symmetric (TensorRT's INT4 takes no zero point), levels searched against the gate."""
        from edgekit.backends.ort import save_onnx
        from edgekit.int4.graph import to_block_dq
        from edgekit.int4.search import spec_of, weight_only
        from edgekit.opset import convert_opset

        def writer(model: Any, layers: Any, quantized: Any) -> Any:
            return to_block_dq(convert_opset(model, 21), layers, quantized)

        level = "int4" if job.precision == "int4" else "int8"
        asked_asymmetric = level == "int4" and not job.options.int4_symmetric
        result = weight_only(job, spec_of(job, level, force_symmetric=True, int8_per_channel=True), writer)
        save_onnx(result.model, out / WEIGHTS_FILE)
        if asked_asymmetric:
            result.details["notes"].append(
                "symmetric INT4: TensorRT's INT4 DequantizeLinear takes no zero point"
            )
        return {"format": "DequantizeLinear (opset 21, block_size along K)", **result.details}

    def _int8(self, job: ExportJob, out: Path, trt_version: str) -> _Int8:
        """Calibrate once; write the cache and the Q/DQ ONNX from the same scales."""
        target = job.target
        options = self.options_of(job.options)
        assert isinstance(options, TensorRTOptions)
        if job.calib is None:
            raise BadInput("--int8 for a TensorRT target needs a calibration set (--calib SET)")
        mode = options.int8_mode or ("qdq" if target.int8_native else "calib")
        if mode == "calib" and fmt.parse_version(trt_version)[0] >= 11:
            raise BadInput("TensorRT >= 11 removed implicit calibration; use --option int8_mode=qdq")
        method = job.options.calib_method
        int8_weights = fmt.parse_version(trt_version)[0] >= 10  # TensorRT 8.x parses float weights only
        ignored = _excluded_nodes(job)
        placed: dict[bool, calibration.QdqResult] = {}

        def place(
            model_path: Path, out_path: Path, ranges: Mapping[str, tuple[float, float]], **recipe: Any
        ) -> Path:
            """One search candidate: the TensorRT-aware placement with the candidate's ranges as scales."""
            per_channel = bool(recipe.get("per_channel", True))
            placed[per_channel] = calibration.quantize_for_tensorrt(
                model_path,
                out_path,
                calibration.scales_from_ranges(ranges),
                exclude=[*ignored, *recipe.get("nodes_to_exclude", ())],
                per_channel=per_channel,
                int8_weights=int8_weights,
            )
            return out_path

        # the INT8 search (edgekit.int8): recipes and sensitive-node fallback scored with reference Q/DQ
        # semantics (what TensorRT computes); the cache gets every activation's scale under the chosen
        # recipe, so cache and Q/DQ ONNX describe the same network (implicit calibration cannot keep
        # nodes in float: those stay INT8 in the calib-cache path)
        from edgekit.int8.qdq_export import search_tensorrt_qdq

        ranges: dict[str, tuple[float, float]] = {}
        search = search_tensorrt_qdq(job, out / QDQ_FILE, builder=place, ranges_out=ranges)
        scales = calibration.scales_from_ranges(ranges)
        write_text_atomic(out / CACHE_FILE, fmt.write_calib_cache(scales, trt_version, fmt.TRTEXEC_ALGORITHM))
        qdq = placed[str(search["recipe"].get("weights", "per-channel")).startswith("per-channel")]
        result = _Int8(
            mode,
            {
                "method": method,
                "cache_algorithm": fmt.TRTEXEC_ALGORITHM,
                "tensors": len(scales),
                "int8_mode": mode,
                "qdq": qdq.to_json(),
                "int8_search": search,
            },
        )
        if not qdq.plan.int8_nodes:
            result.warnings.append(
                "TensorRT would run no layer of this model in INT8 (every weighted layer is too small or "
                "GEMV-shaped for INT8 kernels, or excluded): the INT8 engine is a float engine; use --fp16"
            )
        if not target.int8_native:
            result.effective = "fp16"
            result.warnings.append(
                f"{target.name} has no native INT8 (compute capability {target.compute_capability or '?'}): "
                "the engine is built with INT8 and FP16 allowed, so TensorRT picks FP16 kernels there; "
                "FP16 is the right choice on this device (--fp16). The Q/DQ ONNX verified on the host "
                "bounds the INT8 error only."
            )
        return result

    def _write_recipe(
        self, out: Path, cmd: fmt.TrtexecCommand, profile: tuple[Shapes, Shapes, Shapes]
    ) -> dict:
        mins, opts, maxs = profile
        bench = fmt.TrtexecCommand(
            load_engine=ENGINE_FILE,
            shapes=opts,
            export_times=TIMES_FILE,
            extra=["--warmUp=500", "--iterations=100"],
        )
        recipe = {
            "tool": "trtexec",
            "argv": cmd.argv(),
            "command": cmd.shell(),
            "bench_argv": bench.argv(),
            "bench_command": bench.shell(),
            "engine": ENGINE_FILE,
            "timing_cache": TIMING_CACHE_FILE,
            "times": TIMES_FILE,
            "inputs_onnx": cmd.onnx,
            "profile": {"min": mins, "opt": opts, "max": maxs} if mins else None,
            "run_from": "bundle directory",
        }
        write_text_atomic(out / RECIPE_JSON, json.dumps(recipe, indent=2) + "\n")
        write_text_atomic(out / RECIPE_SH, fmt.build_script(cmd, bench))
        os.chmod(out / RECIPE_SH, 0o755)
        return recipe

    def _maybe_build_here(
        self,
        job: ExportJob,
        out: Path,
        cmd: fmt.TrtexecCommand,
        int8: _Int8 | None,
        profile: tuple[Shapes, Shapes, Shapes],
        notes: list[str],
    ) -> tuple[str | None, dict[str, Any]]:
        """Build the engine here for host targets with TensorRT and a GPU (or when asked to)."""
        options = self.options_of(job.options)
        assert isinstance(options, TensorRTOptions)
        want_local = options.build_engine
        if job.target.build != "host" and not want_local:
            notes.append("on-device build: copy this bundle to the device and run build.sh (trtexec)")
            return None, {}
        if not (self.engine_available() and (want_local or gpu_present())):
            if want_local:
                raise MissingDependency("tensorrt", self.extra, "building the TensorRT engine here")
            missing = "TensorRT is not installed" if not self.engine_available() else "no CUDA GPU is visible"
            notes.append(f"{missing} here: the engine is left for the device (run build.sh)")
            return None, {}
        from edgekit.backends.trt.engine import build_engine_local

        mode = int8.mode if int8 else None
        facts = build_engine_local(
            out / (cmd.onnx or MODEL_FILE),
            out / ENGINE_FILE,
            fp16=job.precision in ("fp16", "int8"),
            int8=mode,
            cache_path=out / CACHE_FILE,
            calib_method=job.options.calib_method,
            calib_feeds=list(job.calib.feeds(1)) if (job.calib and mode == "calib") else None,
            profile=profile,
            timing_cache_path=out / TIMING_CACHE_FILE,
        )
        return ENGINE_FILE, facts

    # -- verify ----------------------------------------------------------------------------------
    def open_runner(self, artifact_dir: Path, manifest: Mapping[str, Any]) -> HostRunner:
        """The engine where TensorRT and a GPU are here; else the ONNX the engine is built from, through
        onnxruntime, only where that computes what the engine does (FP32; INT8's Q/DQ ONNX with exact
        Q/DQ numerics). An FP16 bundle or an engine that does not load is NotVerifiedHere: the FP32
        ONNX is not their verdict."""
        from edgekit.backends.ort import OrtRunner

        artifact_dir = Path(artifact_dir)
        inputs, outputs = manifest_specs(manifest)
        precision = str(manifest.get("effective_precision") or manifest.get("precision") or "fp32")
        engine = (manifest.get("details") or {}).get("engine")
        if engine and (artifact_dir / engine).exists() and self.engine_available() and gpu_present():
            from edgekit.backends.trt import engine as trt_engine

            try:
                runner = trt_engine.EngineRunner(artifact_dir / engine, inputs, outputs)
            except EdgekitError:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. an engine from another GPU or TensorRT
                raise NotVerifiedHere(
                    f"the engine {engine} does not load here ({exc}): not verified here; rebuild it here "
                    "(re-export) or verify on its device (edgekit verify DIR --device NAME --val SET)"
                ) from exc
            runner.runtime, runner.precision = "tensorrt GPU", precision
            return runner
        if precision == "fp16":
            raise NotVerifiedHere(
                "a TensorRT FP16 bundle is not verified here: its FP16 kernels run only in TensorRT on a "
                "GPU, and the FP32 ONNX through onnxruntime would not test them; verify it on the device "
                "(edgekit verify DIR --device NAME --val SET)"
            )
        path = artifact_dir / manifest["entry"]
        if not path.exists():
            raise BadInput(f"{path} is missing from the artifact directory")
        # the Q/DQ ONNX runs with exact Q/DQ semantics, as TensorRT computes it: this CPU's fused int8
        # kernels would add errors of their own (u8 x s8 saturation on x86 without VNNI)
        qdq = path.name in (QDQ_FILE, WEIGHTS_FILE)
        runner = OrtRunner(path, inputs, outputs, reference_qdq=qdq)
        runner.runtime = f"onnxruntime CPU on {path.name}" + (" (reference Q/DQ numerics)" if qdq else "")
        runner.precision = precision
        return runner

    def needs_calibration(self, precision: str, options: Any) -> bool:
        # host calibration writes the cache and the Q/DQ ONNX (weight-only INT8 has no activation scales)
        return precision == "int8" and not options.weights_only

    # -- on the device ---------------------------------------------------------------------------
    def device_files(self, manifest: Mapping[str, Any]) -> list[tuple[str, str | None]]:
        """Engines built on devices stay home: each device gets only its own (see `device`)."""
        from edgekit.backends.trt.device import ENGINES_DIR

        return [f for f in super().device_files(manifest) if not f[0].startswith(f"{ENGINES_DIR}/")]

    async def on_device_entry(
        self, transport: Transport, job: Any, remote_dir: str, settings: Any, emit: Callable[[str], None]
    ) -> str:
        """The remote file the agent loads: an engine built at export when the device is this machine,
        else this device's engine, built there from the bundle's build.sh when it is not home yet
        (see `edgekit.backends.trt.device`)."""
        from edgekit.backends.trt.device import device_engine

        engine = (job.artifact.manifest.get("details") or {}).get("engine")
        if engine and transport.kind == "local":
            return f"{remote_dir}/{engine}"
        return await device_engine(transport, job, remote_dir, settings, emit)
