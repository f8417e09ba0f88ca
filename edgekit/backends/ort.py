"""ONNX Runtime backend: FP32, FP16 (float I/O kept unless asked) and INT8 (static Q/DQ, per-channel
weights, or dynamic) ONNX models for generic CPUs."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgekit import quant
from edgekit.backends.base import (
    Backend,
    ExportJob,
    ExportResult,
    HostRunner,
    TensorSpec,
    manifest_specs,
    name_matches,
)
from edgekit.errors import BadInput, InternalError
from edgekit.ingest import EXTERNAL_DATA_THRESHOLD, io_info, save_model, toposort

log = logging.getLogger(__name__)

ENTRY = "model.onnx"


def tensor_specs(
    model: onnx.ModelProto, name_map: Mapping[str, str]
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """TensorSpecs of an ONNX model's I/O (source names through `name_map`)."""

    def spec(info: Any) -> TensorSpec:
        return TensorSpec.build(info.name, info.shape, info.dtype, name_map.get(info.name, info.name))

    inputs, outputs = io_info(model)
    return [spec(i) for i in inputs], [spec(o) for o in outputs]


def save_onnx(model: onnx.ModelProto, path: Path) -> None:
    """Save an artifact; intermediate value_info (shape-inference annotations) is dropped: the runtime
    infers it again and it only makes the file bigger."""
    del model.graph.value_info[:]
    save_model(model, path)


def to_fp16(model: onnx.ModelProto, keep_io_types: bool) -> tuple[onnx.ModelProto, list[str]]:
    """FP16 weights and compute. Ops that fail to load in fp16 are kept in fp32 and named."""
    import onnxruntime as ort
    from onnxruntime.transformers.float16 import convert_float_to_float16

    blocked: list[str] = []
    for _ in range(8):
        converted = convert_float_to_float16(
            model, keep_io_types=keep_io_types, op_block_list=_DEFAULT_FP16_BLOCK + blocked
        )
        toposort(converted.graph)  # the converter appends its Cast nodes at the end
        try:
            onnx.checker.check_model(converted)
            ort.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"])
            return converted, blocked
        except Exception as exc:  # noqa: BLE001 - find the op type that broke and keep it in fp32
            op = _failing_op(str(exc), model)
            if op is None or op in blocked:
                raise InternalError(f"FP16 conversion produced a model onnxruntime rejects: {exc}") from exc
            blocked.append(op)
    raise InternalError("FP16 conversion kept failing after blocking several op types")


# onnxruntime's converter already blocks ops without fp16 kernels on common EPs; these are added
# because their fp16 CPU kernels are missing in older releases.
_DEFAULT_FP16_BLOCK: list[str] = []


