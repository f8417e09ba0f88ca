"""Static analysis of an ONNX model: the numbers behind `edgekit inspect`.

Works on a copy of the model where weights held in Constant nodes are initializers, input shapes are
fixed (from `input_shapes`, remaining symbolic dims assumed 1) and shapes are inferred. Reports the
I/O, opset, op histogram, parameter count, weight bytes per precision, MACs per op type, peak
activation memory from a liveness walk, and a runtime-memory estimate per precision that
`fit_table` compares with each device's memory.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgekit import ingest
from edgekit.errors import BadInput
from edgekit.memory_model import (  # noqa: F401 - the model's constants, re-exported
    ACTIVATION_BYTES,
    ACTIVATION_FACTOR,
    CONV_WEIGHT_FACTOR,
    ESTIMATE_FORMULA,
    INT4_GROUP,
    LARGE_TENSOR_BYTES,
    LARGE_WEIGHT_FACTOR,
    MB,
    OVERHEAD_MB,
    PRECISIONS,
    WEIGHT_FACTOR,
)

log = logging.getLogger(__name__)

_FLOAT_TYPES = {
    TensorProto.FLOAT,
    TensorProto.FLOAT16,
    TensorProto.DOUBLE,
    TensorProto.BFLOAT16,
}
for _name in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT4E2M1"):
    if hasattr(TensorProto, _name):
        _FLOAT_TYPES.add(getattr(TensorProto, _name))


# ---- report ----------------------------------------------------------------------------------------
@dataclass
class TensorRow:
    name: str
    shape: list[int | str | None]
    dtype: str
    bytes: int | None = None


@dataclass
class ModelReport:
    path: str
    file_bytes: int
    ir_version: int
    opset: int
    opsets: dict[str, int]
    producer: str
    inputs: list[TensorRow]
    outputs: list[TensorRow]
    analysis_shapes: dict[str, list[int]]
    node_count: int
    op_histogram: list[tuple[str, int]]
    params: int
    param_tensors: int
    weights_stored_bytes: int
    nonfloat_constant_bytes: int
    nonfloat_constant_tensors: int
    weight_bytes: dict[str, int]
    weight_bytes_by_class: dict[str, dict[str, int]]  # precision -> conv / other / large
    macs: dict[str, int]
    attention_macs: int
    total_macs: int
    peak_activation_bytes: int
    peak_node: dict[str, Any]
    peak_activation_bytes_by_precision: dict[str, int]
    largest_tensors: list[TensorRow]
    memory_estimate_bytes: dict[str, int]
    shape_inference: str
    unknown_shapes: int
    notes: list[str] = field(default_factory=list)
    formula: str = ESTIMATE_FORMULA
    seconds: float = 0.0

    def memory_estimate_mb(self, precision: str) -> float:
        return self.memory_estimate_bytes[precision] / MB

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["op_histogram"] = [list(item) for item in self.op_histogram]
        data["memory_estimate_mb"] = {k: round(v / MB, 2) for k, v in self.memory_estimate_bytes.items()}
        return data


# ---- entry point -----------------------------------------------------------------------------------
def analyze(model_path: str | Path, input_shapes: Mapping[str, Sequence[int]] | None = None) -> ModelReport:
    """Analyze the ONNX file at `model_path` (see module docstring). Bad files raise BadInput."""
    start = time.perf_counter()
    path = Path(model_path).expanduser()
    original = ingest.load_model(path)
    notes: list[str] = []
    src_inputs, src_outputs = ingest.io_info(original)

    # everything read from the user's model is taken first; the analysis then edits it in place
    # (it was loaded for this call only), avoiding a second copy of the weights
    file_bytes = ingest.model_bytes(path)
    histogram = Counter(_op_name(n) for n in original.graph.node)
    subgraphs = sum(1 for _ in ingest.all_graphs(original.graph)) - 1
    header = {
        "ir_version": int(original.ir_version),
        "opset": ingest.onnx_opset(original),
        "opsets": {(o.domain or "ai.onnx"): int(o.version) for o in original.opset_import},
        "producer": " ".join(x for x in (original.producer_name, original.producer_version) if x),
        "node_count": len(original.graph.node),
    }
    model = original
    constant_tensors = [
        n.output[0] for n in model.graph.node if n.op_type == "Constant" and n.domain in ("", "ai.onnx")
    ]
    moved = ingest.constants_to_initializers(model)
    if moved:
        notes.append(f"{moved} weight/constant tensors are held in Constant nodes (counted as weights)")
    if len(constant_tensors) > moved:
        notes.append(f"{len(constant_tensors) - moved} Constant nodes (sparse/string) not analyzed")
    ingest.drop_initializer_inputs(model)
    ingest.fix_input_shapes(model, dict(input_shapes or {}))
    assumed = _assume_ones(model)
    if assumed:
        notes.append(
            "symbolic dims assumed 1 (pass --input-shape NAME:D0,D1,.. to set them): " + ", ".join(assumed)
        )
    analysis_inputs, _ = ingest.io_info(model)
    analysis_shapes = {i.name: [int(d) for d in i.shape if isinstance(d, int)] for i in analysis_inputs}

    inferred, how, unknown = _infer(_without_weights(model), notes)
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    shapes, dtypes = _shape_table(inferred)
    if subgraphs:
        notes.append(f"{subgraphs} subgraphs (If/Loop/Scan bodies) are not analyzed beyond the op histogram")

    params, param_tensors, stored, nonfloat_bytes, nonfloat_count = _count_weights(inits.values())
    weight_bytes = {p: _weight_bytes(inits.values(), p) for p in PRECISIONS}
    classes = _weight_classes(graph, inits)
    class_bytes = {
        p: {c: sum(_weight_bytes([t], p) for t in tensors) for c, tensors in classes.items()}
        for p in PRECISIONS
    }
    for p in PRECISIONS:  # tensors that reach the mmap threshold only at a wider precision
        large = [t for t in classes["other"] if _weight_bytes([t], p) >= LARGE_TENSOR_BYTES]
        moved = sum(_weight_bytes([t], p) for t in large)
        class_bytes[p]["other"] -= moved
        class_bytes[p]["large"] = moved
    macs, attention, skipped = _macs(graph, shapes, inits)
    if skipped:
        notes.append(f"MACs unknown (shapes missing) for {len(skipped)} nodes: {', '.join(skipped[:5])}")

    peaks = {p: _peak_activations(graph, shapes, dtypes, inits, ACTIVATION_BYTES[p]) for p in PRECISIONS}
    native_peak, native_node = _peak_activations(graph, shapes, dtypes, inits, None)
    estimate = {p: estimate_bytes(class_bytes[p], peaks[p][0]) for p in PRECISIONS}

    largest = _largest_tensors(graph, shapes, dtypes, inits, 10)
    report = ModelReport(
        path=str(path),
        file_bytes=file_bytes,
        ir_version=header["ir_version"],
        opset=header["opset"],
        opsets=header["opsets"],
        producer=header["producer"],
        inputs=[TensorRow(i.name, list(i.shape), i.dtype.name) for i in src_inputs],
        outputs=[TensorRow(o.name, list(o.shape), o.dtype.name) for o in src_outputs],
        analysis_shapes=analysis_shapes,
        node_count=header["node_count"],
        op_histogram=sorted(histogram.items(), key=lambda kv: (-kv[1], kv[0])),
        params=params,
        param_tensors=param_tensors,
        weights_stored_bytes=stored,
        nonfloat_constant_bytes=nonfloat_bytes,
        nonfloat_constant_tensors=nonfloat_count,
        weight_bytes=weight_bytes,
        weight_bytes_by_class=class_bytes,
        macs=macs,
        attention_macs=attention,
        total_macs=sum(macs.values()),
        peak_activation_bytes=native_peak,
        peak_node=native_node,
        peak_activation_bytes_by_precision={p: peaks[p][0] for p in PRECISIONS},
        largest_tensors=largest,
        memory_estimate_bytes=estimate,
        shape_inference=how,
        unknown_shapes=unknown,
        notes=notes,
    )
    report.seconds = round(time.perf_counter() - start, 3)
    return report


def estimate_bytes(weight_bytes: Mapping[str, int], peak_activation_bytes: int) -> int:
    """The formula of ESTIMATE_FORMULA; `weight_bytes` by class: conv, other, large."""
    return int(
        CONV_WEIGHT_FACTOR * weight_bytes.get("conv", 0)
        + WEIGHT_FACTOR * weight_bytes.get("other", 0)
        + LARGE_WEIGHT_FACTOR * weight_bytes.get("large", 0)
        + ACTIVATION_FACTOR * peak_activation_bytes
        + OVERHEAD_MB * MB
    )


# ---- shapes ----------------------------------------------------------------------------------------
def _assume_ones(model: onnx.ModelProto) -> list[str]:
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


def _shape_table(model: onnx.ModelProto) -> tuple[dict[str, list[int]], dict[str, int]]:
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


def _without_weights(model: onnx.ModelProto) -> onnx.ModelProto:
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
        if init.data_type in _FLOAT_TYPES and _numel(init.dims) > 64:
            if init.name not in declared:
                graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        else:
            graph.initializer.append(init)
    return light


def _missing(model: onnx.ModelProto) -> int:
    shapes, _ = _shape_table(model)
    return sum(1 for n in model.graph.node for out in n.output if out and out not in shapes)


def _infer(model: onnx.ModelProto, notes: list[str]) -> tuple[onnx.ModelProto, str, int]:
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
            from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

            symbolic = SymbolicShapeInference.infer_shapes(model, auto_merge=True, guess_output_rank=True)
            if symbolic is not None and _missing(symbolic) < missing:
                inferred, how, missing = symbolic, "onnxruntime-symbolic", _missing(symbolic)
        except Exception as exc:  # noqa: BLE001
            log.debug("symbolic shape inference failed: %s", exc)
    if missing:
        notes.append(f"{missing} of {total} tensors have no static shape (sizes counted as 0)")
    return inferred, how, missing


# ---- weights ---------------------------------------------------------------------------------------
def _numel(dims: Iterable[int]) -> int:
    return int(np.prod([int(d) for d in dims], dtype=np.int64)) if dims else 1


def _itemsize(elem_type: int) -> float:
    if elem_type in (TensorProto.STRING, TensorProto.UNDEFINED):
        return 0.0
    bits = {TensorProto.INT4: 4, TensorProto.UINT4: 4}
    if hasattr(TensorProto, "FLOAT4E2M1"):
        bits[TensorProto.FLOAT4E2M1] = 4
    if elem_type in bits:
        return bits[elem_type] / 8
    try:
        return float(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except Exception:  # noqa: BLE001 - float8 and other exotic types map to uint8 storage
        return 1.0


def _count_weights(inits: Iterable[TensorProto]) -> tuple[int, int, int, int, int]:
    params = tensors = stored = other_bytes = other = 0
    for init in inits:
        count = _numel(init.dims)
        size = int(count * _itemsize(init.data_type))
        if init.data_type in _FLOAT_TYPES:
            params += count
            tensors += 1
            stored += size
        else:
            other += 1
            other_bytes += size
    return params, tensors, stored, other_bytes, other


def _weight_bytes(inits: Iterable[TensorProto], precision: str) -> int:
    """Bytes of the float weights at `precision` (see ESTIMATE_FORMULA)."""
    total = 0.0
    for init in inits:
        if init.data_type not in _FLOAT_TYPES:
            continue
        count = _numel(init.dims)
        matrix = len(init.dims) >= 2
        if precision == "fp32":
            total += 4 * count
        elif precision == "fp16":
            total += 2 * count
        elif precision == "int8":
            total += count + 4 * int(init.dims[0]) if matrix else 4 * count
        elif precision == "int4":
            total += 0.5 * count + 2 * -(-count // INT4_GROUP) if matrix else 2 * count
        else:
            raise BadInput(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    return int(round(total))


def _weight_classes(graph: onnx.GraphProto, inits: Mapping[str, TensorProto]) -> dict[str, list[TensorProto]]:
    """Float weights split into those a Conv/ConvTranspose reads as its kernel and the rest."""
    conv = {
        node.input[1]
        for node in graph.node
        if node.op_type in ("Conv", "ConvTranspose")
        and node.domain in ("", "ai.onnx")
        and len(node.input) > 1
    }
    out: dict[str, list[TensorProto]] = {"conv": [], "other": []}
    for name, init in inits.items():
        if init.data_type in _FLOAT_TYPES:
            out["conv" if name in conv else "other"].append(init)
    return out


# ---- MACs ------------------------------------------------------------------------------------------
def _macs(
    graph: onnx.GraphProto, shapes: Mapping[str, list[int]], inits: Mapping[str, TensorProto]
) -> tuple[dict[str, int], int, list[str]]:
    """MACs per op type (Conv, ConvTranspose, Gemm, MatMul; 'MatMul (attention)' for MatMuls whose
    operands are both activations). Returns (macs, attention macs, nodes skipped)."""
    macs: Counter[str] = Counter()
    skipped: list[str] = []
    for index, node in enumerate(graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type not in (
            "Conv",
            "ConvTranspose",
            "Gemm",
            "MatMul",
        ):
            continue
        ins = [shapes.get(name) for name in node.input[:2]]
        out = shapes.get(node.output[0])
        label = node.op_type
        try:
            if node.op_type == "Conv":
                # N*Cout*Hout*Wout * Cin/group * kh*kw ; W is [Cout, Cin/group, kh, kw]
                value = _numel(out) * _numel(ins[1][1:])
            elif node.op_type == "ConvTranspose":
                # every input element meets Cout/group * kh*kw weights; W is [Cin, Cout/group, kh, kw]
                value = _numel(ins[0]) * _numel(ins[1][1:])
            elif node.op_type == "Gemm":
                trans_a = _attr(node, "transA", 0)
                k = ins[0][0] if trans_a else ins[0][-1]
                value = _numel(out) * int(k)  # M*N*K
            else:  # MatMul: broadcast batch * M * N * K
                k = ins[0][-1]
                value = _numel(out) * int(k)
                if node.input[0] not in inits and node.input[1] not in inits:
                    label = "MatMul (attention)"
        except (TypeError, IndexError):
            skipped.append(node.name or f"{node.op_type}#{index}")
            continue
        macs[label] += int(value)
    return dict(sorted(macs.items(), key=lambda kv: -kv[1])), macs.get("MatMul (attention)", 0), skipped


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


# ---- activations -----------------------------------------------------------------------------------
def _tensor_bytes(
    name: str, shapes: Mapping[str, list[int]], dtypes: Mapping[str, int], float_bytes: float | None
) -> int:
    shape = shapes.get(name)
    if shape is None:
        return 0
    elem = dtypes.get(name, TensorProto.FLOAT)
    size = float_bytes if (float_bytes is not None and elem in _FLOAT_TYPES) else _itemsize(elem)
    return int(_numel(shape) * size)


def _peak_activations(
    graph: onnx.GraphProto,
    shapes: Mapping[str, list[int]],
    dtypes: Mapping[str, int],
    inits: Mapping[str, TensorProto],
    float_bytes: float | None,
) -> tuple[int, dict[str, Any]]:
    """Liveness walk over the node order (ONNX requires it topological). A tensor is allocated when
    its node runs and freed after its last consumer; graph inputs live from the start (and are freed
    after their last consumer), graph outputs until the end; weights are excluded. While a node runs
    its inputs and outputs are both live. Returns (peak bytes, the node where it peaks)."""
    outputs = {vi.name for vi in graph.output}
    last_use: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in _node_inputs(node):
            last_use[name] = index
    live: dict[str, int] = {}
    for vi in graph.input:
        if vi.name not in inits:
            live[vi.name] = _tensor_bytes(vi.name, shapes, dtypes, float_bytes)
    current = sum(live.values())
    peak, peak_at = current, {"index": -1, "name": "(graph inputs)", "op": ""}
    for index, node in enumerate(graph.node):
        for name in node.output:
            if name and name not in live and name not in inits:
                live[name] = _tensor_bytes(name, shapes, dtypes, float_bytes)
                current += live[name]
        if current > peak:
            peak = current
            peak_at = {"index": index, "name": node.name or f"{node.op_type}#{index}", "op": node.op_type}
        for name in list(_node_inputs(node)) + list(node.output):
            if name in live and name not in outputs and last_use.get(name, -1) <= index:
                current -= live.pop(name)
    return peak, peak_at


def _node_inputs(node: onnx.NodeProto) -> list[str]:
    """Inputs of a node, including outer-scope tensors its subgraphs read."""
    return [n for n in node.input if n] + sorted(ingest.subgraph_inputs(node))


def _largest_tensors(
    graph: onnx.GraphProto,
    shapes: Mapping[str, list[int]],
    dtypes: Mapping[str, int],
    inits: Mapping[str, TensorProto],
    limit: int,
) -> list[TensorRow]:
    names = [vi.name for vi in graph.input if vi.name not in inits]
    names += [out for node in graph.node for out in node.output if out and out not in inits]
    rows = []
    for name in dict.fromkeys(names):
        if name in shapes:
            elem = dtypes.get(name, TensorProto.FLOAT)
            dtype = helper.tensor_dtype_to_np_dtype(elem).name if elem else "float32"
            rows.append(TensorRow(name, list(shapes[name]), dtype, _tensor_bytes(name, shapes, dtypes, None)))
    rows.sort(key=lambda r: -(r.bytes or 0))
    return rows[:limit]


def _op_name(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


# ---- fit table -------------------------------------------------------------------------------------
def local_memory_mb() -> int:
    """Total physical memory of this machine."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MB)


