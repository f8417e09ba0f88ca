"""One calibration pass, every candidate's ranges.

`collect` runs the model once over the calibration samples (onnxruntime, CPU) with every float
activation exposed as an output, and keeps per tensor its exact min/max and a signed histogram whose
range doubles when a sample exceeds it (doubling merges whole bins, so no count is ever smeared).
`ActivationStats.ranges(method, symmetric)` then derives min/max, percentile and entropy (KL) ranges
for every recipe from that one pass, where onnxruntime's calibrators need one pass per method.

Entropy follows TensorRT's calibrator (KL divergence between the clipped reference histogram and its
128-level quantization, on |x|, with the spike of exact zeros flattened as NVIDIA's pytorch-quantization
does, and 256 levels for a non-negative tensor with uint8 activations); unlike onnxruntime's, the resulting range is clipped to what was
observed, so a ReLU output keeps `low = 0` instead of a mirrored `-threshold` that wastes half of a
uint8 range.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from edgekit.errors import BadInput
from edgekit.onnx_run import cpu_session, run_each

log = logging.getLogger(__name__)

BINS_PER_SIDE = 2048  # signed histogram: 2 * BINS_PER_SIDE bins over [-R, R]
QUANT_LEVELS = 128  # int8 magnitude levels (entropy calibration)
ENTROPY_STRIDE = 4  # thresholds tried every few bins: same choice within a bin width, 4x faster
METHODS = ("minmax", "entropy", "percentile")
FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}


@dataclass
class TensorStats:
    """Running statistics of one tensor: exact min/max, and counts over [-R, R] in equal bins."""

    low: float = math.inf
    high: float = -math.inf
    radius: float = 0.0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(2 * BINS_PER_SIDE, dtype=np.int64))
    nonfinite: int = 0

    def add(self, values: np.ndarray) -> None:
        flat = np.asarray(values, dtype=np.float32).reshape(-1)
        if flat.size == 0:
            return
        low, high = float(flat.min()), float(flat.max())
        if not (math.isfinite(low) and math.isfinite(high)):
            finite = np.isfinite(flat)
            self.nonfinite += int(flat.size - finite.sum())
            flat = flat[finite]
            if flat.size == 0:
                return
            low, high = float(flat.min()), float(flat.max())
        self.low, self.high = min(self.low, low), max(self.high, high)
        amax = max(abs(low), abs(high))
        if self.radius == 0.0:
            self.radius = amax if amax > 0 else 1e-12
        elif amax > self.radius:
            self._grow(amax)
        width = self.radius / BINS_PER_SIDE
        index = np.floor((flat + self.radius) / width).astype(np.int64)
        np.clip(index, 0, 2 * BINS_PER_SIDE - 1, out=index)
        self.hist += np.bincount(index, minlength=2 * BINS_PER_SIDE)

    def _grow(self, amax: float) -> None:
        """Double the radius until it covers `amax`; old bin i falls wholly into new bin
        ((k - 1) * BINS_PER_SIDE + i) // k for a growth factor k = 2**n."""
        factor = 2 ** math.ceil(math.log2(amax / self.radius))
        old = np.arange(2 * BINS_PER_SIDE)
        # any factor >= 2 * BINS_PER_SIDE maps the old bins exactly as 2 * BINS_PER_SIDE does (into the
        # two central bins); capping it keeps the int64 index math from overflowing when the first
        # batch was all zeros (radius 1e-12, e.g. an attention-mask bias on unpadded sentences)
        step = min(factor, 2 * BINS_PER_SIDE)
        new_index = ((step - 1) * BINS_PER_SIDE + old) // step
        self.hist = np.bincount(new_index, weights=self.hist, minlength=2 * BINS_PER_SIDE).astype(np.int64)
        self.radius *= factor

    # ---- ranges ----------------------------------------------------------------------------
    def minmax(self, symmetric: bool) -> tuple[float, float]:
        if symmetric:
            amax = max(abs(self.low), abs(self.high))
            return -amax, amax
        return self.low, self.high

    def percentile(self, pct: float, symmetric: bool) -> tuple[float, float]:
        """Clip the extreme (100 - pct)% of |x| (symmetric), or of each tail (asymmetric)."""
        total = self.hist.sum()
        if total == 0:
            return self.minmax(symmetric)
        width = self.radius / BINS_PER_SIDE
        keep = pct / 100.0
        if symmetric:
            folded = self._folded()
            cdf = np.cumsum(folded) / total
            index = int(np.searchsorted(cdf, keep))
            amax = min((index + 1) * width, max(abs(self.low), abs(self.high)))
            return -amax, amax
        cdf = np.cumsum(self.hist) / total
        hi_index = int(np.searchsorted(cdf, keep))
        lo_index = int(np.searchsorted(cdf, 1.0 - keep))
        high = min(-self.radius + (hi_index + 1) * width, self.high)
        low = max(-self.radius + lo_index * width, self.low)
        return low, high

    def entropy(self, symmetric: bool) -> tuple[float, float]:
        """TensorRT's KL-divergence threshold on |x|, clipped to the observed range."""
        folded = self._folded().astype(np.float64)
        if len(folded) > 1:
            folded[0] = folded[1]  # the spike of exact zeros (ReLU) would dominate the divergence
        amax_seen = max(abs(self.low), abs(self.high))
        if folded.sum() == 0 or amax_seen == 0:
            return self.minmax(symmetric)
        width = self.radius / BINS_PER_SIDE
        # a non-negative tensor with asymmetric (uint8) activations spends all 256 levels on [0, T]
        levels = 2 * QUANT_LEVELS if (not symmetric and self.low >= 0) else QUANT_LEVELS
        threshold = kl_threshold(folded, levels) * width
        threshold = min(threshold, amax_seen)
        if symmetric:
            return -threshold, threshold
        return max(self.low, -threshold), min(self.high, threshold)

    def _folded(self) -> np.ndarray:
        """Histogram of |x| with BINS_PER_SIDE bins over [0, R]."""
        return self.hist[BINS_PER_SIDE:] + self.hist[:BINS_PER_SIDE][::-1]


