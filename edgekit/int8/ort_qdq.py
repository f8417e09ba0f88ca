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
tensors and weights it read before quantization) instead of re-running the quantizer per node.
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
from edgekit.int8 import stats as stats_mod
from edgekit.int8.engine import Adapter, Candidate
from edgekit.int8.names import NodeOrigins, name_unnamed_nodes
from edgekit.int8.recipes import Dimension, Recipe, Space, ordered
from edgekit.int8.scoring import Feed, Outputs, ScoringSet, stack

log = logging.getLogger(__name__)

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
WEIGHTS = ("per-channel", "per-tensor", "per-channel-7bit", "per-tensor-7bit")
CALIBRATIONS = ("entropy", "minmax", "p99.999", "p99.99")
SCOPES = ("all", "compute")
OUTPUTS = ("int8", "float")
HOST = "host"  # onnxruntime with every optimization: the CPU target's own int8 kernels
REFERENCE = "reference"  # no Q/DQ fusion: exact Q/DQ semantics (what TensorRT computes)


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
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    if semantics == REFERENCE:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_session(sess: Any, data: ScoringSet, names: Sequence[str] | None = None) -> Outputs:
    names = list(names) if names else [o.name for o in sess.get_outputs()]
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in data.feeds:
        for name, value in zip(names, sess.run(names, feed), strict=True):
            chunks[name].append(np.asarray(value))
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
        self.stats = stats_mod.collect(self.pre, calib_feeds, threads)
        self._ranges: dict[tuple[str, bool], dict[str, tuple[float, float]]] = {}
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
        return int(recipe.get("scope") == "compute") + int(recipe.get("outputs") == "float")

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
            nodes_to_exclude=list(dict.fromkeys([*self.always_exclude, *exclude])),
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
                    _serialize(candidate.handle["proto"], self.work), self.semantics, self.threads
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
        skip = set(self.always_exclude)
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
        seen = _seen_as(model)
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
                    _serialize(_with_outputs(model, list(pairs.values())), self.work),
                    self.semantics,
                    self.threads,
                ),
                session(
                    _serialize(_with_outputs(self.pre_model, list(pairs)), self.work), HOST, self.threads
                ),
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


def _seen_as(model: onnx.ModelProto) -> dict[str, str]:
    """For every float tensor of a Q/DQ model: the tensor its quantized readers get (the output of
    DQ(Q(tensor))), or the tensor itself when it is not quantized."""
    out: dict[str, str] = {i.name: i.name for i in model.graph.input}
    quantizers = {
        node.input[0]: node.output[0] for node in model.graph.node if node.op_type == "QuantizeLinear"
    }
    dequantizers = {
        node.input[0]: node.output[0] for node in model.graph.node if node.op_type == "DequantizeLinear"
    }
    for node in model.graph.node:
        if node.op_type in QDQ_OPS:
            continue
        for tensor in node.output:
            out[tensor] = tensor
    for tensor in list(out):
        q = quantizers.get(tensor)
        if q is not None and q in dequantizers:
            out[tensor] = dequantizers[q]
    return out


def _serialize(model: onnx.ModelProto, work: Path) -> bytes | Path:
    if model.ByteSize() < quant.EXTERNAL_THRESHOLD:
        return model.SerializeToString()
    path = Path(tempfile.mkdtemp(dir=work)) / "preview.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="preview.onnx.data")
    return path


def _with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {o.name for o in copy.graph.output}
    for name in names:
        if name not in present:
            copy.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return copy


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


# ops that only move or select values: reverting one alone says nothing about a layer, and a layer
# kept in float reads float copies of them (cloned) so that its inputs are really float
DATA_MOVEMENT = {
    "Relu", "Clip", "MaxPool", "GlobalMaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze",
    "Identity", "Split", "Slice", "Gather", "Pad", "DepthToSpace", "SpaceToDepth", "Expand", "Tile",
}  # fmt: skip


