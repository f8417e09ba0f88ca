"""INT8 through NNCF: the preset / model type chosen from the graph, `--ignore` patterns resolved to IR
nodes, NNCF's log captured (it carries the accuracy-control report), accuracy-aware quantization."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import ExportJob, name_matches
from edgekit.backends.ov.options import OpenVinoOptions
from edgekit.errors import BadInput

log = logging.getLogger(__name__)

# activations whose outputs have a short negative tail: symmetric (PERFORMANCE) activation quantization
# would waste most of the negative half of the int8 range on them, so these models get MIXED
_SKEWED_ACTIVATIONS = {
    "Sigmoid", "HardSwish", "HardSigmoid", "Gelu", "Elu", "Selu", "Celu", "LeakyRelu", "PRelu",
    "Mish", "Softplus", "Erf", "Tanh",
}  # fmt: skip


def _onnx_nodes(path: Path) -> list[tuple[str, str, list[str]]]:
    """(node name, op type, output tensor names) of an ONNX file's main graph, weights not loaded."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return [(node.name, node.op_type, list(node.output)) for node in model.graph.node]


def _decomposition(op: Any) -> list[Any]:
    """The IR ops that one ONNX node became: the op producing its named output plus the unnamed
    intermediate ops feeding it (a Conv with bias becomes Convolution + Add, for example)."""
    found, stack, seen = [], [op], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        for port in current.inputs():
            source = port.get_source_output()
            node = source.get_node()
            if node.get_type_name() in ("Constant", "Parameter") or source.get_names():
                continue  # a weight, a model input, or another ONNX node's named tensor
            stack.append(node)
    return found


def resolve_ignored(
    patterns: list[str], onnx_nodes: list[tuple[str, str, list[str]]], ov_model: Any
) -> list[str]:
    """IR node names for `--ignore` patterns. A pattern (glob or regular expression) may name ONNX nodes, which are followed through their output tensors to the IR ops they became, or
    IR node names directly. A pattern that matches nothing is a BadInput."""
    producers: dict[str, Any] = {}
    ops = list(ov_model.get_ordered_ops())
    for op in ops:
        for output in op.outputs():
            for tensor in output.get_names():
                producers.setdefault(tensor, op)
    skip = {"Constant", "Parameter", "Result"}
    names: list[str] = []
    for pattern in patterns:
        matched = [op for op in ops if name_matches(op.get_friendly_name(), pattern)]
        onnx_hits = [n for n in onnx_nodes if n[0] and name_matches(n[0], pattern)]
        for _, _, outputs in onnx_hits:
            for tensor in outputs:
                if tensor in producers:
                    matched.extend(_decomposition(producers[tensor]))
        matched = [op for op in matched if op.get_type_name() not in skip]
        if not matched:
            if onnx_hits:
                raise BadInput(
                    f"--ignore '{pattern}' matches ONNX node(s) {', '.join(n[0] for n in onnx_hits[:4])} "
                    "that were fused away while preparing the model; ignore the node they were fused into"
                )
            examples = ", ".join(n[0] for n in onnx_nodes if n[0] and n[1] not in ("Constant",))
            raise BadInput(
                f"--ignore '{pattern}' matches no node of the model (glob or regular expression); "
                f"node names: {examples[:300]}"
            )
        for op in matched:
            if op.get_friendly_name() not in names:
                names.append(op.get_friendly_name())
    return names


def head_scopes(
    onnx_path: Path, calib_items: list[dict[str, Any]], ov_model: Any, threads: int | None = None
) -> dict[str, list[str]]:
    """IR node names for each `head` recipe value (edgekit.int8.head): a mixed-scale head's Concat
    ("split") or its whole decode ("float-tail"), followed from the ONNX nodes' output tensors to the IR
    ops they became. Empty when the model has no such head."""
    import onnx

    from edgekit.int8 import activation_stats
    from edgekit.int8 import head as head_mod

    model = onnx.load(str(onnx_path))
    if not any(node.op_type == "Concat" for node in model.graph.node):
        return {}
    ranges = activation_stats.collect(onnx_path, calib_items[:16], threads).ranges("minmax", False, 99.999)
    heads = head_mod.find_heads(model, ranges)
    if not heads:
        return {}
    producers: dict[str, Any] = {}
    for op in ov_model.get_ordered_ops():
        for output in op.outputs():
            for tensor in output.get_names():
                producers.setdefault(tensor, op)
    outputs = {node.name: list(node.output) for node in model.graph.node}
    scopes: dict[str, list[str]] = {}
    for value in head_mod.HEAD_VALUES[1:]:
        names: list[str] = []
        for node in head_mod.head_nodes(heads, value):
            for tensor in outputs.get(node, []):
                if tensor in producers:
                    for op in _decomposition(producers[tensor]):
                        if op.get_type_name() not in ("Constant", "Parameter", "Result"):
                            names.append(op.get_friendly_name())
        scopes[value] = list(dict.fromkeys(names))
    return scopes


