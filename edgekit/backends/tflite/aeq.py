"""ai-edge-quantizer (LiteRT's quantizer) on onnx2tf's float TFLite model: runs in the converter sandbox.

onnx2tf quantizes inside TensorFlow's converter: all or nothing, float inputs only. ai-edge-quantizer
works on a .tflite flatbuffer with recipes scoped by op (output tensor names, a regex) and op type, so
it gives what onnx2tf cannot: int8 everywhere but named ops (per-node fallback), integer model inputs
kept as they are (token ids) with the activations quantized, and weight-only INT8 / block-wise INT4.

This module imports TensorFlow-side packages (ai_edge_quantizer, ai_edge_litert's schema) and is only
imported in the sandboxed child (`Sandbox.call("edgekit.backends.tflite.aeq:quantize", ...)`); its
job file is JSON, its calibration samples npy files in the sandbox directory.

Rules (`rules`, applied in order, a later matching rule wins, as in ai-edge-quantizer's recipes):
    {"regex": "...", "op": "*" | "FULLY_CONNECTED" | ..., "kind": "static" | "weight_only" | "dynamic" | "none",
     "weight_bits": 8 | 4, "granularity": "CHANNELWISE" | "BLOCKWISE_32" | ..., "symmetric": bool}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

SIGNATURE_KEY = "serving_default"


def add_signature(buffer: bytes) -> bytes:
    """onnx2tf's float files carry no SignatureDef, and ai-edge-quantizer calibrates through a signature
    runner: add `serving_default` naming each graph input and output by its tensor name."""
    from ai_edge_litert import schema_py_generated as schema  # type: ignore[import-untyped]
    from ai_edge_litert.tools import flatbuffer_utils  # type: ignore[import-untyped]

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(buffer))
    if model.signatureDefs:
        return buffer
    graph = model.subgraphs[0]

    def tensor_map(index: int) -> Any:
        entry = schema.TensorMapT()
        name = graph.tensors[index].name
        entry.name = name.decode() if isinstance(name, bytes) else name
        entry.tensorIndex = int(index)
        return entry

    signature = schema.SignatureDefT()
    signature.signatureKey = SIGNATURE_KEY
    signature.subgraphIndex = 0
    signature.inputs = [tensor_map(i) for i in graph.inputs]
    signature.outputs = [tensor_map(i) for i in graph.outputs]
    model.signatureDefs = [signature]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _recipe(rules: list[dict[str, Any]]) -> Any:
    from ai_edge_quantizer import qtyping, recipe_manager  # type: ignore[import-untyped]
    from ai_edge_quantizer.algorithm_manager import AlgorithmName  # type: ignore[import-untyped]

    manager = recipe_manager.RecipeManager()
    for rule in rules:
        op = qtyping.TFLOperationName(rule.get("op", "*"))
        kind = rule["kind"]
        granularity = qtyping.QuantGranularity[rule.get("granularity", "CHANNELWISE")]
        if kind == "none":
            manager.add_quantization_config(rule["regex"], op, algorithm_key=AlgorithmName.NO_QUANTIZE)
        elif kind == "static":
            manager.add_static_config(rule["regex"], op, 8, int(rule.get("weight_bits", 8)), granularity)
        elif kind in ("weight_only", "dynamic"):
            # weight_only: weights dequantized explicitly, float compute; dynamic: the kernel takes the
            # integer weights and quantizes activations on the fly (LiteRT's block-wise INT4 path)
            bits = int(rule.get("weight_bits", 8))
            config = qtyping.OpQuantizationConfig(
                weight_tensor_config=qtyping.TensorQuantizationConfig(
                    num_bits=bits,
                    symmetric=bool(rule.get("symmetric", True)),
                    granularity=granularity,
                ),
                compute_precision=qtyping.ComputePrecision.FLOAT
                if kind == "weight_only"
                else qtyping.ComputePrecision.INTEGER,
                explicit_dequantize=kind == "weight_only",
            )
            manager.add_quantization_config(rule["regex"], op, config)
        else:
            raise ValueError(f"unknown quantization rule kind {kind!r}")
    return manager.get_quantization_recipe()


def quantize(
    float_model: str,
    builds: list[dict[str, Any]],
    calibration: dict[str, str] | None = None,
    threads: int = 1,
) -> None:
    """Quantize `float_model` once per build ({"output": path, "rules": [...], "report": path}),
    calibrated once on `calibration` (signature input name -> npy file of samples, first axis =
    samples) when a build needs it; each build writes its .tflite and a JSON report (its recipe)."""
    from ai_edge_quantizer import quantizer  # type: ignore[import-untyped]

    buffer = bytearray(add_signature(Path(float_model).read_bytes()))
    calibrated: Any = None
    samples = 0
    for build in builds:
        q = quantizer.Quantizer(buffer)
        q.load_quantization_recipe(_recipe(build["rules"]))
        result_calib = None
        if q.need_calibration:
            if not calibration:
                raise ValueError("this recipe quantizes activations: it needs calibration samples")
            if calibrated is None:
                # every static build shares one calibration: min/max of every tensor of the float model
                full = quantizer.Quantizer(buffer)
                full.load_quantization_recipe(_recipe([{"regex": ".*", "kind": "static"}]))
                arrays = {name: np.load(path) for name, path in calibration.items()}
                samples = min(len(a) for a in arrays.values())
                data = [{name: a[i : i + 1] for name, a in arrays.items()} for i in range(samples)]
                calibrated = full.calibrate({SIGNATURE_KEY: data}, num_threads=max(1, int(threads)))
            result_calib = calibrated
        result = q.quantize(result_calib, enable_progress_report=False)
        result.export_model(build["output"], overwrite=True)
        if build.get("report"):
            recipe = json.loads(json.dumps(result.recipe, default=str))
            Path(build["report"]).write_text(json.dumps({"recipe": recipe, "calibration_samples": samples}))
        print(
            f"edgekit: ai-edge-quantizer wrote {build['output']} ({Path(build['output']).stat().st_size} bytes)"
        )