def kl_threshold(hist: np.ndarray, levels: int = QUANT_LEVELS, stride: int = ENTROPY_STRIDE) -> int:
    """The number of leading bins of a |x| histogram whose clipped distribution loses least
    information when quantized to `levels` levels (KL divergence, TensorRT's entropy calibration)."""
    bins = len(hist)
    last = int(np.nonzero(hist)[0][-1]) + 1
    if last <= levels:
        return last
    best, best_kl = last, math.inf
    for stop in list(range(levels, last, stride)) + [last]:
        reference = hist[:stop].copy()
        reference[stop - 1] += hist[stop:].sum()  # outliers clip into the last bin
        nonzero = hist[:stop] != 0
        # merge `stop` bins into `levels` groups, spread each group's mass over its non-empty bins
        groups = np.minimum((np.arange(stop) * levels) // stop, levels - 1)
        mass = np.bincount(groups, weights=hist[:stop], minlength=levels)
        filled = np.bincount(groups, weights=nonzero, minlength=levels)
        expanded = np.where(nonzero, mass[groups] / np.maximum(filled[groups], 1), 0.0)
        kl = _kl(reference, expanded)
        if kl < best_kl:
            best, best_kl = stop, kl
    return min(best, bins)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    p_sum, q_sum = p.sum(), q.sum()
    if p_sum == 0 or q_sum == 0:
        return math.inf
    p = p / p_sum
    q = q / q_sum
    mask = p > 0
    if np.any(q[mask] == 0):
        # a clipped-in outlier bin with no mass in q: smooth as TensorRT does (tiny epsilon)
        q = np.where(q == 0, 1e-12, q)
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


@dataclass
class ActivationStats:
    """Statistics of every float activation of a model over a calibration set."""

    tensors: dict[str, TensorStats]
    samples: int

    def ranges(
        self, method: str, symmetric: bool, percentile: float = 99.999
    ) -> dict[str, tuple[float, float]]:
        if method not in METHODS:
            raise BadInput(f"unknown calibration method '{method}'; choose one of {', '.join(METHODS)}")
        out: dict[str, tuple[float, float]] = {}
        for name, stats in self.tensors.items():
            if stats.low > stats.high:  # never saw a finite value
                continue
            if method == "minmax":
                out[name] = stats.minmax(symmetric)
            elif method == "percentile":
                out[name] = stats.percentile(percentile, symmetric)
            else:
                out[name] = stats.entropy(symmetric)
        return out

    def nonfinite(self) -> dict[str, int]:
        return {name: s.nonfinite for name, s in self.tensors.items() if s.nonfinite}


def float_activations(model: onnx.ModelProto) -> list[str]:
    """Every non-initializer tensor a node reads or writes whose inferred type is floating point,
    in graph order (graph inputs first)."""
    types: dict[str, int] = {}
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    initializers = {init.name for init in model.graph.initializer}
    seen: dict[str, None] = {}
    for vi in model.graph.input:
        if vi.name not in initializers:
            seen.setdefault(vi.name, None)
    for node in model.graph.node:
        for name in list(node.input) + list(node.output):
            if name and name not in initializers:
                seen.setdefault(name, None)
    return [name for name in seen if types.get(name) in FLOAT_TYPES]


def collect(
    model_path: str | Path, feeds: Iterable[Mapping[str, np.ndarray]], threads: int | None = None
) -> ActivationStats:
    """Run the model once over `feeds` with every float activation as an extra output."""
    model = onnx.load(str(model_path))
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # noqa: BLE001 - value_info from ingest is used as is
        log.debug("shape inference before calibration failed: %s", exc)
    names = float_activations(model)
    outputs = {o.name for o in model.graph.output}
    value_infos = {vi.name: vi for vi in model.graph.value_info}
    for name in names:
        if name not in outputs:
            model.graph.output.append(value_infos.get(name) or onnx.helper.make_empty_tensor_value_info(name))
    with tempfile.TemporaryDirectory(prefix="edgekit-stats-") as tmp:
        path = Path(tmp) / "augmented.onnx"
        large = model.ByteSize() > 1_500_000_000
        onnx.save_model(model, str(path), save_as_external_data=large, location="augmented.onnx.data")
        session = cpu_session(path, threads=threads)
        wanted = set(names)
        fetch = [o.name for o in session.get_outputs() if o.name in wanted]
        tensors = {name: TensorStats() for name in fetch}
        samples = 0
        for outputs in run_each(session, feeds, fetch):
            for name, value in outputs.items():
                tensors[name].add(value)
            samples += 1
        del session
    if samples == 0:
        raise BadInput("the calibration set holds no samples")
    return ActivationStats(tensors, samples)
