"""The model report of `edgekit inspect`: `analyze` reads the model once and fills a ModelReport from
the shapes (shapes.py), costs (costs.py) and the memory models (edgekit.memory_model)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper

from edgekit import ingest
from edgekit.analysis.costs import (
    count_weights,
    graph_macs,
    peak_activations,
    tensor_bytes,
    total_weight_bytes,
    weight_classes,
)
from edgekit.analysis.shapes import assume_unit_dims, infer, shape_table, without_weights
from edgekit.memory_model import (
    ACTIVATION_BYTES,
    DEFAULT_RUNTIME,
    ESTIMATE_FORMULA,
    LARGE_TENSOR_BYTES,
    MB,
    MEMORY_MODELS,
    PRECISIONS,
    MemoryModel,
)


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
    memory_estimate_bytes: dict[str, int]  # onnxruntime's (DEFAULT_RUNTIME)
    runtime_memory_bytes: dict[str, dict[str, int]]  # per measured runtime, per precision
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
        data["runtime_memory_mb"] = {
            runtime: {k: round(v / MB, 2) for k, v in values.items()}
            for runtime, values in self.runtime_memory_bytes.items()
        }
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
    header: dict[str, Any] = {
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
    assumed = assume_unit_dims(model)
    if assumed:
        notes.append(
            "symbolic dims assumed 1 (pass --input-shape NAME:D0,D1,.. to set them): " + ", ".join(assumed)
        )
    analysis_inputs, _ = ingest.io_info(model)
    analysis_shapes = {i.name: [int(d) for d in i.shape if isinstance(d, int)] for i in analysis_inputs}

    inferred, how, unknown = infer(without_weights(model), notes)
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    shapes, dtypes = shape_table(inferred)
    if subgraphs:
        notes.append(f"{subgraphs} subgraphs (If/Loop/Scan bodies) are not analyzed beyond the op histogram")

    params, param_tensors, stored, nonfloat_bytes, nonfloat_count = count_weights(inits.values())
    weight_bytes = {p: total_weight_bytes(inits.values(), p) for p in PRECISIONS}
    classes = weight_classes(graph, inits)
    class_bytes = {
        p: {c: sum(total_weight_bytes([t], p) for t in tensors) for c, tensors in classes.items()}
        for p in PRECISIONS
    }
    for p in PRECISIONS:  # tensors that reach the mmap threshold only at a wider precision
        large = [t for t in classes["other"] if total_weight_bytes([t], p) >= LARGE_TENSOR_BYTES]
        moved = sum(total_weight_bytes([t], p) for t in large)
        class_bytes[p]["other"] -= moved
        class_bytes[p]["large"] = moved
    macs, attention, skipped = graph_macs(graph, shapes, inits)
    if skipped:
        notes.append(f"MACs unknown (shapes missing) for {len(skipped)} nodes: {', '.join(skipped[:5])}")

    peaks = {p: peak_activations(graph, shapes, dtypes, inits, ACTIVATION_BYTES[p]) for p in PRECISIONS}
    native_peak, native_node = peak_activations(graph, shapes, dtypes, inits, None)
    nodes = header["node_count"]
    per_runtime = {
        runtime: {p: model.estimate(class_bytes[p], peaks[p][0], nodes) for p in PRECISIONS}
        for runtime, model in MEMORY_MODELS.items()
    }
    estimate = per_runtime[DEFAULT_RUNTIME]

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
        runtime_memory_bytes=per_runtime,
        shape_inference=how,
        unknown_shapes=unknown,
        notes=notes,
    )
    report.seconds = round(time.perf_counter() - start, 3)
    return report


def estimate_bytes(
    weight_bytes: Mapping[str, int], peak_activation_bytes: int, nodes: int, runtime: str = DEFAULT_RUNTIME
) -> int:
    """The runtime's MemoryModel; `weight_bytes` by class: conv, other, large."""
    return memory_model(runtime).estimate(weight_bytes, peak_activation_bytes, nodes)


def memory_model(runtime: str) -> MemoryModel:
    """The runtime's own model where it was measured, else onnxruntime's (callers say so)."""
    return MEMORY_MODELS.get(runtime, MEMORY_MODELS[DEFAULT_RUNTIME])


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
            rows.append(TensorRow(name, list(shapes[name]), dtype, tensor_bytes(name, shapes, dtypes, None)))
    rows.sort(key=lambda r: -(r.bytes or 0))
    return rows[:limit]


def _op_name(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