def device_memory_mb(device: Mapping[str, Any]) -> tuple[int | None, str]:
    """(memory in MB, where it came from) for a devices.toml entry: its own `memory_mb`, this
    machine's memory for the local device, else its target profile's `memory_mb`."""
    if device.get("memory_mb") is not None:
        return int(device["memory_mb"]), "devices.toml"
    if device.get("name") == "local" or device.get("transport") == "local":
        return local_memory_mb(), "this machine"
    target = device.get("target")
    if target:
        from edgekit import targets

        profile = targets.get(str(target))
        if profile.memory_mb is not None:
            return int(profile.memory_mb), f"target {profile.name}"
    return None, "unknown"


def fit_table(
    report: ModelReport,
    devices: Sequence[Mapping[str, Any]],
    precisions: Sequence[str] = PRECISIONS,
) -> list[dict[str, Any]]:
    """One row per device and precision: estimated MB, device MB, headroom MB and %, fits."""
    rows = []
    for device in devices:
        memory, source = device_memory_mb(device)
        for precision in precisions:
            if precision not in report.memory_estimate_bytes:
                raise BadInput(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
            estimate = report.memory_estimate_bytes[precision] / MB
            row: dict[str, Any] = {
                "device": device.get("name", "?"),
                "target": device.get("target"),
                "precision": precision,
                "estimated_mb": round(estimate, 1),
                "device_mb": memory,
                "memory_source": source,
                "headroom_mb": None,
                "headroom_pct": None,
                "fits": None,
            }
            if memory:
                row["headroom_mb"] = round(memory - estimate, 1)
                row["headroom_pct"] = round(100.0 * (memory - estimate) / memory, 1)
                row["fits"] = estimate <= memory
            rows.append(row)
    return rows
