"""Static analysis of a .tflite flatbuffer, and the checks an export must pass.

onnx2tf's INT8 converter allows SELECT_TF_OPS, so Flex ops can silently appear: the post-check reads
the flatbuffer (ai-edge-litert's schema) and raises for Flex ops in a full-int8 export; float ops left
in an int8 model, custom ops and I/O types other than requested become warnings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgekit.backends.base import TensorSpec
from edgekit.backends.tflite.convert import TFLiteConversionFailed
from edgekit.backends.tflite.plan import Plan


def analyze_flatbuffer(buffer: bytes) -> dict[str, Any]:
    """Ops of a .tflite file read statically (works even when Flex ops keep it from loading):
    op counts, custom/Flex ops, and ops that compute in float (a float non-constant tensor in or out;
    QUANTIZE / DEQUANTIZE excluded - they are the conversions at the float boundary)."""
    from ai_edge_litert import schema_py_generated as schema  # type: ignore[import-untyped]

    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(buffer, 0)
    ops: dict[str, int] = {}
    float_ops: dict[str, int] = {}
    flex: set[str] = set()
    custom: set[str] = set()
    for sg_index in range(model.SubgraphsLength()):
        graph = model.Subgraphs(sg_index)
        for op_index in range(graph.OperatorsLength()):
            op = graph.Operators(op_index)
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = op_names.get(builtin, str(builtin))
            if name == "CUSTOM":
                name = (code.CustomCode() or b"?").decode(errors="replace")
                (flex if name.startswith("Flex") else custom).add(name)
            ops[name] = ops.get(name, 0) + 1
            if name in ("QUANTIZE", "DEQUANTIZE"):
                continue
            tensors = [i for i in op.InputsAsNumpy() if i >= 0] if op.InputsLength() else []
            outs = [i for i in op.OutputsAsNumpy() if i >= 0] if op.OutputsLength() else []
            for tensor_index in [*tensors, *outs]:
                tensor = graph.Tensors(int(tensor_index))
                if type_names.get(tensor.Type()) not in ("FLOAT32", "FLOAT16"):
                    continue
                buf = model.Buffers(tensor.Buffer()) if tensor.Buffer() < model.BuffersLength() else None
                constant = buf is not None and (buf.DataLength() > 0 or buf.Offset() > 1)
                if not constant or tensor_index in outs:
                    float_ops[name] = float_ops.get(name, 0) + 1
                    break
    return {
        "ops": dict(sorted(ops.items())),
        "float_ops": dict(sorted(float_ops.items())),
        "flex_ops": sorted(flex),
        "custom_ops": sorted(custom),
    }


def post_checks(
    plan: Plan,
    analysis: Mapping[str, Any],
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    model_name: str,
) -> list[str]:
    """Flex ops (raise for full-int8: the target runtime has no TF kernels), float ops left in an
    int8 model, and I/O types other than requested: reported, never hidden."""
    warnings: list[str] = []
    flex = analysis["flex_ops"]
    if flex and plan.int8 in ("static", "aeq"):
        raise TFLiteConversionFailed(
            f"the full-int8 model of {model_name} needs TensorFlow (Flex) ops {', '.join(flex)}, which "
            "LiteRT on the device does not have; change those ops in the model or export --fp16"
        )
    if flex:
        warnings.append(
            f"the model needs TensorFlow (Flex) ops {', '.join(flex)}: LiteRT needs the Flex delegate"
        )
    if analysis["custom_ops"]:
        warnings.append(f"the model uses custom ops {', '.join(analysis['custom_ops'])}")
    if plan.int8 in ("static", "aeq") and analysis["float_ops"]:
        listing = ", ".join(f"{k} x{v}" for k, v in analysis["float_ops"].items())
        warnings.append(f"ops left in float in the int8 model: {listing}")
    want = plan.io
    for spec in [*inputs, *outputs]:
        kind = np.dtype(spec.dtype).kind
        if want == "float32" and kind == "f" and spec.dtype != "float32":
            warnings.append(f"tensor '{spec.source_name}' is {spec.dtype} in the tflite, not float32")
        elif want != "float32" and kind == "f":
            warnings.append(
                f"tensor '{spec.source_name}' is {spec.dtype} in the tflite, not {want} as requested"
            )
    return warnings
