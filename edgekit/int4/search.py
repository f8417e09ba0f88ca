"""Weight-only INT4 / INT8 for ONNX artifacts, with the same gate and the same kind of search as --int8:

1. Every MatMul/Gemm weight is quantized block-wise at the requested level (INT4, or INT8 for
   `--int8 --weights-only`) with the requested method (RTN, HQQ, GPTQ on the calibration set).
2. With a calibration set, the candidate is scored against FP32 on the held-out samples (or --val)
   through the gate `verify` applies. Layers are ranked by sensitivity: how much of the error on the
   worst samples raising each one a level (INT4 -> INT8, INT8 -> float) recovers (NNCF's revert-one).
3. `int4_ratio` < 1 moves the most sensitive layers to INT8 until at most that share of the
   weights (by parameter count, as NNCF counts it) is INT4. When the gate fails, the fewest top-ranked
   layers are raised (doubling, then bisection) until it holds; INT8 layers go to float only when
   every layer at INT8 still fails, and at most `max_revert` of them.
4. The artifact is written once with the chosen levels (MatMulNBits or opset-21 DequantizeLinear)
   and scored again, so the manifest's verdict is the artifact's own.

Previews are the float model with dequantized weights: MatMulNBits (accuracy level 0) and the
DequantizeLinear form compute with exactly these weights.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from edgekit.int4.blocks import METHODS, Blocks, clip_block, quantize
from edgekit.int4.graph import LEVELS, Layer, fake_quant, weight_layers, weight_of

if TYPE_CHECKING:
    from edgekit.backends.base import ExportJob
    from edgekit.int8.scoring import Score, ScoringSet

log = logging.getLogger(__name__)

Writer = Callable[[onnx.ModelProto, list[Layer], Mapping[str, Blocks]], onnx.ModelProto]
GPTQ_SAMPLES = 32


@dataclass
class Spec:
    """How weights are quantized: the typed options of an export, resolved for one backend."""

    primary: str = "int4"  # the level asked for: int4 (--int4) or int8 (--int8 --weights-only)
    group_size: int = 128
    symmetric: bool = False
    ratio: float = 1.0
    method: str = "rtn"
    int8_per_channel: bool = False  # INT8 layers with one scale per output channel (TensorRT)

    def bits(self, level: str) -> int:
        return 4 if level == "int4" else 8

    def block(self, level: str, k: int) -> int:
        if level == "int8" and self.int8_per_channel:
            return k
        return clip_block(self.group_size, k)

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.primary,
            "group_size": self.group_size,
            "symmetric": self.symmetric,
            "ratio": self.ratio,
            "method": self.method,
            "int8_scales": "per output channel" if self.int8_per_channel else "per block",
        }


def spec_of(
    job: ExportJob, primary: str, *, force_symmetric: bool = False, int8_per_channel: bool = False
) -> Spec:
    from edgekit.errors import BadInput

    opts = job.options
    group = int(getattr(opts, "int4_group_size", 128))
    ratio = float(getattr(opts, "int4_ratio", 1.0))
    method = str(getattr(opts, "int4_method", "rtn")).lower()
    if group < 16:
        raise BadInput(
            f"--int4-group-size {group}: the group size is at least 16 (a power of two: 32, 64, 128)"
        )
    if not 0.0 <= ratio <= 1.0:
        raise BadInput(f"--int4-ratio {ratio:g}: the share of weights at INT4 is between 0 and 1")
    if method not in METHODS:
        raise BadInput(f"--int4-method {method}: valid methods are {', '.join(METHODS)}")
    symmetric = bool(getattr(opts, "int4_symmetric", False)) or force_symmetric
    return Spec(primary, group, symmetric, ratio if primary == "int4" else 1.0, method, int8_per_channel)


@dataclass
class Result:
    model: onnx.ModelProto
    levels: dict[str, str]
    details: dict[str, Any]
    notes: list[str] = field(default_factory=list)


class WeightSearch:
    def __init__(
        self,
        model: onnx.ModelProto,
        spec: Spec,
        data: ScoringSet | None,
        gates: Any,
        calib_feeds: Sequence[Mapping[str, np.ndarray]] = (),
        budget_s: float = 600.0,
        max_revert: float = 0.25,
        progress: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.model = model
        self.spec = spec
        self.data = data
        self.gates = gates
        self.layers = weight_layers(model)
        self.by_node = {layer.node: layer for layer in self.layers}
        self.budget_s = budget_s
        self.max_revert = max_revert
        self.progress = progress
        self.started = time.perf_counter()
        self.cache: dict[tuple[str, str], Blocks] = {}
        self.trials: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.inputs = self._layer_inputs(calib_feeds) if spec.method == "gptq" else {}
        if spec.method == "gptq" and not self.inputs:
            self.notes.append("gptq needs a calibration set: RTN was used (pass --calib)")

    # ---- quantization -------------------------------------------------------------------------------
    def _layer_inputs(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Each layer's input activations on up to GPTQ_SAMPLES calibration samples, [tokens, K]."""
        if not feeds or not self.layers:
            return {}
        from edgekit.int8.ort_qdq import session

        probe = onnx.ModelProto()
        probe.CopyFrom(self.model)
        by_name = {n.name: n for n in probe.graph.node}
        wanted = {}
        for layer in self.layers:
            tensor = by_name[layer.node].input[0]
            wanted[layer.node] = tensor
            if tensor not in {o.name for o in probe.graph.output}:
                probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(tensor))
        sess = session(probe.SerializeToString())
        names = sorted(set(wanted.values()))
        rows: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for feed in list(feeds)[:GPTQ_SAMPLES]:
            for name, value in zip(names, sess.run(names, dict(feed)), strict=True):
                rows[name].append(np.asarray(value, np.float32).reshape(-1, np.asarray(value).shape[-1]))
        return {node: np.concatenate(rows[t], axis=0) for node, t in wanted.items()}

    def blocks(self, node: str, level: str) -> Blocks:
        key = (node, level)
        if key not in self.cache:
            layer = self.by_node[node]
            self.cache[key] = quantize(
                weight_of(self.model, layer),
                self.spec.bits(level),
                self.spec.block(level, layer.k),
                self.spec.symmetric,
                self.spec.method,
                self.inputs.get(node),
            )
        return self.cache[key]

    def quantized(self, levels: Mapping[str, str]) -> dict[str, Blocks]:
        return {node: self.blocks(node, lvl) for node, lvl in levels.items() if lvl != "float"}

    # ---- scoring ------------------------------------------------------------------------------------
    def _outputs(self, model: onnx.ModelProto, data: ScoringSet) -> dict[str, np.ndarray]:
        from edgekit.int8.ort_qdq import run_session, session

        return run_session(session(model.SerializeToString()), data, list(data.reference))

    def evaluate(
        self, levels: Mapping[str, str], stage: str, data: ScoringSet | None = None
    ) -> tuple[Score, dict]:
        from edgekit.int8.scoring import score

        data = data or self.data
        assert data is not None
        started = time.perf_counter()
        outputs = self._outputs(fake_quant(self.model, self.layers, self.quantized(levels)), data)
        result = score(outputs, data, self.gates)
        if stage:
            self.trials.append(
                {
                    "stage": stage,
                    "above": {lvl: sum(1 for v in levels.values() if v == lvl) for lvl in ("int8", "float")},
                    "score": result.to_json(),
                    "seconds": round(time.perf_counter() - started, 3),
                }
            )
        return result, outputs

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)

    # ---- the search ---------------------------------------------------------------------------------
    def base_levels(self) -> dict[str, str]:
        return {layer.node: self.spec.primary for layer in self.layers}

    def rank(self, base: dict[str, str], outputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        """Sensitivity of each layer: share of the worst samples' error recovered by raising it one level;
        layers not measured in time follow by their weight quantization error."""
        from edgekit.int8.scoring import sample_errors

        assert self.data is not None
        errors = sample_errors(outputs, self.data)
        count = min(16, len(self.data))
        worst = sorted(int(i) for i in np.argsort(errors)[::-1][:count])
        subset = self.data.subset(worst)
        base_error = float(np.mean(errors[worst]))
        rows = []
        for layer in self.layers:
            level = base[layer.node]
            w = weight_of(self.model, layer)
            dq = self.blocks(layer.node, level).dequantize() if level != "float" else w
            rel = float(np.linalg.norm(dq - w) / max(np.linalg.norm(w), 1e-12))
            rows.append({"node": layer.node, "op": layer.op, "weight_error": round(rel, 6), "recovery": None})
        deadline = self.left() / 2
        start = time.perf_counter()
        for row in sorted(rows, key=lambda r: -r["weight_error"]):
            if time.perf_counter() - start > deadline:
                self.notes.append("ranking ran out of time; unmeasured layers are ordered by weight error")
                break
            level = base[row["node"]]
            raised = dict(base)
            raised[row["node"]] = LEVELS[min(LEVELS.index(level) + 1, len(LEVELS) - 1)]
            _, out = self.evaluate(raised, "", subset)
            after = float(np.mean(sample_errors(out, subset)))
            row["recovery"] = round((base_error - after) / base_error, 6) if base_error > 0 else 0.0
        rows.sort(key=lambda r: (r["recovery"] is None, -(r["recovery"] or 0.0), -r["weight_error"]))
        for position, row in enumerate(rows, 1):
            row["rank"] = position
        self.progress(f"weights: ranked {len(rows)} layers on the {count} worst samples")
        return rows

    def _apply_ratio(self, base: dict[str, str], order: list[str]) -> dict[str, str]:
        if self.spec.primary != "int4" or self.spec.ratio >= 1.0:
            return base
        total = sum(layer.params for layer in self.layers) or 1
        levels = dict(base)
        for node in order:
            at_int4 = sum(self.by_node[n].params for n, lvl in levels.items() if lvl == "int4")
            if at_int4 / total <= self.spec.ratio + 1e-9:
                break
            levels[node] = "int8"
        return levels

    def _smallest(
        self, start: dict[str, str], order: list[str], level: str, limit: int
    ) -> tuple[int, dict[str, str], Score | None]:
        """The fewest of `order` raised to `level` (on top of `start`) that pass; (k, levels, score)."""
        verdicts: dict[int, tuple[Score, dict[str, str]]] = {}

        def check(k: int) -> bool:
            if k not in verdicts:
                levels = dict(start)
                for node in order[:k]:
                    levels[node] = level
                self.progress(f"weights: {k} layer(s) at {level}")
                verdicts[k] = (self.evaluate(levels, f"{k} at {level}")[0], levels)
            return verdicts[k][0].passed

        low, high, k = 0, None, 1
        while k <= limit and self.left() > 0:
            if check(k):
                high = k
                break
            low = k
            k = limit if k < limit and k * 2 > limit else k * 2
        if high is None:
            return -1, start, None
        while high - low > 1 and self.left() > 0:
            mid = (low + high) // 2
            if check(mid):
                high = mid
            else:
                low = mid
        return high, verdicts[high][1], verdicts[high][0]

    def run(self) -> tuple[dict[str, str], dict[str, Any]]:
        """The chosen level of every layer and the search's record."""
        levels = self.base_levels()
        record: dict[str, Any] = {"scored_on": None, "default": None, "final": None, "sensitivity": []}
        if self.data is None:
            self.notes.append(
                f"no calibration set: every MatMul/Gemm weight at {self.spec.primary} and not scored "
                "(pass --calib to search which layers must stay at INT8, --val to verify)"
            )
            if self.spec.primary == "int4" and self.spec.ratio < 1.0:
                order = sorted(self.layers, key=lambda layer: -layer.params)
                levels = self._apply_ratio(levels, [layer.node for layer in order])
                self.notes.append("without a calibration set, --int4-ratio keeps the largest layers at INT8")
            return levels, record
        record["scored_on"] = self.data.source
        default, outputs = self.evaluate(levels, "all " + self.spec.primary)
        record["default"] = default.to_json()
        best = default
        need_rank = self.layers and (not default.passed or self.spec.ratio < 1.0)
        if need_rank:
            sensitivity = self.rank(levels, outputs)
            record["sensitivity"] = sensitivity
            order = [row["node"] for row in sensitivity]
            if self.spec.ratio < 1.0:
                levels = self._apply_ratio(levels, order)
                best = self.evaluate(levels, f"ratio {self.spec.ratio:g}")[0]
            if not best.passed:
                candidates = [n for n in order if levels[n] == self.spec.primary]
                k, found, result = (-1, levels, None)
                if self.spec.primary == "int4":
                    k, found, result = self._smallest(levels, candidates, "int8", len(candidates))
                if result is not None:
                    levels, best = found, result
                else:
                    floor = {n: ("int8" if lvl == "int4" else lvl) for n, lvl in levels.items()}
                    limit = max(1, math.floor(self.max_revert * len(order) + 1e-9))
                    k, found, result = self._smallest(floor, order, "float", limit)
                    if result is not None:
                        levels, best = found, result
                    else:
                        record["would_take"] = (
                            f"the gate fails with every layer at INT8 and the {limit} most sensitive in "
                            "float (--max-revert); choose fp16, or loosen the gate"
                        )
        record["final_preview"] = best.to_json()
        record["passed"] = best.passed
        return levels, record


def layer_rows(
    layers: list[Layer], levels: Mapping[str, str], quantized: Mapping[str, Blocks]
) -> list[dict[str, Any]]:
    rows = []
    for layer in layers:
        blocks = quantized.get(layer.node)
        rows.append(
            {
                "node": layer.node,
                "op": layer.op,
                "shape": [layer.k, layer.n],
                "precision": levels.get(layer.node, "float"),
                "block_size": blocks.block if blocks is not None else None,
                "fp32_bytes": layer.fp32_bytes,
                "bytes": blocks.nbytes() if blocks is not None else layer.fp32_bytes,
            }
        )
    return rows


def summary(rows: list[dict[str, Any]], search: WeightSearch) -> dict[str, Any]:
    """Counts, bytes and the layers kept above the requested level with what each costs."""
    primary = search.spec.primary
    fp32 = sum(r["fp32_bytes"] for r in rows)
    stored = sum(r["bytes"] for r in rows)
    params = {
        lvl: sum(r["shape"][0] * r["shape"][1] for r in rows if r["precision"] == lvl) for lvl in LEVELS
    }
    total = sum(params.values()) or 1
    kept = []
    for r in rows:
        if r["precision"] != primary:
            cheapest = search.blocks(r["node"], primary).nbytes()
            kept.append(
                {
                    "node": r["node"],
                    "precision": r["precision"],
                    "bytes": r["bytes"],
                    "extra_bytes": r["bytes"] - cheapest,
                }
            )
    return {
        "counts": {lvl: sum(1 for r in rows if r["precision"] == lvl) for lvl in LEVELS},
        "weight_bytes": {"fp32": fp32, "stored": stored, "ratio": round(stored / fp32, 4) if fp32 else None},
        "int4_share": round(params["int4"] / total, 4),
        f"kept_above_{primary}": kept,
    }


def weight_only(
    job: ExportJob,
    spec: Spec,
    writer: Writer,
    progress: Callable[[str], None] = lambda _: None,
    score_artifact: Callable[[onnx.ModelProto, ScoringSet], dict[str, np.ndarray]] | None = None,
) -> Result:
    """Search levels and write the artifact's model with `writer`; the details the manifest records."""
    model = job.prepared.load()
    data = None
    calib_feeds: list[Mapping[str, np.ndarray]] = []
    if job.calib is not None:
        from edgekit.int8.search_inputs import job_data

        jd = job_data(job, job.options.threads)
        data, calib_feeds = jd.data, jd.calib_feeds
    gates = job.gates if job.gates is not None else job.target.fidelity
    search = WeightSearch(
        model,
        spec,
        data,
        gates,
        calib_feeds,
        budget_s=float(getattr(job.options, "search_budget_s", 600.0)),
        max_revert=float(getattr(job.options, "max_revert", 0.25)),
        progress=progress,
    )
    if not search.layers:
        from edgekit.errors import NotApplicable

        raise NotApplicable(
            f"--{spec.primary}{' --weights-only' if spec.primary == 'int8' else ''}: the model has no "
            "MatMul/Gemm with a constant weight to quantize; weight-only quantization cannot change it"
        )
    if getattr(job.options, "search", True):
        levels, record = search.run()
    else:
        levels, record = search.base_levels(), {"scored_on": None, "note": "search is off (--no-search)"}
    quantized = search.quantized(levels)
    artifact = writer(model, search.layers, quantized)
    if data is not None:
        from edgekit.int8.ort_qdq import run_session, session
        from edgekit.int8.scoring import score

        outputs = (
            score_artifact(artifact, data)
            if score_artifact is not None
            else run_session(session(artifact.SerializeToString()), data, list(data.reference))
        )
        final = score(outputs, data, gates)
        record["final"] = final.to_json()
        record["passed"] = final.passed
    record["trials"] = search.trials
    rows = layer_rows(search.layers, levels, quantized)
    details = {
        **spec.to_json(),
        **summary(rows, search),
        "layers": rows,
        "search": record,
        "notes": search.notes,
    }
    return Result(artifact, levels, details, search.notes)
