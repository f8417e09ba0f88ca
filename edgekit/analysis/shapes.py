"""Shapes and element sizes of a model's tensors for the analysis: input dims fixed (the remaining
symbolic ones assumed 1), ONNX shape inference on a weightless copy (onnxruntime's symbolic inference
when ONNX's leaves too many tensors unknown), bytes per element of every ONNX type."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper

log = logging.getLogger(__name__)

FLOAT_TYPES = {
    TensorProto.FLOAT,
    TensorProto.FLOAT16,
    TensorProto.DOUBLE,
    TensorProto.BFLOAT16,
}
for _name in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT4E2M1"):
    if hasattr(TensorProto, _name):
        FLOAT_TYPES.add(getattr(TensorProto, _name))


def assume_unit_dims(model: onnx.ModelProto) -> list[str]:
    """Set every remaining non-static input dim to 1; returns 'input[axis]=name' for each."""
    inits = {init.name for init in model.graph.initializer}
    assumed: list[str] = []
    for vi in model.graph.input:
        if vi.name in inits or not vi.type.tensor_type.HasField("shape"):
            continue
        for axis, dim in enumerate(vi.type.tensor_type.shape.dim):
            if not (dim.HasField("dim_value") and dim.dim_value > 0):
                label = dim.dim_param if dim.HasField("dim_param") and dim.dim_param else "?"
                assumed.append(f"{vi.name}[{axis}]={label}")
                dim.Clear()
                dim.dim_value = 1
    if assumed:
        del model.graph.value_info[:]
        for vi in model.graph.output:  # symbolic output dims would conflict with the inferred ones
            if vi.type.tensor_type.HasField("shape"):
                for dim in vi.type.tensor_type.shape.dim:
                    if dim.HasField("dim_param"):
                        dim.Clear()
    return assumed


def _static_shape(vi: onnx.ValueInfoProto) -> list[int] | None:
    tensor = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not tensor.HasField("shape"):
        return None
    dims = []
    for dim in tensor.shape.dim:
        if not dim.HasField("dim_value") or dim.dim_value < 0:
            return None
        dims.append(int(dim.dim_value))
    return dims


def shape_table(model: onnx.ModelProto) -> tuple[dict[str, list[int]], dict[str, int]]:
    shapes: dict[str, list[int]] = {}
    dtypes: dict[str, int] = {}
    graph = model.graph
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        shape = _static_shape(vi)
        if shape is not None:
            shapes[vi.name] = shape
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            dtypes[vi.name] = vi.type.tensor_type.elem_type
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
        dtypes[init.name] = init.data_type
    return shapes, dtypes


def without_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy for shape inference with the float weights turned into typed graph inputs: inference
    never needs their values, and this keeps it fast and clear of protobuf's 2 GiB limit."""
    light = onnx.ModelProto()
    light.ir_version = max(int(model.ir_version), 4)
    light.opset_import.extend(model.opset_import)
    light.functions.extend(model.functions)
    graph = light.graph
    graph.name = model.graph.name
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    graph.value_info.extend(model.graph.value_info)
    declared = {vi.name for vi in model.graph.input}
    for init in model.graph.initializer:
        if init.data_type in FLOAT_TYPES and numel(init.dims) > 64:
            if init.name not in declared:
                graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        else:
            graph.initializer.append(init)
    return light


def static_shapes(
    model: onnx.ModelProto, notes: list[str]
) -> tuple[dict[str, list[int]], dict[str, int], str, int]:
    """Static shapes and element types of every tensor of `model` (inputs already fixed), inferred on
    a weightless copy: (shapes, elem types, how, tensors left unknown)."""
    inferred, how, unknown = infer(without_weights(model), notes)
    shapes, dtypes = shape_table(inferred)
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
        dtypes[init.name] = init.data_type
    return shapes, dtypes, how, unknown


def assume_ones(model: onnx.ModelProto) -> list[str]:
    """Set every remaining non-static input dim to 1 (in place); returns 'input[axis]=name' for each."""
    return assume_unit_dims(model)


def _missing(model: onnx.ModelProto) -> int:
    shapes, _ = shape_table(model)
    return sum(1 for n in model.graph.node for out in n.output if out and out not in shapes)


def infer(model: onnx.ModelProto, notes: list[str]) -> tuple[onnx.ModelProto, str, int]:
    """ONNX shape inference (data propagation on); onnxruntime's symbolic inference when more than
    a few percent of the node outputs are left without a static shape."""
    how = "onnx"
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - inference is an aid; fall back below
        log.debug("onnx shape inference failed: %s", exc)
        inferred, how = model, "none"
    missing = _missing(inferred)
    total = sum(len(n.output) for n in model.graph.node) or 1
    if missing > max(0, 0.05 * total):
        try:
            from edgekit import symbolic_shapes  # onnxruntime's, minus its save into the working directory

            symbolic = symbolic_shapes.infer(model, auto_merge=True, guess_output_rank=True)
            if symbolic is not None and _missing(symbolic) < missing:
                inferred, how, missing = symbolic, "onnxruntime-symbolic", _missing(symbolic)
        except Exception as exc:  # noqa: BLE001
            log.debug("symbolic shape inference failed: %s", exc)
    if missing:
        notes.append(f"{missing} of {total} tensors have no static shape (sizes counted as 0)")
    return inferred, how, missing


def numel(dims: Iterable[int]) -> int:
    return int(np.prod([int(d) for d in dims], dtype=np.int64)) if dims else 1


def itemsize(elem_type: int) -> float:
    if elem_type in (TensorProto.STRING, TensorProto.UNDEFINED):
        return 0.0
    bits: dict[int, int] = {TensorProto.INT4: 4, TensorProto.UINT4: 4}
    if hasattr(TensorProto, "FLOAT4E2M1"):
        bits[TensorProto.FLOAT4E2M1] = 4
    if elem_type in bits:
        return bits[elem_type] / 8
    try:
        return float(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except Exception:  # noqa: BLE001 - float8 and other exotic types map to uint8 storage
        return 1.0


def is_float(elem_type: int) -> bool:
    return elem_type in FLOAT_TYPES