def _failing_op(message: str, model: onnx.ModelProto) -> str | None:
    for op in sorted({node.op_type for node in model.graph.node}, key=len, reverse=True):
        if f"{op}(" in message or f"'{op}'" in message or f" {op} " in message:
            return op
    return None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    extra = ""  # core dependency
    modules = ("onnxruntime",)
    needs_static_shapes = False
    name_pattern = None
    min_opset = 13  # per-channel Q/DQ needs 13; raised only for int8
    precisions = ("fp32", "fp16", "int8", "int4")

    def export(self, job: ExportJob) -> ExportResult:
        self.require()
        self.check_precision(job.precision, job.target)
        self.options_of(job.options)  # no options: anything given is a BadInput naming it
        import onnxruntime as ort

        out = job.out_dir / ENTRY
        details: dict[str, Any] = {}
        warnings: list[str] = []
        model = job.prepared.load()
        if job.precision == "fp32":
            save_onnx(model, out)
        elif job.precision == "fp16":
            keep_io = job.options.io_dtype not in ("float16", "fp16")
            converted, blocked = to_fp16(model, keep_io_types=keep_io)
            save_onnx(converted, out)
            details["fp16_io"] = not keep_io
            if blocked:
                details["kept_fp32_ops"] = blocked
                warnings.append(f"op types kept in FP32 (no FP16 kernel): {', '.join(blocked)}")
        elif job.precision == "int4" or job.options.weights_only:
            details["weight_only"] = self._weight_only(job, out)
            warnings.extend(details["weight_only"]["notes"])
        else:
            details.update(self._int8(job, out))
            warnings.extend(n for n in details.get("notes", []) if "fell back" in n or "without" in n)
        if model.ByteSize() > EXTERNAL_DATA_THRESHOLD and job.precision != "fp32":
            log.info("large model: stored with external data")
        final = onnx.load(str(out))
        inputs, outputs = tensor_specs(final, job.prepared.name_map)
        return ExportResult(
            entry=ENTRY,
            inputs=inputs,
            outputs=outputs,
            toolchain={"onnxruntime": ort.__version__, "onnx": onnx.__version__},
            details=details,
            warnings=warnings,
        )

    def _int8(self, job: ExportJob, out: Path) -> dict[str, Any]:
        settings = job.target.quantization
        if job.options.dynamic_int8:
            result = quant.quantize_dynamic_int8(
                job.prepared.path, out, per_channel=settings.get("per_channel", True)
            )
            return {"mode": "dynamic", "per_channel": result.per_channel, "notes": result.notes}
        if job.calib is None:
            raise BadInput(
                f"--int8 for target '{job.target.name}' needs a calibration set: pass --calib SET "
                "(or --dynamic for weights-only int8)"
            )
        ignored = _matching_nodes(job.prepared.load(), job.options.ignore)
        from edgekit.int8.ort_qdq import numerics_for
        from edgekit.int8.qdq_export import search_qdq  # the INT8 search (edgekit.int8)

        # another architecture's target (arm64 from x86): scored on reference Q/DQ numerics
        numerics = numerics_for(job.target)
        search = search_qdq(
            job, out, settings=settings, always_exclude=ignored, save=save_onnx, semantics=numerics
        )
        recipe = search["recipe"]
        return {
            "mode": "static-qdq",
            "activation_type": settings.get("activation_type", "uint8"),
            "weight_type": settings.get("weight_type", "int8"),
            "per_channel": str(recipe.get("weights", "")).startswith("per-channel"),
            "reduce_range": str(recipe.get("weights", "")).endswith("7bit"),
            "symmetric_activations": recipe.get("activations") == "symmetric",
            "calibration": recipe.get("calibration"),
            "excluded_nodes": ignored,
            "int8_search": search,
            "qdq_numerics": numerics,  # what scored the candidates and what host verify runs
            "notes": search["notes"],
        }

    def _weight_only(self, job: ExportJob, out: Path) -> dict[str, Any]:
        """INT4 (or INT8, --weights-only) MatMul/Gemm weights as com.microsoft MatMulNBits, the levels
        chosen by edgekit.int4's search against the gate."""
        from edgekit.int4.graph import to_matmulnbits
        from edgekit.int4.search import spec_of, weight_only

        level = "int4" if job.precision == "int4" else "int8"
        result = weight_only(job, spec_of(job, level), to_matmulnbits)
        save_onnx(result.model, out)
        return {"format": "MatMulNBits (com.microsoft, accuracy_level 0)", **result.details}

    def open_runner(self, artifact_dir: Path, manifest: Mapping[str, Any]) -> HostRunner:
        self.require()
        path = Path(artifact_dir) / manifest["entry"]
        if not path.exists():
            raise BadInput(f"{artifact_dir}: the artifact file {manifest['entry']} is missing")
        inputs, outputs = manifest_specs(manifest)
        reference = (manifest.get("details") or {}).get("qdq_numerics") == "reference"
        return OrtRunner(path, inputs, outputs, threads=manifest.get("threads"), reference_qdq=reference)


def _matching_nodes(model: onnx.ModelProto, patterns: list[str]) -> list[str]:
    """Node names matching any `--ignore` pattern (shell glob, or a regular expression)."""
    return [n.name for n in model.graph.node if n.name and any(name_matches(n.name, p) for p in patterns)]


class OrtRunner(HostRunner):
    """The one host ONNX Runtime runner (every backend whose host-verifiable file is ONNX uses it):
    a CPU InferenceSession; fp16-I/O artifacts get their inputs cast and outputs widened."""

    def __init__(
        self,
        path: Path,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        threads: int | None = None,
        reference_qdq: bool = False,
    ):
        import onnxruntime as ort

        super().__init__(inputs, outputs)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        if reference_qdq:
            # no Q/DQ fusion: exact Q/DQ semantics, as TensorRT computes an explicit-quantization ONNX
            # (this CPU's fused int8 kernels would add their own errors, e.g. u8 x s8 saturation on
            # x86 without VNNI, that TensorRT does not have)
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.add_session_config_entry("session.disable_quant_qdq", "1")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        ort_feed = {
            spec.name: np.asarray(feed[spec.source_name]).astype(spec.dtype, copy=False)
            for spec in self.inputs
        }
        results = self.session.run([spec.name for spec in self.outputs], ort_feed)
        return {
            spec.source_name: (r.astype(np.float32) if r.dtype == np.float16 else r)
            for spec, r in zip(self.outputs, results, strict=True)
        }

    def close(self) -> None:
        self.session = None
