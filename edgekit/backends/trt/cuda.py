"""The few CUDA calls the host-side TensorRT code needs (calibration batches, engine I/O): named device
buffers over cuda-python (`cuda.bindings.runtime`, or the older `cuda.cudart`) or pycuda. Nothing here
needs TensorRT, so it is exercised for real on any machine with an NVIDIA GPU (tests marked `cuda`)."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from edgekit.errors import InternalError, MissingDependency, MissingHardware


class NoCudaDevice(MissingHardware):
    """No CUDA GPU is visible here (exit 3, like a missing dependency: the fix is the environment)."""


def cudart() -> Any:
    """The CUDA runtime module of cuda-python: `cuda.bindings.runtime` (>= 12.6, the only one in 13.x)
    or `cuda.cudart` (older releases)."""
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        pass
    try:
        return importlib.import_module("cuda.cudart")
    except ImportError as exc:
        raise MissingDependency(
            "cuda-python", "tensorrt", "TensorRT device buffers (or install pycuda)"
        ) from exc


def check(result: Any) -> Any:
    """cuda-python calls return (err, value...): raise on an error, hand back the value(s)."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise InternalError(f"CUDA call failed with error {err}")
    return rest[0] if len(rest) == 1 else (rest or None)


def gpu_present() -> bool:
    """Whether a CUDA GPU is visible (False without cuda-python/pycuda, a driver or a device)."""
    try:
        runtime = cudart()
        err, count = runtime.cudaGetDeviceCount()
        return int(err) == 0 and count > 0
    except Exception:  # noqa: BLE001 - no CUDA, no GPU
        try:
            driver = importlib.import_module("pycuda.driver")
            driver.init()
            return bool(driver.Device.count() > 0)
        except Exception:  # noqa: BLE001
            return False


def require_gpu(what: str) -> None:
    if not gpu_present():
        raise NoCudaDevice(
            f"no CUDA GPU is visible on this machine for {what}; run it where the GPU is "
            "(for a device target: copy the bundle there and run build.sh)"
        )


class DeviceBuffers:
    """Named device allocations reused across calls (grown when a larger array comes): pycuda when it is
    installed (it owns a context), else the cuda-python runtime API (primary context)."""

    def __init__(self) -> None:
        self._ptrs: dict[str, tuple[int, int]] = {}
        self._keep: dict[str, Any] = {}
        self._pycuda: Any = None
        self._rt: Any = None
        try:
            importlib.import_module("pycuda.autoinit")  # creates the context
            self._pycuda = importlib.import_module("pycuda.driver")
        except ImportError:
            self._rt = cudart()

    @property
    def backend(self) -> str:
        return "pycuda" if self._pycuda is not None else "cuda-python"

    def alloc(self, name: str, nbytes: int) -> int:
        """The device pointer of buffer `name`, at least `nbytes` long."""
        have = self._ptrs.get(name)
        if have and have[1] >= nbytes:
            return have[0]
        if have:
            self._free(name)
        if self._pycuda is not None:
            mem = self._pycuda.mem_alloc(max(nbytes, 1))
            self._keep[name] = mem
            ptr = int(mem)
        else:
            ptr = int(check(self._rt.cudaMalloc(max(nbytes, 1))))
        self._ptrs[name] = (ptr, nbytes)
        return ptr

    def put(self, name: str, array: np.ndarray) -> int:
        """Copy `array` to buffer `name` (host to device); returns its pointer."""
        array = np.ascontiguousarray(array)
        ptr = self.alloc(name, array.nbytes)
        if self._pycuda is not None:
            self._pycuda.memcpy_htod(ptr, array)
        else:
            kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
            check(self._rt.cudaMemcpy(ptr, array.ctypes.data, array.nbytes, kind))
        return ptr

    def get(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """Copy buffer `name` back (device to host) as an array of `shape` and `dtype`."""
        out = np.empty(shape, dtype=dtype)
        have = self._ptrs.get(name)
        if have is None or have[1] < out.nbytes:
            raise InternalError(f"device buffer '{name}' holds fewer than {out.nbytes} bytes")
        if self._pycuda is not None:
            self._pycuda.memcpy_dtoh(out, have[0])
        else:
            kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
            check(self._rt.cudaMemcpy(out.ctypes.data, have[0], out.nbytes, kind))
        return out

    def synchronize(self) -> None:
        if self._pycuda is not None:
            self._pycuda.Context.synchronize()
        else:
            check(self._rt.cudaDeviceSynchronize())

    def _free(self, name: str) -> None:
        ptr, _ = self._ptrs.pop(name)
        if self._pycuda is not None:
            self._keep.pop(name).free()
        else:
            check(self._rt.cudaFree(ptr))

    def close(self) -> None:
        for name in list(self._ptrs):
            self._free(name)

    def __len__(self) -> int:
        return len(self._ptrs)
