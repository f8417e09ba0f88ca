"""inspect's and split's runtime-memory model: per-runtime constants and the formula's text.

Kept apart from `edgekit.analysis` (which needs onnx and numpy) so that `edgekit --help` can print the
formula without importing either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PRECISIONS = ("fp32", "fp16", "int8", "int4")
MB = 1024 * 1024

# ---- the memory model ---------------------------------------------------------------------------
#: weights in tensors at least this big are a class of their own: glibc serves them with mmap, so the
#: copy made while parsing the protobuf goes back to the OS instead of staying on the heap
LARGE_TENSOR_BYTES = 32 * 1024 * 1024
#: bytes per floating-point activation element assumed at each precision
ACTIVATION_BYTES = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "int4": 2.0}
INT4_GROUP = 32


@dataclass(frozen=True)
class MemoryModel:
    """Peak process-memory growth of one runtime running a model (session creation + inference):

        overhead + per_100_nodes x nodes/100 + conv x Conv kernel bytes + other x other weight bytes
        + large x bytes of weight tensors >= 32 MiB + activation x liveness-walk peak activation bytes

    What each term stands for (onnxruntime CPU, default options; found with benchmarks/bench_memory.py
    by switching the mechanisms off one at a time): `overhead`, the bare session (thread pool, kernel
    registry, allocator); `per_100_nodes`, kernels, graph and execution plan per node; `conv`, the
    initializer copy in the session's planned weight buffer, the NCHWc re-laid-out (pre-packed)
    kernel, and the heap the protobuf parse copy leaves behind; `other`, the weight buffer copy and
    part of the parse left-overs (MatMul/Gemm, norms); `large`, the transient of loading a big
    tensor (parse copy and weight buffer at once, then the parse copy unmapped); `activation`, the
    first run's arena (freed blocks of other sizes are not reused, the arena grows in doubling chunks)
    plus the memory-pattern block every later run allocates on top of it: about 1.2x + 1.0x the
    liveness peak. OpenVINO's CPU plugin costs more up front (plugin, per-node primitives) and
    much less per activation byte. The constants are a relative least-squares fit over the 28
    architectures of benchmarks/bench_memory.py (its --fit option reproduces them); on that set the
    estimate is 0.76x..1.18x of the measurement for onnxruntime and 0.78x..1.10x for OpenVINO."""

    runtime: str
    overhead_mb: float
    per_100_nodes_mb: float
    conv: float
    other: float
    large: float
    activation: float
    calibration: str

    def estimate(self, weight_bytes: Mapping[str, int], peak_activation_bytes: int, nodes: int) -> int:
        return int(
            self.overhead_mb * MB
            + self.per_100_nodes_mb * MB * nodes / 100.0
            + self.conv * weight_bytes.get("conv", 0)
            + self.other * weight_bytes.get("other", 0)
            + self.large * weight_bytes.get("large", 0)
            + self.activation * peak_activation_bytes
        )

    def formula(self) -> str:
        return (
            f"{self.runtime}: {self.overhead_mb:g} MB + {self.per_100_nodes_mb:g} MB per 100 nodes + "
            f"{self.conv:g} x Conv kernel bytes + {self.other:g} x other weight bytes + {self.large:g} x "
            f"bytes of weight tensors >= {LARGE_TENSOR_BYTES // MB} MiB + {self.activation:g} x peak "
            f"activation bytes ({self.calibration})"
        )


#: one model per runtime that was measured; other runtimes get no estimate of their own
MEMORY_MODELS = {
    "onnxruntime": MemoryModel(
        runtime="onnxruntime",
        overhead_mb=16.4,
        per_100_nodes_mb=0.90,
        conv=2.66,
        other=1.27,
        large=1.52,
        activation=2.32,
        calibration="onnxruntime 1.32 CPU EP, default session options, Linux x86-64, 28 architectures",
    ),
    "openvino": MemoryModel(
        runtime="openvino",
        overhead_mb=47.2,
        per_100_nodes_mb=4.48,
        conv=2.48,
        other=1.92,
        large=1.97,
        activation=1.16,
        calibration="OpenVINO 2026.4 CPU plugin, default compile options, Linux x86-64, 28 architectures",
    ),
}
DEFAULT_RUNTIME = "onnxruntime"


def _formula() -> str:
    models = "; ".join(m.formula() for m in MEMORY_MODELS.values())
    return (
        f"runtime memory = the peak process-memory growth while loading and running, per runtime: {models}. "
        "All at the chosen precision. Weight bytes: fp32 4 B/param, fp16 2 B/param, int8 1 B/param + one "
        "fp32 scale per output channel (1-D tensors such as biases stay 4 B), int4 0.5 B/param + one fp16 "
        f"scale per group of {INT4_GROUP} (1-D tensors 2 B). Peak activations: liveness walk over the "
        "topological order (a tensor lives from its producer to its last consumer; the running node's "
        "inputs and outputs both live; weights excluded) with float activations at 4 B (fp32), 2 B (fp16), "
        "1 B (int8, full-integer), 2 B (int4: weight-only, fp16 compute). Calibrated at fp32 "
        "(benchmarks/bench_memory.py); a device's measured peak RSS from `edgekit bench` replaces it."
    )


ESTIMATE_FORMULA = _formula()


# ---- decoders with a KV cache (inspect --context) -----------------------------------------------------
#: peak growth over load per byte of the formula's prefill tensors in a decoder's generation loop
#: (benchmarks/bench_decoder_memory.py, onnxruntime 1.32 CPU: 1.0x at 1024 tokens, 1.3x at 2048, where
#: the arena's doubling chunks overshoot; 1.15 centres both); OpenVINO's is not measured for decoders
DECODER_ACTIVATION = {"onnxruntime": 1.15, "openvino": 1.0}

DECODER_FORMULA = (
    "decoder at context N, batch B: memory = the runtime's load terms above (overhead + nodes + weights at "
    "the precision) + a x max(prefill, decode); KV cache = B x N x layers x 2 (key, value) x kv_heads x "
    "head_dim x dtype bytes (the cache's dtype; 2 at fp16); prefill = the tensors alive at a prompt of N "
    "tokens: 2 x B x heads x N x N attention scores (0 with a fused attention op) + B x N x N mask + "
    "3 x B x N x ffn + 4 x B x N x hidden + B x N x vocab logits + the KV cache, all at the activation dtype; "
    "decode = 2 x KV cache (past fed, present returned) + B x vocab; a = "
    + ", ".join(f"{k} {v:g}" for k, v in DECODER_ACTIVATION.items())
    + " (onnxruntime measured by benchmarks/bench_decoder_memory.py; openvino not measured)"
)
