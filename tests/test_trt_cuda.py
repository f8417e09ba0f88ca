"""The engine-free CUDA code, for real, on a machine with an NVIDIA GPU and cuda-python (or pycuda):
the host calibrator's / engine runner's device buffers and the device agent's `CudaMemory`. TensorRT is
not needed. Skipped where no GPU is visible; run them there with

    python3 -m pytest -q -m cuda tests/test_trt_cuda.py
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit import agent
from edgekit.backends.trt import cuda
from edgekit.errors import InternalError

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not cuda.gpu_present(), reason="needs an NVIDIA GPU and cuda-python or pycuda"),
]

ARRAYS = [
    np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 7.5,
    np.array([-128, -1, 0, 1, 127], dtype=np.int8),
    np.linspace(-2, 2, 1001, dtype=np.float16),
    np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32),
    np.zeros((0, 4), dtype=np.float32),
]


def _free_bytes() -> int:
    if cuda.DeviceBuffers().backend == "pycuda":
        import pycuda.driver as driver

        return int(driver.mem_get_info()[0])
    free, _total = cuda.check(cuda.cudart().cudaMemGetInfo())
    return int(free)


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_device_buffers_round_trip(array: np.ndarray) -> None:
    buffers = cuda.DeviceBuffers()
    try:
        ptr = buffers.put("x", array)
        assert isinstance(ptr, int) and ptr != 0
        buffers.synchronize()
        back = buffers.get("x", array.shape, array.dtype)
        np.testing.assert_array_equal(back, array)  # `back` is a fresh host array filled from the device
    finally:
        buffers.close()
    assert len(buffers) == 0


def test_device_buffers_grow_reuse_and_free() -> None:
    small = np.arange(16, dtype=np.float32)
    big = np.arange(8 << 20, dtype=np.float32)  # 32 MiB
    before = _free_bytes()
    buffers = cuda.DeviceBuffers()
    first = buffers.put("a", small)
    assert buffers.put("a", small[::-1].copy()) == first  # same size: the buffer is reused
    buffers.put("a", big)  # larger: reallocated, the old one freed
    buffers.put("b", -small)
    np.testing.assert_array_equal(buffers.get("a", big.shape, big.dtype), big)
    np.testing.assert_array_equal(buffers.get("b", small.shape, small.dtype), -small)
    with pytest.raises(InternalError, match="fewer than"):
        buffers.get("b", (32,), np.float32)  # more than buffer 'b' holds
    with pytest.raises(InternalError):
        buffers.get("never-written", (1,), np.float32)
    assert before - _free_bytes() >= big.nbytes  # really on the device
    buffers.close()
    assert len(buffers) == 0
    assert before - _free_bytes() < big.nbytes  # and given back


def test_agent_cuda_memory_round_trip() -> None:
    """The device agent's CudaMemory (what TensorRtRunner uses on a Jetson), with a stream."""
    memory = agent.CudaMemory()
    stream = memory.stream()
    for array in ARRAYS[:4]:
        ptr = memory.alloc(array.nbytes)
        host = np.ascontiguousarray(array)
        memory.h2d(ptr, host, stream)
        back = np.empty_like(host)
        memory.d2h(back, ptr, stream)
        memory.sync(stream)
        np.testing.assert_array_equal(back, array)
        memory.free(ptr)
    assert isinstance(memory.stream_handle(stream), int)