def choose_quantization(
    op_types: set[str], options: OpenVinoOptions | Mapping[str, Any]
) -> tuple[str, str | None, str]:
    """(preset, model_type, why). Transformer-shaped graphs (MatMul + Softmax + layer norm) get NNCF's
    TRANSFORMER model type, which keeps attention internals sensible and implies MIXED; CNNs with
    skewed activations get MIXED (asymmetric activations); plain ReLU CNNs get PERFORMANCE (symmetric,
    NNCF's CPU default and the fastest). `--option preset=` / `model_type=` override."""
    if not isinstance(options, OpenVinoOptions):
        options = OpenVinoOptions.parse(options, "openvino")
    layer_norm = "LayerNormalization" in op_types or {"ReduceMean", "Sqrt"} <= op_types
    transformer = {"MatMul", "Softmax"} <= op_types and layer_norm
    model_type = "transformer" if transformer else None
    if transformer:
        preset, why = "mixed", "transformer-shaped graph (MatMul + Softmax + layer norm)"
    elif op_types & _SKEWED_ACTIVATIONS:
        found = ", ".join(sorted(op_types & _SKEWED_ACTIVATIONS))
        preset, why = "mixed", f"activations with negative tails ({found}) quantize better asymmetric"
    else:
        preset, why = "performance", "ReLU-style activations: symmetric int8 is exact enough and fastest"
    if options.model_type != "auto":
        model_type = "transformer" if options.model_type == "transformer" else None
        why += "; model_type set by --option"
    if options.preset != "auto":
        preset = options.preset
        why += "; preset set by --option"
    return preset, model_type, why


