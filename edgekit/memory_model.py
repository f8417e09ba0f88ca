"""inspect's runtime-memory model: its constants and the formula's text.

Kept apart from `edgekit.analysis` (which needs onnx and numpy) so that `edgekit --help` can print the
formula without importing either.
"""

from __future__ import annotations

PRECISIONS = ("fp32", "fp16", "int8", "int4")
MB = 1024 * 1024

# ---- the memory model ---------------------------------------------------------------------------
# Calibrated with benchmarks/bench_memory.py (onnxruntime 1.31 CPU EP, default session options,
# Linux/glibc x86-64): process RSS growth over 11 models from 0 to 54 M params and 0 to 98 MB peak
# activations (ResNet/VGG/MobileNet-like CNNs, transformer stacks, big-Gemm MLPs) lands within
# -18%..+8% of this formula; a bare session costs ~9.4 MB; Conv kernels cost ~3.3x their bytes,
# MatMul/Gemm weights ~1.5x (1.0x for tensors >= 32 MiB, whose parse copy is unmapped).
#: multiplier on Conv/ConvTranspose weight bytes: onnxruntime CPU keeps the initializer, a
#: re-laid-out (NCHWc / pre-packed) copy and the heap left over from parsing the protobuf
CONV_WEIGHT_FACTOR = 3.3
#: multiplier on the other weights (MatMul/Gemm/norms/...): the initializer plus parse left-overs
WEIGHT_FACTOR = 1.6
#: tensors at least this big are allocated with mmap by glibc and the parse copy is returned to
#: the OS, so they cost about their own size once
LARGE_TENSOR_BYTES = 32 * 1024 * 1024
LARGE_WEIGHT_FACTOR = 1.0
#: multiplier on the liveness-walk peak (arena rounding, imperfect buffer reuse)
ACTIVATION_FACTOR = 1.1
#: fixed cost of a session: thread pools, kernel registry, graph, allocator bookkeeping
OVERHEAD_MB = 10.0

#: bytes per floating-point activation element assumed at each precision
ACTIVATION_BYTES = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "int4": 2.0}
INT4_GROUP = 32

ESTIMATE_FORMULA = (
    f"runtime memory = {CONV_WEIGHT_FACTOR:g} x Conv weight bytes + {WEIGHT_FACTOR:g} x other weight "
    f"bytes (tensors >= {LARGE_TENSOR_BYTES // MB} MiB: {LARGE_WEIGHT_FACTOR:g} x) + {ACTIVATION_FACTOR:g} "
    f"x peak activation bytes + {OVERHEAD_MB:g} MB runtime overhead, all at the chosen precision. "
    f"Weight bytes: fp32 4 B/param, "
    f"fp16 2 B/param, int8 1 B/param + one fp32 scale per output channel (1-D tensors such as biases "
    f"stay 4 B), int4 0.5 B/param + one fp16 scale per group of {INT4_GROUP} (1-D tensors 2 B). Peak "
    "activations: liveness walk over the topological order (a tensor lives from its producer to its "
    "last consumer; the running node's inputs and outputs both live; weights excluded) with float "
    "activations at 4 B (fp32), 2 B (fp16), 1 B (int8, full-integer), 2 B (int4: weight-only, fp16 "
    "compute). Constants calibrated against onnxruntime CPU process-memory growth "
    "(benchmarks/bench_memory.py)."
)
