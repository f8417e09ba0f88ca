"""The OpenVINO backend object: export (convert, compress or quantize, save, compile once on the host to
record the precision the runtime chose) and the answers to the backend seam's questions."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgekit.backends.base import (
    Backend,
    ExportJob,
    ExportOptions,
    ExportResult,
    HostRunner,
    TensorSpec,
    manifest_specs,
)
from edgekit.backends.ov.int8 import quantize
from edgekit.backends.ov.options import OpenVinoOptions
from edgekit.backends.ov.runtime import HOST_DEVICE, OpenVinoRunner, compile_ir, execution_summary
from edgekit.errors import BadInput, InternalError

log = logging.getLogger(__name__)

ENTRY = "model.xml"
WEIGHTS = "model.bin"


def _shape(dims: tuple[int | str | None, ...]) -> list[int | str]:
    return [d if isinstance(d, int) else (d or "?") for d in dims]


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
    precisions = ("fp32", "fp16", "int8", "int4")
    Options = OpenVinoOptions
    model_suffixes = (".xml", ".bin")

    # ---- the questions asked of a backend ----------------------------------------------------------
    def needs_calibration(self, precision: str, options: ExportOptions) -> bool:
        # NNCF post-training quantization is static: always calibrated; weight compression is not
        return precision == "int8" and not options.weights_only

    def deployable_files(self, directory: Path, entry: str) -> list[str]:
        """The IR: model.xml and its weights, model.bin."""
        weights = Path(entry).with_suffix(".bin").as_posix()
        return [entry, weights] if (Path(directory) / weights).is_file() else [entry]

    def run_device(self, target: Any, manifest: Mapping[str, Any]) -> str:
        """The OpenVINO device of the target profile ("CPU", "GPU", "NPU", "GPU.1", "AUTO:GPU,CPU"),
        else the one the manifest recorded at export."""
        recorded = (manifest.get("details") or {}).get("device")
        device = (target.device if target is not None else None) or recorded or "CPU"
        return str(device).upper()

    # ---- export -----------------------------------------------------------------------------------
    def export(self, job: ExportJob) -> ExportResult:
        self.require()
        import openvino as ov

        precision = job.precision
        self.check_precision(precision, job.target)
        options = self.options_of(job.options)
        assert isinstance(options, OpenVinoOptions)
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
            "weights": {
                "fp32": "float32",
                "fp16": "float16 (compressed)",
                "int8": "int8 weights (NNCF compress_weights)"
                if job.options.weights_only
                else "int8 FakeQuantize",
                "int4": "int4 blocks (NNCF compress_weights), int8 backup",
            }[precision],
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

        if precision == "int4" or (precision == "int8" and job.options.weights_only):
            from edgekit.backends.ov.weights import compress

            ov_model, details["weight_only"] = compress(
                lambda: ov.convert_model(str(job.prepared.path)), job, precision
            )
            warnings.extend(details["weight_only"]["notes"])
        elif precision == "int8":
            ov_model, quant = quantize(ov_model, job, options, device, warnings)
            details["quantization"] = quant

        job.out_dir.mkdir(parents=True, exist_ok=True)
        xml_path = job.out_dir / ENTRY
        ov.save_model(ov_model, str(xml_path), compress_to_fp16=precision == "fp16")

        inference_precision = options.inference_precision
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
                TensorSpec.build(info.name, info.shape, info.dtype, job.prepared.name_map.get(info.name))
            )
        return specs

    # ---- host runner ------------------------------------------------------------------------------
    def open_runner(
        self, artifact_dir: Path, manifest: Mapping[str, Any], threads: int | None = None
    ) -> HostRunner:
        self.require()
        details = manifest.get("details") or {}
        xml_path = Path(artifact_dir) / manifest.get("entry", ENTRY)
        if not xml_path.exists():
            raise BadInput(f"{artifact_dir}: the OpenVINO IR {xml_path.name} is missing")
        inputs, outputs = manifest_specs(manifest)
        precision = str(manifest.get("precision", "fp32"))
        threads = threads or manifest.get("threads") or details.get("threads")
        compiled = compile_ir(
            xml_path, HOST_DEVICE, precision, threads, details.get("inference_precision_override")
        )
        return OpenVinoRunner(compiled, inputs, outputs)
