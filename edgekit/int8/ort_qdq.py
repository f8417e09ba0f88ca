"""The INT8 search on Q/DQ ONNX models built by onnxruntime's quantizer (the ONNX Runtime targets,
and TensorRT's explicit quantization, which reuses it with symmetric activations).

Measured on the demo CNN (x86 AVX2 host without VNNI, onnxruntime 1.32): the quantized model itself
is good with every recipe (cosine 0.999 when run with reference Q/DQ semantics), but onnxruntime's
fused x86 kernels multiply u8 activations by s8 weights with `vpmaddubsw`, whose int16 pair sums
saturate; per-channel weights use the whole int8 range in every channel, so they saturate more
than per-tensor (cosine 0.956 vs 0.992), and s8 activations shifted to u8 more still (0.856). 7-bit
weights (`reduce_range`) remove the saturation (0.9997). So the weight dimension searches granularity
and 7-bit weights together, and candidates are scored with the same kernels `verify` runs.

Fallback previews revert nodes by graph surgery on the built Q/DQ model (a node reads the float
tensors and weights it read before quantization) instead of re-running the quantizer per node:
edgekit.int8.qdq_surgery.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgekit import quant
from edgekit.errors import BadInput
from edgekit.int8 import activation_stats
from edgekit.int8.adapter import Adapter, Candidate
from edgekit.int8.head import find_heads, head_dimension, head_nodes
from edgekit.int8.names import NodeOrigins, name_unnamed_nodes
from edgekit.int8.qdq_surgery import (
    DATA_MOVEMENT,
    QDQ_OPS,
    float_outputs,
    revert_nodes,
    seen_as,
    serialize,
    with_outputs,
)
from edgekit.int8.recipes import Dimension, Recipe, Space, ordered
from edgekit.int8.scoring import Feed, Outputs, ScoringSet, stack
from edgekit.onnx_run import cpu_session, run_chunks

log = logging.getLogger(__name__)

WEIGHTS = ("per-channel", "per-tensor", "per-channel-7bit", "per-tensor-7bit")
CALIBRATIONS = ("entropy", "minmax", "p99.999", "p99.99")
SCOPES = ("all", "compute")
OUTPUTS = ("int8", "float")
HOST = "host"  # onnxruntime with every optimization: the CPU target's own int8 kernels
REFERENCE = "reference"  # no Q/DQ fusion: exact Q/DQ semantics (what TensorRT computes)
# what the manifest says produced the numbers (search scores and host verify)
NUMERICS = {
    HOST: "this host's int8 kernels (Q/DQ fused)",
    REFERENCE: "reference Q/DQ numerics (Q/DQ fusion off: session.disable_quant_qdq=1)",
}


def numerics_for(target: Any) -> str:
    """HOST when this host's CPU is the target's (its own int8 kernels are the target's), else REFERENCE:
    an arm64 target's int8 arithmetic is not x86's (u8 x s8 saturation, other rounding), so its
    candidates are scored, and its artifact verified here, on the quantized graph's own arithmetic."""
    return HOST if target.is_host_arch() else REFERENCE


# builds a Q/DQ model: (model, out, ranges, *, activation_type, weight_type, per_channel,
# reduce_range, symmetric_activations, op_types, nodes_to_exclude, keep_activations) -> out
QdqBuilder = Callable[..., Path]


def calibration_value(method: str) -> str:
    """--calib-method name -> the calibration dimension's value."""
    return {"percentile": "p99.999"}.get(method, method)


def _method(value: str) -> tuple[str, float]:
    if value.startswith("p"):
        return "percentile", float(value[1:])
    return value, 99.999


def session(model: str | Path | bytes, semantics: str = HOST, threads: int | None = None) -> Any:
    """An onnxruntime CPU session as the host runner opens one (REFERENCE: no Q/DQ fusion)."""
    return cpu_session(model, "basic" if semantics == REFERENCE else "all", threads)


def run_session(sess: Any, data: ScoringSet, names: Sequence[str] | None = None) -> Outputs:
    chunks = run_chunks(sess, data.feeds, names)
    return {n: stack(c, data.batched) for n, c in chunks.items()}


class OrtQdqAdapter(Adapter):
    """Q/DQ recipes for onnxruntime's quantizer. `settings` is the target's [quantization] table."""

    name = "onnxruntime-qdq"
    exact_preview = True  # the artifact is the reverted graph itself (revert_nodes)

    def __init__(
        self,
        model_path: Path,
        calib_feeds: Sequence[Feed],
        settings: Mapping[str, Any],
        *,
        calib_method: str = "entropy",
        always_exclude: Sequence[str] = (),
        symmetric_only: bool = False,
        semantics: str = HOST,
        threads: int | None = None,
        source_path: Path | None = None,
        name_map: Mapping[str, str] | None = None,
        work_dir: Path | None = None,
        builder: QdqBuilder | None = None,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="edgekit-int8-") if work_dir is None else None
        self.work: Path = Path(self._tmp.name) if self._tmp is not None else Path(work_dir or ".")
        self.settings = dict(settings)
        self.calib_method = calibration_value(calib_method)
        self.symmetric_only = symmetric_only
        self.semantics = semantics
        self.threads = threads
        self.builder: QdqBuilder = builder or quant.quantize_with_ranges
        self.pre = self.work / "pre.onnx"
        self.notes = [quant.preprocess(Path(model_path), self.pre)]
        model = onnx.load(str(self.pre))
        if name_unnamed_nodes(model):
            onnx.save(model, str(self.pre))
        self.pre_model = model
        self.origins = NodeOrigins(model, source_path, name_map or {})
        self.always_exclude = [n for n in always_exclude if n in self.origins.nodes]
        self.stats = activation_stats.collect(self.pre, calib_feeds, threads)
        self._ranges: dict[tuple[str, bool], dict[str, tuple[float, float]]] = {}
        # mixed-scale heads (boxes + scores on one Concat): the `head` dimension's nodes
        self.heads = find_heads(model, self.ranges("minmax", False))
        self._count = 0
        self._reference_session: Any = None

    # ---- space ---------------------------------------------------------------------------------
    def space(self) -> Space:
        activation_type = str(self.settings.get("activation_type", "uint8"))
        per_channel = bool(self.settings.get("per_channel", True))
        symmetric = bool(self.settings.get("symmetric_activations", False)) or self.symmetric_only
        weights = ordered("per-channel" if per_channel else "per-tensor", WEIGHTS)
        if activation_type.startswith("u") or self.symmetric_only:
            activations: tuple[Any, ...] = ("symmetric" if symmetric else "asymmetric",)
        else:
            activations = ordered("symmetric" if symmetric else "asymmetric", ("symmetric", "asymmetric"))
        dims = [
            Dimension(
                "weights",
                weights,
                "per-channel vs per-tensor scales, and 7-bit weights for x86 kernels whose u8 x s8 "
                "products saturate without VNNI",
            ),
            Dimension("calibration", ordered(self.calib_method, CALIBRATIONS), "activation range estimator"),
            Dimension("activations", activations, "symmetric vs asymmetric activation ranges"),
            Dimension(
                "outputs",
                OUTPUTS,
                "graph outputs through Q/DQ (as onnxruntime quantizes them) or straight from the last "
                "op in float: a few-value output loses most to its own 8-bit grid",
            ),
            Dimension("scope", SCOPES, "all supported ops in INT8, or only Conv/MatMul/Gemm"),
        ]
        if self.heads:  # searched first: on a detector nothing else matters until the scores survive
            dims.insert(0, head_dimension())
        allowed = self.settings.get("search") or {}
        for key in allowed:
            if key not in {d.name for d in dims}:
                names = ", ".join(d.name for d in dims)
                raise BadInput(f"[quantization.search] has unknown dimension '{key}' (known: {names})")
        dims = [
            Dimension(d.name, tuple(v for v in d.values if v in allowed[d.name]) or d.values[:1], d.why)
            if d.name in allowed
            else d
            for d in dims
        ]
        return Space(tuple(d for d in dims if d.values))

    def float_share(self, recipe: Recipe) -> int:
        # not the head recipe: its few float ops are what a mixed-scale output needs, not a choice to give
        # back, so a passing head recipe may settle the search (split, the cheaper, is tried first)
        return int(recipe.get("scope") == "compute") + int(recipe.get("outputs") == "float")

    def head_nodes(self, recipe: Recipe) -> list[str]:
        """The nodes the recipe's `head` value keeps in float (none without a mixed-scale head)."""
        return head_nodes(self.heads, recipe.get("head"))

    # ---- building ------------------------------------------------------------------------------
    def ranges(self, calibration: str, symmetric: bool) -> dict[str, tuple[float, float]]:
        key = (calibration, symmetric)
        if key not in self._ranges:
            method, pct = _method(calibration)
            self._ranges[key] = self.stats.ranges(method, symmetric, pct)
        return self._ranges[key]

    def build(self, recipe: Recipe, exclude: Sequence[str] = (), keep_activations: bool = True) -> Candidate:
        weights = str(recipe.get("weights", "per-channel"))
        symmetric = recipe.get("activations") == "symmetric"
        self._count += 1
        out = self.work / f"candidate-{self._count}.onnx"
        self.builder(
            self.pre,
            out,
            self.ranges(str(recipe.get("calibration", "minmax")), symmetric),
            activation_type=str(self.settings.get("activation_type", "uint8")),
            weight_type=str(self.settings.get("weight_type", "int8")),
            per_channel=weights.startswith("per-channel"),
            reduce_range=weights.endswith("7bit"),
            symmetric_activations=symmetric,
            op_types=quant.COMPUTE_OPS if recipe.get("scope") == "compute" else None,
            nodes_to_exclude=list(dict.fromkeys([*self.always_exclude, *self.head_nodes(recipe), *exclude])),
            keep_activations=keep_activations,
        )
        if recipe.get("outputs") == "float":
            model = onnx.load(str(out))
            if float_outputs(model):
                onnx.save(model, str(out))
        return Candidate(recipe, exclude, {"path": out})

    def preview(self, base: Candidate, exclude: Sequence[str]) -> Candidate:
        model = revert_nodes(self._model(base), self.pre_model, set(exclude))
        return Candidate(base.recipe, exclude, {"proto": model}, preview=True)

    def release(self, candidate: Candidate) -> None:
        candidate.handle.pop("session", None)
        candidate.handle.pop("proto", None)
        path = candidate.handle.get("path")
        if path is not None and Path(path).exists() and not candidate.handle.get("kept"):
            for file in Path(path).parent.glob(Path(path).name + "*"):
                file.unlink(missing_ok=True)

    def park(self, candidate: Candidate) -> None:
        candidate.handle.pop("session", None)

    def close(self) -> None:
        self._reference_session = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def path(self, candidate: Candidate) -> Path:
        """The candidate's file (a reverted graph is written on first use)."""
        if "path" not in candidate.handle:
            self._count += 1
            out = self.work / f"candidate-{self._count}.onnx"
            model = candidate.handle["proto"]
            large = model.ByteSize() > quant.EXTERNAL_THRESHOLD
            onnx.save_model(model, str(out), save_as_external_data=large, location=out.name + ".data")
            candidate.handle["path"] = out
        return Path(candidate.handle["path"])

    # ---- running -------------------------------------------------------------------------------
    def _model(self, candidate: Candidate) -> onnx.ModelProto:
        if "proto" not in candidate.handle:
            candidate.handle["proto"] = onnx.load(str(candidate.handle["path"]))
        return candidate.handle["proto"]

    def _session(self, candidate: Candidate) -> Any:
        if "session" not in candidate.handle:
            if "path" in candidate.handle:
                candidate.handle["session"] = session(candidate.handle["path"], self.semantics, self.threads)
            else:
                candidate.handle["session"] = session(
                    serialize(candidate.handle["proto"], self.work), self.semantics, self.threads
                )
        return candidate.handle["session"]

    def run(self, candidate: Candidate, data: ScoringSet) -> Outputs:
        return run_session(self._session(candidate), data, list(data.reference))

    def reference(self, data_feeds: Sequence[Feed], batched: bool) -> Outputs:
        """FP32 outputs of the model being quantized (with every optimization, as verify's reference)."""
        if self._reference_session is None:
            self._reference_session = session(self.pre, HOST, self.threads)
        fake = ScoringSet(list(data_feeds), None, {}, batched, "")
        return run_session(self._reference_session, fake)

    def quantized_nodes(self, candidate: Candidate) -> list[str]:
        """Nodes that read quantized inputs, except pure data movement (Relu, MaxPool, Reshape...):
        reverting a layer carries those along (see `revert_nodes`)."""
        model = self._model(candidate)
        writers = {out: node.op_type for node in model.graph.node for out in node.output}
        skip = set(self.always_exclude) | set(self.head_nodes(candidate.recipe))
        return [
            node.name
            for node in model.graph.node
            if node.op_type not in QDQ_OPS
            and node.op_type not in DATA_MOVEMENT
            and node.name not in skip
            and any(writers.get(name) == "DequantizeLinear" for name in node.input)
        ]

    def describe(self, node: str) -> dict[str, Any]:
        return self.origins.describe(node)

    def node_errors(self, candidate: Candidate, data: ScoringSet) -> dict[str, float]:
        """Relative error of each quantized node's output as its readers see it (after its Q/DQ) minus
        the worst of its inputs': the error that node adds (one run of each model, with the
        intermediate tensors exposed as outputs)."""
        model = self._model(candidate)
        nodes = self.quantized_nodes(candidate)
        before = {node.name: node for node in self.pre_model.graph.node}
        seen = seen_as(model)
        pairs: dict[str, str] = {}  # tensor before quantization -> the tensor readers see now
        for name in nodes:
            old = before.get(name)
            if old is None:
                continue
            for tensor in [*old.input, *old.output]:
                if tensor in seen:
                    pairs[tensor] = seen[tensor]
        if not pairs:
            return {}
        try:
            errors = _relative_errors(
                session(
                    serialize(with_outputs(model, list(pairs.values())), self.work),
                    self.semantics,
                    self.threads,
                ),
                session(serialize(with_outputs(self.pre_model, list(pairs)), self.work), HOST, self.threads),
                data,
                pairs,
            )
        except Exception as exc:  # noqa: BLE001 - the order of measurement is only a hint
            log.debug("per-node errors unavailable: %s", exc)
            return {}
        out: dict[str, float] = {}
        for name in nodes:
            old = before.get(name)
            if old is None:
                continue
            produced = max((errors.get(t, 0.0) for t in old.output), default=0.0)
            inherited = max((errors.get(t, 0.0) for t in old.input), default=0.0)
            out[name] = max(produced - inherited, 0.0)
        return out


def _relative_errors(
    quantized: Any, reference: Any, data: ScoringSet, pairs: Mapping[str, str]
) -> dict[str, float]:
    """{tensor: noise energy / signal energy} over the samples, `pairs` = {reference name: quantized name}."""
    before, after = list(pairs), [pairs[n] for n in pairs]
    noise = dict.fromkeys(before, 0.0)
    energy = dict.fromkeys(before, 0.0)
    for feed in data.feeds:
        for name, q, r in zip(before, quantized.run(after, feed), reference.run(before, feed), strict=True):
            r64 = np.asarray(r, dtype=np.float64)
            noise[name] += float(np.sum((np.asarray(q, dtype=np.float64) - r64) ** 2))
            energy[name] += float(np.sum(r64**2))
    return {n: (noise[n] / energy[n] if energy[n] > 0 else 0.0) for n in before}
