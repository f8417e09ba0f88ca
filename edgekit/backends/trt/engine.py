"""The local engine build and the engine runner (TensorRT Python API), for hosts with TensorRT and a
GPU (x86-gpu, or `--option build_engine=1`). `tensorrt` is imported inside the functions only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import HostRunner, TensorSpec
from edgekit.backends.trt.cuda import DeviceBuffers, require_gpu
from edgekit.backends.trt.profiles import Shapes
from edgekit.errors import BadInput, InternalError, require
from edgekit.fsio import write_bytes_atomic


def _make_calibrator(trt: Any, method: str, feeds: list[dict[str, np.ndarray]], cache_path: Path) -> Any:
    """IInt8EntropyCalibrator2 (default) or IInt8MinMaxCalibrator that reads/writes `cache_path` and
    feeds the calibration set through device buffers."""
    base = trt.IInt8MinMaxCalibrator if method == "minmax" else trt.IInt8EntropyCalibrator2

    class Calibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.buffers = DeviceBuffers()
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


def _network(trt: Any, builder: Any, onnx_path: Path, logger: Any) -> tuple[Any, Any, bool]:
    """Parse the ONNX into an explicit-batch network (strongly typed where TensorRT dropped the
    precision flags, i.e. TensorRT >= 11)."""
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    strongly_typed = not hasattr(trt.BuilderFlag, "INT8") and hasattr(
        trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"
    )
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BadInput(f"TensorRT could not parse {onnx_path.name}: {errors}")
    return network, parser, strongly_typed


def build_engine_local(
    onnx_path: Path,
    engine_path: Path,
    *,
    fp16: bool,
    int8: str | None,  # None | "calib" (implicit, cache) | "qdq" (explicit)
    cache_path: Path | None = None,
    calib_method: str = "entropy",
    calib_feeds: list[dict[str, np.ndarray]] | None = None,
    profile: tuple[Shapes, Shapes, Shapes] = ({}, {}, {}),
    timing_cache_path: Path | None = None,
) -> dict[str, Any]:
    """Build and serialize an engine with the TensorRT Python API. Returns build facts for the manifest."""
    trt = require("tensorrt", "tensorrt", "building a TensorRT engine")
    require_gpu("building a TensorRT engine")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser, strongly_typed = _network(trt, builder, onnx_path, logger)
    config = builder.create_builder_config()
    facts: dict[str, Any] = {"tensorrt": trt.__version__, "strongly_typed": strongly_typed}
    if fp16 and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        implicit_ok = hasattr(trt, "IInt8EntropyCalibrator2") and hasattr(config, "int8_calibrator")
        if int8 == "calib" and not implicit_ok:
            raise BadInput("this TensorRT has no implicit INT8 calibration; build from the Q/DQ ONNX instead")
        if hasattr(trt.BuilderFlag, "INT8"):
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
        config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise InternalError(f"TensorRT failed to build an engine from {onnx_path.name} (see the log above)")
    write_bytes_atomic(engine_path, bytes(serialized))
    if timing_cache_path is not None and hasattr(config, "get_timing_cache"):
        write_bytes_atomic(timing_cache_path, bytes(config.get_timing_cache().serialize()))
    return facts


class EngineRunner(HostRunner):
    """Runs a serialized engine with TensorRT (>= 8.5 name-based I/O API) on the local GPU."""

    def __init__(self, path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
        trt = require("tensorrt", "tensorrt", "running a TensorRT engine")
        super().__init__(inputs, outputs)
        self.trt = trt
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BadInput(f"{path.name} is not an engine for this TensorRT / GPU; rebuild it here")
        self.context = self.engine.create_execution_context()
        self.buffers = DeviceBuffers()

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        trt = self.trt
        for spec in self.inputs:
            dtype = trt.nptype(self.engine.get_tensor_dtype(spec.name))
            array = np.ascontiguousarray(feed[spec.source_name], dtype=dtype)
            self.context.set_input_shape(spec.name, array.shape)
            self.context.set_tensor_address(spec.name, self.buffers.put(spec.name, array))
        shapes = {}
        for spec in self.outputs:
            shape = tuple(self.context.get_tensor_shape(spec.name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(spec.name)))
            shapes[spec.name] = (shape, dtype)
            ptr = self.buffers.alloc(spec.name, int(np.prod(shape)) * dtype.itemsize)
            self.context.set_tensor_address(spec.name, ptr)
        if not self.context.execute_async_v3(0):
            raise InternalError("TensorRT inference failed")
        self.buffers.synchronize()
        return {
            spec.source_name: self.buffers.get(spec.name, *shapes[spec.name]).astype(np.float32)
            for spec in self.outputs
        }

    def close(self) -> None:
        self.buffers.close()
