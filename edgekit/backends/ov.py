"""OpenVINO backend: IR (.xml + .bin) at FP32 / FP16, and INT8 through NNCF post-training quantization.

Export converts the prepared ONNX with `openvino.convert_model`. FP16 is FP16 *weight compression* at
save time (the IR's inputs and outputs stay float32); INT8 quantizes the uncompressed model with NNCF
(FakeQuantize nodes) from the shared calibration set, optionally under accuracy control.

Why the f32 hint matters: on CPUs with AVX-512 BF16 or AMX, OpenVINO's CPU plugin runs models in bf16
unless told otherwise, so an "FP32" artifact would be verified at bf16 and its fidelity numbers would
describe the wrong thing. FP32 artifacts are therefore compiled with INFERENCE_PRECISION_HINT=f32, and
every export records the precision the runtime actually chose (read back from the compiled model).

`compile_ir` is deliberately free of edgekit imports so that the device agent can carry a copy of it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import Backend, ExportJob, ExportResult, HostRunner, TensorSpec, name_matches
from edgekit.errors import BadInput, InternalError

log = logging.getLogger(__name__)

ENTRY = "model.xml"
WEIGHTS = "model.bin"
HOST_DEVICE = "CPU"  # verify and the local benchmark run on this machine's CPU, whatever the target
# runtime layer types that are bookkeeping, not compute: left out of the execution-precision summary
_NON_COMPUTE = {"Input", "Output", "Parameter", "Result", "Const", "Constant", "Reorder"}
# activations whose outputs have a short negative tail: symmetric (PERFORMANCE) activation quantization
# would waste most of the negative half of the int8 range on them, so these models get MIXED
_SKEWED_ACTIVATIONS = {
    "Sigmoid", "HardSwish", "HardSigmoid", "Gelu", "Elu", "Selu", "Celu", "LeakyRelu", "PRelu",
    "Mish", "Softplus", "Erf", "Tanh",
}  # fmt: skip
_PRESETS = ("performance", "mixed")


# ---- loading, reusable by the device agent (only numpy-free openvino calls) ----------------------
def compile_ir(
    xml_path: str | Path,
    device: str = "CPU",
    precision: str = "fp32",
    threads: int | None = None,
    inference_precision: str | None = None,
) -> Any:
    """Compile an IR for `device`; returns an `openvino.CompiledModel`.

    FP32 artifacts get the f32 inference-precision hint (otherwise CPUs with BF16/AMX and GPUs run them
    at reduced precision); FP16 and INT8 artifacts run at the device's default unless
    `inference_precision` (e.g. "f32", "f16", "bf16") overrides it. `threads` sets
    INFERENCE_NUM_THREADS (CPU only).
    """
    import openvino as ov

    config: dict[str, Any] = {}
    hint = inference_precision or ("f32" if precision == "fp32" else None)
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    if threads and device.upper().startswith("CPU"):
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return ov.Core().compile_model(str(xml_path), device, config)


def execution_summary(compiled: Any) -> dict[str, Any]:
    """The precision a compiled model really runs at: the plugin's hint, read back, and the count of
    compute layers per runtime precision (e.g. {"i8": 20, "f32": 3})."""
    out: dict[str, Any] = {}
    try:
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        out["inference_precision"] = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    except Exception as exc:  # noqa: BLE001 - some plugins do not expose the property
        log.debug("INFERENCE_PRECISION_HINT not readable: %s", exc)
    try:
        out["threads"] = int(compiled.get_property("INFERENCE_NUM_THREADS"))
    except Exception:  # noqa: BLE001
        pass
    try:
        counts: Counter[str] = Counter()
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if "layerType" in info and info["layerType"].astype(str) in _NON_COMPUTE:
                continue
            if "runtimePrecision" in info:
                counts[info["runtimePrecision"].astype(str)] += 1
        out["layer_precisions"] = dict(sorted(counts.items()))
    except Exception as exc:  # noqa: BLE001 - informational
        log.debug("runtime model not readable: %s", exc)
    return out


# ---- helpers --------------------------------------------------------------------------------------
def _shape(dims: tuple[int | str | None, ...]) -> list[int | str]:
    return [d if isinstance(d, int) else (d or "?") for d in dims]


def _layout(dims: tuple[int | str | None, ...], dtype: np.dtype) -> str:
    return "NCHW" if len(dims) == 4 and np.issubdtype(dtype, np.floating) else ""


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


def choose_quantization(op_types: set[str], extra: Mapping[str, Any]) -> tuple[str, str | None, str]:
    """(preset, model_type, why). Transformer-shaped graphs (MatMul + Softmax + layer norm) get NNCF's
    TRANSFORMER model type, which keeps attention internals sensible and implies MIXED; CNNs with
    skewed activations get MIXED (asymmetric activations); plain ReLU CNNs get PERFORMANCE (symmetric,
    NNCF's CPU default and the fastest). `--option preset=` / `model_type=` override."""
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
    if "model_type" in extra:
        value = str(extra["model_type"]).lower()
        if value not in ("transformer", "none", ""):
            raise BadInput(f"--option model_type={value}: valid values are transformer, none")
        model_type = "transformer" if value == "transformer" else None
        why += "; model_type set by --option"
    if "preset" in extra:
        value = str(extra["preset"]).lower()
        if value not in _PRESETS:
            raise BadInput(f"--option preset={value}: valid values are {', '.join(_PRESETS)}")
        preset = value
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
def _nncf_quietly() -> Iterator[_Capture]:
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


# ---- the backend ----------------------------------------------------------------------------------
class OpenVinoBackend(Backend):
    name = "openvino"
    extra = "openvino"
    modules = ("openvino", "nncf")
    # OpenVINO compiles dynamic shapes and NNCF calibrates them (one sample per call), so dynamic dims
    # are kept; `--input-shape` fixes them when the user wants a static IR (faster to benchmark).
    needs_static_shapes = False
    name_pattern = None  # IR tensor and node names may hold any character ('@', ':', '/', ...)
    # the ONNX frontend reads old opsets itself and no Q/DQ is written into the ONNX: nothing to raise
    min_opset = 7

    # ---- export -----------------------------------------------------------------------------------
    def export(self, job: ExportJob) -> ExportResult:
        self.require()
        import openvino as ov

        precision = job.precision
        if precision not in ("fp32", "fp16", "int8"):
            raise BadInput(f"the openvino backend exports fp32, fp16 or int8, not '{precision}'")
        if job.target.precisions and precision not in job.target.precisions:
            raise BadInput(
                f"target '{job.target.name}' supports {', '.join(job.target.precisions)}, not {precision}"
            )
        warnings: list[str] = []
        try:
            ov_model = ov.convert_model(str(job.prepared.path))
        except Exception as exc:  # noqa: BLE001 - the frontend raises its own types
            first = str(exc).strip().splitlines()
            raise BadInput(
                f"OpenVINO could not convert the model: {first[0] if first else type(exc).__name__}"
            ) from exc

        device = (job.target.device or "CPU").upper()
        threads = job.options.threads or job.target.threads
        details: dict[str, Any] = {
            "device": device,
            "files": [ENTRY, WEIGHTS],
            "weights": {"fp32": "float32", "fp16": "float16 (compressed)", "int8": "int8 FakeQuantize"}[
                precision
            ],
        }
        dynamic = {
            info.name: _shape(info.shape)
            for info in job.prepared.inputs
            if any(not isinstance(d, int) for d in info.shape)
        }
        if dynamic:
            details["dynamic_inputs"] = dynamic
            warnings.append(
                "the IR keeps dynamic dims ("
                + "; ".join(f"{k}: {v}" for k, v in dynamic.items())
                + "); fix them with --input-shape for a static IR, which benchmarks faster"
            )

        if precision == "int8":
            ov_model, quant = self._quantize(ov_model, job, device, warnings)
            details["quantization"] = quant

        job.out_dir.mkdir(parents=True, exist_ok=True)
        xml_path = job.out_dir / ENTRY
        ov.save_model(ov_model, str(xml_path), compress_to_fp16=precision == "fp16")

        inference_precision = job.options.extra.get("inference_precision")
        if inference_precision:
            details["inference_precision_override"] = str(inference_precision)
        if threads:
            details["threads"] = int(threads)
        # compile once on the host so the manifest says what precision the runtime really chose
        try:
            compiled = compile_ir(xml_path, HOST_DEVICE, precision, threads, inference_precision)
        except Exception as exc:  # noqa: BLE001
            raise InternalError(f"OpenVINO could not compile the exported IR on the host CPU: {exc}") from exc
        execution = execution_summary(compiled)
        execution["device"] = HOST_DEVICE
        execution["note"] = (
            f"measured on this host's CPU at export; the target device is {device}"
            if device != HOST_DEVICE
            else "measured on this host's CPU at export"
        )
        details["execution"] = execution
        if precision == "fp32" and execution.get("inference_precision") not in (None, "f32"):
            warnings.append(f"fp32 IR runs at {execution['inference_precision']} despite the f32 hint")
        del compiled

        return ExportResult(
            entry=ENTRY,
            inputs=self._specs(job, ov_model, inputs=True),
            outputs=self._specs(job, ov_model, inputs=False),
            toolchain=self.versions(),
            details=details,
            warnings=warnings,
        )

    def _specs(self, job: ExportJob, ov_model: Any, inputs: bool) -> list[TensorSpec]:
        infos = job.prepared.inputs if inputs else job.prepared.outputs
        ports = ov_model.inputs if inputs else ov_model.outputs
        port_names: set[str] = set()
        for port in ports:
            port_names |= set(port.get_names())
        specs = []
        for info in infos:
            if info.name not in port_names:
                kind = "input" if inputs else "output"
                raise InternalError(f"the IR has no {kind} tensor named '{info.name}' after conversion")
            specs.append(
                TensorSpec(
                    name=info.name,
                    source_name=job.prepared.name_map.get(info.name, info.name),
                    shape=_shape(info.shape),
                    dtype=info.dtype.name,
                    layout=_layout(info.shape, info.dtype),
                )
            )
        return specs

    # ---- int8 -------------------------------------------------------------------------------------
    def _quantize(
        self, ov_model: Any, job: ExportJob, device: str, warnings: list[str]
    ) -> tuple[Any, dict[str, Any]]:
        import nncf

        if job.calib is None:
            raise BadInput("int8 export needs a calibration set: pass --calib SET (.npz or image directory)")
        calib_items = list(job.calib.validate(job.prepared.inputs).feeds())
        extra = job.options.extra
        prepared_nodes = _onnx_nodes(job.prepared.path)
        preset, model_type, why = choose_quantization({n[1] for n in prepared_nodes}, extra)
        fast_bias = str(extra.get("fast_bias_correction", "true")).lower() not in ("false", "0", "no")
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
                "--max-accuracy-drop needs a labelled --val set; quantized without accuracy control"
            )
            accuracy = False
        try:
            with _nncf_quietly() as capture:
                if accuracy:
                    quantized = self._accuracy_controlled(ov_model, job, calibration, kwargs, record)
                else:
                    quantized = nncf.quantize(ov_model, calibration, **kwargs)
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
        self,
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

    # ---- host runner ------------------------------------------------------------------------------
    def open_runner(
        self, artifact_dir: Path, manifest: Mapping[str, Any], threads: int | None = None
    ) -> HostRunner:
        self.require()
        details = manifest.get("details") or {}
        xml_path = Path(artifact_dir) / manifest.get("entry", ENTRY)
        if not xml_path.exists():
            raise BadInput(f"{artifact_dir}: the OpenVINO IR {xml_path.name} is missing")
        inputs = [TensorSpec.from_json(s) for s in manifest["inputs"]]
        outputs = [TensorSpec.from_json(s) for s in manifest["outputs"]]
        precision = str(manifest.get("precision", "fp32"))
        threads = threads or manifest.get("threads") or details.get("threads")
        compiled = compile_ir(
            xml_path, HOST_DEVICE, precision, threads, details.get("inference_precision_override")
        )
        return OpenVinoRunner(compiled, inputs, outputs)


class OpenVinoRunner(HostRunner):
    """Runs an IR on this machine's CPU (the target's GPU/NPU is not assumed to be here)."""

    def __init__(self, compiled: Any, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
        super().__init__(inputs, outputs)
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.execution = execution_summary(compiled)
        self.execution["device"] = HOST_DEVICE
        self.device = HOST_DEVICE

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        data = {
            spec.name: np.ascontiguousarray(feed[spec.source_name], dtype=np.dtype(spec.dtype))
            for spec in self.inputs
        }
        result = self.request.infer(data)
        out: dict[str, np.ndarray] = {}
        for spec in self.outputs:
            value = np.array(result[spec.name])  # a copy: the request reuses its output buffers
            if np.issubdtype(value.dtype, np.floating) and value.dtype != np.float32:
                value = value.astype(np.float32)
            out[spec.source_name] = value
        return out

    def close(self) -> None:
        self.request = None
        self.compiled = None