def revert_nodes(qdq: onnx.ModelProto, original: onnx.ModelProto, names: set[str]) -> onnx.ModelProto:
    """A copy of a Q/DQ model in which the named nodes run in float on float inputs.

    Weights come back as the original float initializers. An activation input read through
    DQ(Q(x)) is read as x instead; when x itself was written by a data-movement op (Relu, MaxPool,
    Reshape...) from quantized values, a float copy of that op (and of its own producers, back to a
    float tensor) is added, so the node sees exactly what it saw before quantization. Outputs keep
    their Q/DQ where quantized nodes read them. Q/DQ nodes left without readers are dropped.
    onnxruntime's `nodes_to_exclude` does less: an excluded node still reads quantized activations
    whenever a neighbour is quantized, which recovers nothing when the error is in those activations.
    """
    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    graph = model.graph
    writers = {out: node for node in graph.node for out in node.output}
    initializers = {init.name for init in graph.initializer}
    before = {node.name: node for node in original.graph.node}
    float_inits = {init.name: init for init in original.graph.initializer}
    added: dict[str, str] = {}  # original initializer / tensor -> its float name in the copy
    clones: list[onnx.NodeProto] = []

    def float_weight(original_name: str) -> str | None:
        if original_name not in float_inits:
            return None
        if original_name not in added:
            # onnxruntime may name a DQ output after the float weight it replaced (biases)
            name = original_name if original_name not in writers else f"{original_name}__float"
            init = onnx.TensorProto()
            init.CopyFrom(float_inits[original_name])
            init.name = name
            graph.initializer.append(init)
            added[original_name] = name
        return added[original_name]

    def float_tensor(tensor: str, depth: int = 0) -> str:
        """The float value behind `tensor`, as it was before quantization."""
        writer = writers.get(tensor)
        if writer is None or depth > 64:
            return tensor
        if writer.op_type == "DequantizeLinear":
            source = writer.input[0]
            quantizer = writers.get(source)
            if quantizer is not None and quantizer.op_type == "QuantizeLinear":
                return float_tensor(quantizer.input[0], depth + 1)
            return tensor  # a quantized initializer: handled by the caller
        if writer.op_type in DATA_MOVEMENT and any(_dq_fed(writers, i) for i in writer.input):
            key = f"{tensor}__float"
            if key not in added:
                clone = onnx.NodeProto()
                clone.CopyFrom(writer)
                clone.name = f"{writer.name}__float"
                clone.input[:] = [
                    float_tensor(i, depth + 1) if _dq_fed(writers, i) else i for i in writer.input
                ]
                clone.output[:] = [f"{o}__float" if o else o for o in writer.output]
                clones.append(clone)
                added[key] = key
            return key
        return tensor

    for node in graph.node:
        if node.name not in names or node.op_type in QDQ_OPS:
            continue
        old = before.get(node.name)
        for index, tensor in enumerate(node.input):
            writer = writers.get(tensor)
            if writer is None or writer.op_type != "DequantizeLinear":
                continue
            source = writer.input[0]
            if source in initializers and old is not None and index < len(old.input):
                weight = float_weight(old.input[index])
                if weight is not None:
                    node.input[index] = weight
                continue
            node.input[index] = float_tensor(tensor)
    reverted_outputs = {out for node in graph.node if node.name in names for out in node.output}
    float_outputs(model, only=reverted_outputs)
    if clones:
        graph.node.extend(clones)
        from edgekit.ingest import toposort

        toposort(graph)
    _prune(graph)
    return model


def float_outputs(model: onnx.ModelProto, only: set[str] | None = None) -> int:
    """Let graph outputs come straight from the op that computes them: drop the Q/DQ pair between a
    float tensor and a graph output (for tensors in `only`, when given). Returns how many."""
    graph = model.graph
    writers = {out: node for node in graph.node for out in node.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    done = 0
    for output in graph.output:
        dq = writers.get(output.name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = writers.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or readers.get(q.output[0], 0) != 1:
            continue
        source = q.input[0]
        producer = writers.get(source)
        if producer is None or producer.op_type in QDQ_OPS or (only is not None and source not in only):
            continue
        # the producer writes the graph output's name; readers of either name read that float tensor
        for node in graph.node:
            node.input[:] = [output.name if n == source else n for n in node.input]
        producer.output[:] = [output.name if n == source else n for n in producer.output]
        graph.node.remove(q)
        graph.node.remove(dq)
        writers = {out: node for node in graph.node for out in node.output}
        done += 1
    return done


def _dq_fed(writers: Mapping[str, onnx.NodeProto], tensor: str) -> bool:
    """Whether `tensor` carries quantized values: a DQ output, or a data-movement op's output of one."""
    writer = writers.get(tensor)
    for _ in range(64):
        if writer is None:
            return False
        if writer.op_type == "DequantizeLinear":
            return True
        if writer.op_type not in DATA_MOVEMENT or not writer.input:
            return False
        writer = writers.get(writer.input[0])
    return False


def _prune(graph: onnx.GraphProto) -> None:
    while True:
        read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type in QDQ_OPS and not any(o in read for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    read = {name for node in graph.node for name in node.input}
    keep = [init for init in graph.initializer if init.name in read]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)