class _Capture(logging.Handler):
    """Keeps NNCF's log messages (they carry the accuracy-control report) and forwards them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        log.debug("nncf: %s", message)


@contextlib.contextmanager
def nncf_quietly() -> Iterator[_Capture]:
    """Run NNCF with its log captured and its stdout output (log handler, progress bars) sent to
    stderr, so `--json` output on stdout stays clean."""
    nncf_logger = logging.getLogger("nncf")
    saved = list(nncf_logger.handlers)
    capture = _Capture()
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(logging.WARNING)
    for handler in saved:
        nncf_logger.removeHandler(handler)
    nncf_logger.addHandler(capture)
    nncf_logger.addHandler(to_stderr)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield capture
    finally:
        nncf_logger.removeHandler(capture)
        nncf_logger.removeHandler(to_stderr)
        for handler in saved:
            nncf_logger.addHandler(handler)


def reverted_layers(messages: list[str]) -> list[str]:
    """Operations NNCF's accuracy control put back in float, from its final report message
    ("N out of M were reverted back to the floating-point precision:" followed by tab-indented names).
    Without that message (nothing needed reverting) the list is empty."""
    names: list[str] = []
    for message in messages:
        if "were reverted back to the floating-point precision" in message:
            names = [line.strip() for line in message.splitlines()[1:] if line.strip()]
    return names


def _fake_quantize_count(ov_model: Any) -> int:
    return sum(1 for op in ov_model.get_ordered_ops() if op.get_type_name() == "FakeQuantize")


def _top1_percent(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    logits = np.asarray(outputs)
    if logits.ndim == 1:
        logits = logits[None, :]
    pred = logits.reshape(-1, logits.shape[-1]).argmax(axis=-1)
    return (pred == np.asarray(labels).reshape(-1)).astype(np.float64) * 100.0


def quantize(
    ov_model: Any, job: ExportJob, options: OpenVinoOptions, device: str, warnings: list[str]
) -> tuple[Any, dict[str, Any]]:
    """NNCF post-training INT8 of `ov_model` from the job's calibration set (accuracy-controlled with
    a labelled validation set when asked); (quantized model, the manifest's quantization record)."""
    import nncf

    if job.calib is None:
        raise BadInput("int8 export needs a calibration set: pass --calib SET (.npz or image directory)")
    calib_items = list(job.calib.validate(job.prepared.inputs).feeds())
    prepared_nodes = _onnx_nodes(job.prepared.path)
    preset, model_type, why = choose_quantization({n[1] for n in prepared_nodes}, options)
    fast_bias = options.fast_bias_correction
    target_device = getattr(nncf.TargetDevice, device, nncf.TargetDevice.ANY)
    patterns = list(job.options.ignore)
    ignored: list[str] = []
    if patterns:
        # names as the user sees them: the prepared model's nodes, then the source file's
        nodes = prepared_nodes
        source = Path(job.prepared.source_path)
        if source.is_file():
            nodes = nodes + _onnx_nodes(source)
        ignored = resolve_ignored(patterns, nodes, ov_model)
    kwargs: dict[str, Any] = {
        "preset": getattr(nncf.QuantizationPreset, preset.upper()),
        "target_device": target_device,
        "subset_size": len(calib_items),
        "fast_bias_correction": fast_bias,
    }
    if model_type:
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if ignored:
        # validated above against the IR itself; NNCF's own check would reject the IR ops that
        # it does not model (e.g. the Add of a Conv bias), so it is switched off
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=ignored, validate=False)
    record: dict[str, Any] = {
        "tool": "nncf.quantize",
        "preset": preset,
        "model_type": model_type or "default",
        "why": why,
        "target_device": str(target_device.value),
        "subset_size": len(calib_items),
        "fast_bias_correction": fast_bias,
        "ignored_scope": {"patterns": patterns, "nodes": ignored},
    }
    calibration = nncf.Dataset(calib_items)

    accuracy = job.options.max_accuracy_drop is not None
    if accuracy and (job.val is None or job.val.labels is None):
        warnings.append(
            "--accuracy-control needs a labelled --val set for top-1 accuracy; the INT8 search aims NNCF at "
            "the gate's agreement with FP32 (cosine, SNR) instead"
        )
        accuracy = False
    try:
        with nncf_quietly() as capture:
            if accuracy:
                quantized = _accuracy_controlled(ov_model, job, calibration, kwargs, record)
            else:
                # edgekit's INT8 search (edgekit.int8): NNCF's knobs as recipes, then NNCF's accuracy
                # control with the target's gate as its metric (labels or agreement with FP32)
                from edgekit.int8.nncf_search import search_openvino

                quantized, search = search_openvino(
                    job,
                    ov_model,
                    kwargs,
                    transformer=bool(model_type),
                    head_scopes=head_scopes(job.prepared.path, calib_items, ov_model, job.options.threads),
                )
                record["tool"] = search.get("tool", "nncf.quantize")
                record["subset_size"] = search.get("calibration_samples", len(calib_items))
                if search.get("accuracy_control"):
                    search["reverted"] = [{"node": name} for name in reverted_layers(capture.messages)]
                record["int8_search"] = search
    except nncf.ValidationError as exc:
        text = str(exc).strip().splitlines()
        raise BadInput(f"NNCF rejected the quantization settings: {text[0] if text else exc}") from exc
    if accuracy:
        layers = reverted_layers(capture.messages)
        record["accuracy_control"]["reverted_layers"] = layers
        record["accuracy_control"]["log"] = [
            m.splitlines()[0]
            for m in capture.messages
            if "accuracy" in m.lower() or "reverted" in m.lower() or "metric" in m.lower()
        ][-12:]
    count = _fake_quantize_count(quantized)
    record["fake_quantize_nodes"] = count
    if count == 0:
        warnings.append("NNCF inserted no quantizers: the int8 IR runs entirely in float")
    return quantized, record


def _accuracy_controlled(
    ov_model: Any,
    job: ExportJob,
    calibration: Any,
    kwargs: dict[str, Any],
    record: dict[str, Any],
) -> Any:
    import nncf

    assert job.val is not None and job.val.labels is not None
    val = job.val.validate(job.prepared.inputs, "validation set")
    items = list(zip(val.feeds(), val.label_batches(), strict=True))
    validation = nncf.Dataset(items, lambda item: item[0])

    def top1(compiled: Any, data: Any) -> tuple[float, list[float]]:
        per_item: list[float] = []
        output = compiled.output(0)
        for feed, labels in data:
            per_item.append(float(_top1_percent(compiled(feed)[output], labels).mean()))
        return (float(np.mean(per_item)) if per_item else 0.0), per_item

    drop = float(job.options.max_accuracy_drop or 0.0)
    record["tool"] = "nncf.quantize_with_accuracy_control"
    record["accuracy_control"] = {
        "metric": "top-1 accuracy (%) on the first output",
        "max_drop_points": drop,
        "validation_samples": len(job.val),
    }
    return nncf.quantize_with_accuracy_control(
        ov_model,
        calibration,
        validation,
        top1,
        max_drop=drop,
        drop_type=nncf.DropType.ABSOLUTE,
        **kwargs,
    )
