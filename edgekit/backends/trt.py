"""TensorRT backend: host-side INT8 calibration plus an engine build recipe; a local engine build where
TensorRT and a GPU exist.

TensorRT engines are tied to the GPU and TensorRT version that built them, so for Jetson targets the
artifact is a *bundle* built on the device: the ONNX the engine is built from (opset lowered to the
target's maximum by ingest), for INT8 a calibration cache with the target's version header and an
explicit-quantization Q/DQ ONNX made from the same scales, and `build.json` / `build.sh` with the
trtexec command line. The Q/DQ ONNX is what the host verifies (onnxruntime, CPU).

How INT8 is built (by feature, not by version string):
- targets with native INT8: the Q/DQ ONNX (explicit quantization; the only path in TensorRT 11, which
  removed the implicit calibrators and BuilderFlag.INT8/FP16 in favour of strong typing);
- targets without (Jetson Nano, sm_53): `--int8 --calib=calib.cache --fp16`, so TensorRT may pick FP16
  kernels, which it does on Maxwell; the result says fp16 and a warning says why.
Every tensorrt / cuda import lives inside a function.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import quant
from edgekit import trt_formats as fmt
from edgekit.backends.base import Backend, ExportJob, ExportResult, HostRunner, TensorSpec
from edgekit.errors import BadInput, EdgekitError, InternalError, MissingDependency, Unreachable
from edgekit.fsio import write_bytes_atomic, write_text_atomic

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"  # the FP32 ONNX the engine is built from
QDQ_FILE = "model.qdq.onnx"  # explicit quantization, same scales as the cache
CACHE_FILE = "calib.cache"
ENGINE_FILE = "model.engine"
TIMING_CACHE_FILE = "timing.cache"
TIMES_FILE = "times.json"
RECIPE_JSON = "build.json"
RECIPE_SH = "build.sh"
METHODS = ("entropy", "minmax", "percentile")
DEFAULT_MAX_BATCH = 8


# ---- host-side calibration ---------------------------------------------------------------------
def compute_ranges(model_path: Path, calib: Any, method: str) -> dict[str, tuple[float, float]]:
    """(min, max) of every activation tensor, with onnxruntime on the CPU (histograms symmetric for
    entropy/percentile, as TensorRT's scales are)."""
    if method not in METHODS:
        raise BadInput(f"unknown calibration method '{method}'; choose one of {', '.join(METHODS)}")
    return quant.compute_ranges(model_path, calib, method, symmetric=method != "minmax")


def scales_from_ranges(ranges: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """TensorRT's symmetric scale per tensor: max(|min|, |max|) / 127 as float32 (never 0)."""
    out: dict[str, float] = {}
    for name, (low, high) in ranges.items():
        amax = max(abs(low), abs(high))
        if not np.isfinite(amax):
            raise BadInput(f"calibration produced a non-finite range for tensor '{name}'; check the data")
        out[name] = fmt.amax_to_scale(max(amax, 1e-6))
    return out


def quantize_qdq_from_scales(
    model_path: Path, out_path: Path, calib: Any, scales: Mapping[str, float]
) -> None:
    """Q/DQ ONNX with symmetric INT8 activations and per-channel symmetric INT8 weights, whose activation
    scales are exactly `scales` (onnxruntime's TensorQuantOverrides, zero point 0)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(model_path), load_external_data=False)
    weights = {init.name for init in model.graph.initializer}
    overrides = {
        name: [{"scale": np.array(scale, dtype=np.float32), "zero_point": np.array(0, dtype=np.int8)}]
        for name, scale in scales.items()
        if name not in weights
    }
    with quant.quiet():
        quantize_static(
            str(model_path),
            str(out_path),
            quant.ort_reader(calib, limit=1),  # ranges come from the overrides; one sample satisfies the API
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "TensorQuantOverrides": overrides,
            },
        )


def qdq_activation_scales(model_path: Path) -> dict[str, float]:
    """Scale of every QuantizeLinear in a Q/DQ ONNX, keyed by the tensor it quantizes."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out: dict[str, float] = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits and node.input[1] in inits:
            # onnxruntime renames a quantized graph output to '<name>_QuantizeLinear_Input'
            name = node.input[0].removesuffix("_QuantizeLinear_Input")
            out[name] = float(np.asarray(inits[node.input[1]]).reshape(-1)[0])
    return out


# ---- shapes ------------------------------------------------------------------------------------
def _parse_shape_option(text: str) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for part in re.split(r"[;,](?![^']*'\s*:)", str(text)):
        if not part.strip():
            continue
        name, sep, dims = part.strip().rpartition(":")
        try:
            shapes[name.strip("'")] = [int(d) for d in dims.split("x")]
        except ValueError as exc:
            raise BadInput(f"shape option '{part}' must look like NAME:1x3x224x224") from exc
        if not sep:
            raise BadInput(f"shape option '{part}' must look like NAME:1x3x224x224")
    return shapes


def optimization_profile(
    inputs: list[Any], calib: Any | None, extra: Mapping[str, Any]
) -> tuple[dict[str, list[int]], dict[str, list[int]], dict[str, list[int]]]:
    """min/opt/max shapes for inputs with dynamic dims ({} when every input is static).

    Explicit `--option min_shapes=... opt_shapes=... max_shapes=...` win; otherwise a dynamic axis 0
    (batch) gets 1 / 1 / max_batch (default 8), other dynamic dims take the calibration sample's size.
    """
    dynamic = [i for i in inputs if any(not isinstance(d, int) for d in i.shape)]
    if not dynamic:
        return {}, {}, {}
    given = [
        _parse_shape_option(extra[k]) if extra.get(k) else {}
        for k in ("min_shapes", "opt_shapes", "max_shapes")
    ]
    max_batch = int(extra.get("max_batch", DEFAULT_MAX_BATCH))
    sample = next(calib.feeds(1), None) if calib is not None else None
    mins, opts, maxs = {}, {}, {}
    for info in dynamic:
        if all(info.name in g for g in given):
            mins[info.name], opts[info.name], maxs[info.name] = (g[info.name] for g in given)
            continue
        lo, mid, hi = [], [], []
        for axis, dim in enumerate(info.shape):
            if isinstance(dim, int):
                lo.append(dim), mid.append(dim), hi.append(dim)
            elif axis == 0:
                lo.append(1), mid.append(1), hi.append(max_batch)
            elif sample is not None and info.name in sample and np.ndim(sample[info.name]) == len(info.shape):
                size = int(np.shape(sample[info.name])[axis])
                lo.append(size), mid.append(size), hi.append(size)
            else:
                raise BadInput(
                    f"input '{info.name}' has a dynamic dimension {axis} ({dim}); give it with --input-shape "
                    f"or --option min_shapes=/opt_shapes=/max_shapes= (e.g. {info.name}:1x3x224x224)"
                )
        mins[info.name], opts[info.name], maxs[info.name] = lo, mid, hi
    return mins, opts, maxs


# ---- the local engine build (TensorRT Python API) ----------------------------------------------
class _DeviceBuffers:
    """Device memory for calibration batches / inference: pycuda when installed, else cuda-python."""

    def __init__(self) -> None:
        self._ptrs: dict[str, tuple[int, int]] = {}
        try:
            import pycuda.autoinit  # noqa: F401 - creates the context
            import pycuda.driver as driver

            self._pycuda = driver
            self._keep: dict[str, Any] = {}
            self._rt = None
        except ImportError:
            self._pycuda = None
            self._rt = _cudart()

    def put(self, name: str, array: np.ndarray) -> int:
        array = np.ascontiguousarray(array)
        ptr = self._alloc(name, array.nbytes)
        if self._pycuda is not None:
            self._pycuda.memcpy_htod(ptr, array)
        else:
            kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
            _check(self._rt.cudaMemcpy(ptr, array.ctypes.data, array.nbytes, kind))
        return ptr

    def get(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        out = np.empty(shape, dtype=dtype)
        ptr = self._alloc(name, out.nbytes)
        if self._pycuda is not None:
            self._pycuda.memcpy_dtoh(out, ptr)
        else:
            kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
            _check(self._rt.cudaMemcpy(out.ctypes.data, ptr, out.nbytes, kind))
        return out

    def _alloc(self, name: str, nbytes: int) -> int:
        have = self._ptrs.get(name)
        if have and have[1] >= nbytes:
            return have[0]
        if have:
            self._free(have[0], name)
        if self._pycuda is not None:
            mem = self._pycuda.mem_alloc(max(nbytes, 1))
            self._keep[name] = mem
            ptr = int(mem)
        else:
            ptr = int(_check(self._rt.cudaMalloc(max(nbytes, 1))))
        self._ptrs[name] = (ptr, nbytes)
        return ptr

    def _free(self, ptr: int, name: str) -> None:
        if self._pycuda is not None:
            self._keep.pop(name).free()
        else:
            self._rt.cudaFree(ptr)

    def close(self) -> None:
        for name, (ptr, _) in list(self._ptrs.items()):
            self._free(ptr, name)
        self._ptrs.clear()


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as runtime  # older cuda-python
        except ImportError as exc:
            raise MissingDependency(
                "cuda-python", "tensorrt", "TensorRT device buffers (or install pycuda)"
            ) from exc
    return runtime


def _check(result: Any) -> Any:
    """cuda-python calls return (err, value...)."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise InternalError(f"CUDA call failed with error {err}")
    return rest[0] if len(rest) == 1 else (rest or None)


def gpu_present() -> bool:
    try:
        runtime = _cudart()
        err, count = runtime.cudaGetDeviceCount()
        return int(err) == 0 and count > 0
    except Exception:  # noqa: BLE001 - no CUDA, no GPU
        try:
            import pycuda.driver as driver

            driver.init()
            return driver.Device.count() > 0
        except Exception:  # noqa: BLE001
            return False


def _make_calibrator(trt: Any, method: str, feeds: list[dict[str, np.ndarray]], cache_path: Path) -> Any:
    """IInt8EntropyCalibrator2 (default) or IInt8MinMaxCalibrator that reads/writes `cache_path` and
    feeds the calibration set through device buffers."""
    base = trt.IInt8MinMaxCalibrator if method == "minmax" else trt.IInt8EntropyCalibrator2

    class Calibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.buffers = _DeviceBuffers()
            self.batches = iter(feeds)

        def get_batch_size(self) -> int:
            return 1  # explicit-batch networks: the batch is in the shapes

        def get_batch(self, names: list[str]) -> list[int] | None:
            feed = next(self.batches, None)
            if feed is None:
                return None
            return [self.buffers.put(name, feed[name]) for name in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.exists() else None

        def write_calibration_cache(self, cache: Any) -> None:
            write_bytes_atomic(cache_path, bytes(cache))

    return Calibrator()


def build_engine_local(
    onnx_path: Path,
    engine_path: Path,
    *,
    fp16: bool,
    int8: str | None,  # None | "calib" (implicit, cache) | "qdq" (explicit)
    cache_path: Path | None = None,
    calib_method: str = "entropy",
    calib_feeds: list[dict[str, np.ndarray]] | None = None,
    profile: tuple[dict[str, list[int]], dict[str, list[int]], dict[str, list[int]]] = ({}, {}, {}),
    timing_cache_path: Path | None = None,
) -> dict[str, Any]:
    """Build and serialize an engine with the TensorRT Python API. Returns build facts for the manifest."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingDependency("tensorrt", "tensorrt", "building a TensorRT engine") from exc
    if not gpu_present():
        raise Unreachable("no CUDA GPU is visible on this machine; build the engine on the device (build.sh)")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    has_int8_flag = hasattr(trt.BuilderFlag, "INT8")
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    strongly_typed = not has_int8_flag and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BadInput(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    facts: dict[str, Any] = {"tensorrt": trt.__version__, "strongly_typed": strongly_typed}
    if fp16 and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        implicit_ok = hasattr(trt, "IInt8EntropyCalibrator2") and hasattr(config, "int8_calibrator")
        if int8 == "calib" and not implicit_ok:
            raise BadInput("this TensorRT has no implicit INT8 calibration; build from the Q/DQ ONNX instead")
        if has_int8_flag:
            config.set_flag(trt.BuilderFlag.INT8)
        if int8 == "calib":
            config.int8_calibrator = _make_calibrator(
                trt, calib_method, calib_feeds or [], cache_path or Path()
            )
        facts["int8"] = "implicit calibration (cache)" if int8 == "calib" else "explicit Q/DQ"
    mins, opts, maxs = profile
    if mins:
        opt_profile = builder.create_optimization_profile()
        for name in mins:
            opt_profile.set_shape(name, mins[name], opts[name], maxs[name])
        config.add_optimization_profile(opt_profile)
        if int8 == "calib" and hasattr(config, "set_calibration_profile"):
            config.set_calibration_profile(opt_profile)
    if timing_cache_path is not None and hasattr(config, "create_timing_cache"):
        blob = timing_cache_path.read_bytes() if timing_cache_path.exists() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise InternalError(f"TensorRT failed to build an engine from {onnx_path.name} (see the log above)")
    write_bytes_atomic(engine_path, bytes(serialized))
    if timing_cache_path is not None and hasattr(config, "get_timing_cache"):
        write_bytes_atomic(timing_cache_path, bytes(config.get_timing_cache().serialize()))
    return facts


# ---- runners -----------------------------------------------------------------------------------
class OrtRunner(HostRunner):
    """Runs the host-verifiable ONNX (Q/DQ for INT8) with onnxruntime on the CPU."""

    def __init__(
        self, path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec], reference_qdq: bool = False
    ) -> None:
        import onnxruntime as ort

        super().__init__(inputs, outputs)
        options = ort.SessionOptions()
        if reference_qdq:
            # exact Q/DQ semantics, as TensorRT computes them: this CPU's fused int8 kernels would add
            # errors of their own (u8 x s8 saturation on x86 without VNNI) that TensorRT does not have
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = {s.name: np.asarray(feed[s.source_name]) for s in self.inputs}
        names = [s.name for s in self.outputs]
        results = self.session.run(names, arrays)
        return {
            s.source_name: np.asarray(r, dtype=np.float32) for s, r in zip(self.outputs, results, strict=True)
        }


class EngineRunner(HostRunner):
    """Runs a serialized engine with TensorRT (>= 8.5 name-based I/O API) on the local GPU."""

    def __init__(self, path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
        import tensorrt as trt

        super().__init__(inputs, outputs)
        self.trt = trt
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BadInput(f"{path.name} is not an engine for this TensorRT / GPU; rebuild it here")
        self.context = self.engine.create_execution_context()
        self.buffers = _DeviceBuffers()

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        trt = self.trt
        for spec in self.inputs:
            array = np.ascontiguousarray(
                feed[spec.source_name], dtype=trt.nptype(self.engine.get_tensor_dtype(spec.name))
            )
            self.context.set_input_shape(spec.name, array.shape)
            self.context.set_tensor_address(spec.name, self.buffers.put(spec.name, array))
        shapes = {}
        for spec in self.outputs:
            shape = tuple(self.context.get_tensor_shape(spec.name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(spec.name)))
            shapes[spec.name] = (shape, dtype)
            ptr = self.buffers._alloc(spec.name, int(np.prod(shape)) * dtype.itemsize)
            self.context.set_tensor_address(spec.name, ptr)
        if not self.context.execute_async_v3(0):
            raise InternalError("TensorRT inference failed")
        if self.buffers._rt is not None:
            self.buffers._rt.cudaDeviceSynchronize()
        else:
            self.buffers._pycuda.Context.synchronize()
        return {
            spec.source_name: self.buffers.get(spec.name, *shapes[spec.name]).astype(np.float32)
            for spec in self.outputs
        }

    def close(self) -> None:
        self.buffers.close()


# ---- helpers -----------------------------------------------------------------------------------
def _specs(infos: list[Any], prepared: Any) -> list[TensorSpec]:
    return [
        TensorSpec(
            name=i.name,
            source_name=prepared.source_name(i.name),
            shape=[d if isinstance(d, int) else str(d or "?") for d in i.shape],
            dtype=np.dtype(i.dtype).name,
            layout="NCHW" if len(i.shape) == 4 else "",
        )
        for i in infos
    ]


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


# ---- the backend -------------------------------------------------------------------------------
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

    def engine_available(self) -> bool:
        import importlib.util

        return all(importlib.util.find_spec(m) is not None for m in self.engine_modules)

    def versions(self) -> dict[str, str]:
        import onnx
        import onnxruntime

        out = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
        if self.engine_available():
            try:
                import tensorrt

                out["tensorrt"] = tensorrt.__version__
            except Exception:  # noqa: BLE001 - informational
                out["tensorrt"] = "unknown"
        return out

    # -- export ----------------------------------------------------------------------------------
    def export(self, job: ExportJob) -> ExportResult:
        target, out = job.target, Path(job.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        trt_version = str(target.runtime.get("tensorrt", "10.3.0"))
        major = fmt.parse_version(trt_version)[0]
        precision = job.precision
        if precision not in ("fp32", "fp16", "int8"):
            raise BadInput(f"precision '{precision}' is not one of fp32, fp16, int8 for TensorRT")
        warnings: list[str] = []
        notes: list[str] = []
        shutil.copyfile(job.prepared.path, out / MODEL_FILE)
        inputs = _specs(job.prepared.inputs, job.prepared)
        outputs = _specs(job.prepared.outputs, job.prepared)
        extra = job.options.extra
        mins, opts, maxs = optimization_profile(job.prepared.inputs, job.calib, extra)

        entry = MODEL_FILE
        effective: str | None = None
        cmd = fmt.TrtexecCommand(
            onnx=MODEL_FILE,
            save_engine=ENGINE_FILE,
            min_shapes=mins,
            opt_shapes=opts,
            max_shapes=maxs,
            timing_cache=TIMING_CACHE_FILE,
            export_times=TIMES_FILE,
        )
        int8_mode: str | None = None
        calib_details: dict[str, Any] = {}
        if precision == "fp16":
            cmd.fp16 = major < 11
            notes.append("fp16: the host verifies the FP32 ONNX; FP16 kernels are chosen on the device")
        elif precision == "int8":
            if job.calib is None:
                raise BadInput("--int8 for a TensorRT target needs a calibration set (--calib SET)")
            method = job.options.calib_method
            # the INT8 search (edgekit.int8): recipes and sensitive-node fallback scored with reference
            # Q/DQ semantics; the calibration cache carries the chosen model's activation scales
            # (implicit calibration cannot keep nodes in float: they stay INT8 in the calib-cache path)
            from edgekit.int8.qdq_export import search_tensorrt_qdq

            search = search_tensorrt_qdq(job, out / QDQ_FILE)
            scales = qdq_activation_scales(out / QDQ_FILE)
            write_text_atomic(out / CACHE_FILE, fmt.write_calib_cache(scales, trt_version, fmt.TRTEXEC_ALGORITHM))
            entry = QDQ_FILE
            int8_mode = str(extra.get("int8_mode", "qdq" if target.int8_native else "calib"))
            if int8_mode not in ("qdq", "calib"):
                raise BadInput(f"--option int8_mode must be qdq or calib, got '{int8_mode}'")
            if int8_mode == "calib" and major >= 11:
                raise BadInput("TensorRT >= 11 removed implicit calibration; use --option int8_mode=qdq")
            if major >= 11:
                cmd.onnx, cmd.strongly_typed = QDQ_FILE, True
            elif int8_mode == "qdq":
                cmd.onnx, cmd.int8, cmd.fp16, cmd.explicit_quantization = QDQ_FILE, True, True, True
            else:
                cmd.int8, cmd.calib, cmd.fp16 = True, CACHE_FILE, True
            if not target.int8_native:
                effective = "fp16"
                capability = target.compute_capability or "?"
                warnings.append(
                    f"{target.name} has no native INT8 (compute capability {capability}): "
                    "the engine is built with INT8 and FP16 allowed, so TensorRT picks FP16 kernels there; "
                    "FP16 is the right choice on this device (--fp16). The Q/DQ ONNX verified on the host "
                    "bounds the INT8 error only."
                )
            calib_details = {
                "int8_search": search,
                "method": method,
                "cache_algorithm": fmt.TRTEXEC_ALGORITHM,
                "tensors": len(scales),
                "int8_mode": int8_mode,
            }

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

        engine: str | None = None
        build_facts: dict[str, Any] = {}
        want_local = _truthy(extra.get("build_engine", "0"))
        if target.build == "host" or want_local:
            if self.engine_available() and (want_local or gpu_present()):
                build_facts = build_engine_local(
                    out / (cmd.onnx or MODEL_FILE),
                    out / ENGINE_FILE,
                    fp16=precision in ("fp16", "int8"),
                    int8=int8_mode,
                    cache_path=out / CACHE_FILE,
                    calib_method=job.options.calib_method,
                    calib_feeds=list(job.calib.feeds(1)) if (job.calib and int8_mode == "calib") else None,
                    profile=(mins, opts, maxs),
                    timing_cache_path=out / TIMING_CACHE_FILE,
                )
                engine = ENGINE_FILE
            elif want_local:
                raise MissingDependency("tensorrt", self.extra, "building the TensorRT engine here")
            else:
                notes.append(
                    "TensorRT is not installed here: the engine is left for the device (run build.sh)"
                )
        else:
            notes.append("on-device build: copy this bundle to the device and run build.sh (trtexec)")

        details = {
            "build": recipe,
            "calib_cache": CACHE_FILE if precision == "int8" else None,
            "calibration": calib_details or None,
            "int8_native": target.int8_native,
            "trt_version_target": trt_version,
            "trt_version_code": fmt.version_code(trt_version),
            "compute_capability": target.compute_capability,
            "build_mode": target.build,
            "engine": engine,
            "engine_build": build_facts or None,
            "onnx": MODEL_FILE,
            "onnx_opset": job.prepared.opset,
            "qdq_onnx": QDQ_FILE if precision == "int8" else None,
            "host_runner": f"onnxruntime CPU runs {entry} (the Q/DQ ONNX for int8); the engine runs only "
            "where TensorRT and a GPU are present",
            "notes": notes,
        }
        return ExportResult(
            entry=entry,
            inputs=inputs,
            outputs=outputs,
            toolchain=self.versions(),
            details=details,
            warnings=warnings,
            effective_precision=effective,
        )

    # -- verify ----------------------------------------------------------------------------------
    def open_runner(self, artifact_dir: Path, manifest: Mapping[str, Any]) -> HostRunner:
        artifact_dir = Path(artifact_dir)
        inputs = [TensorSpec.from_json(s) for s in manifest["inputs"]]
        outputs = [TensorSpec.from_json(s) for s in manifest["outputs"]]
        details = manifest.get("details") or {}
        engine = details.get("engine")
        if engine and (artifact_dir / engine).exists() and self.engine_available() and gpu_present():
            try:
                return EngineRunner(artifact_dir / engine, inputs, outputs)
            except EdgekitError:
                raise
            except Exception as exc:  # noqa: BLE001 - an engine from another GPU: verify the ONNX
                log.warning("cannot run %s here (%s); verifying %s instead", engine, exc, manifest["entry"])
        path = artifact_dir / manifest["entry"]
        if not path.exists():
            raise BadInput(f"{path} is missing from the artifact directory")
        return OrtRunner(path, inputs, outputs, reference_qdq=path.name == QDQ_FILE)
