"""TensorRT-aware Q/DQ placement: quantize only where TensorRT runs INT8 kernels.

onnxruntime's default QDQ quantization puts a Q/DQ pair on the inputs *and outputs* of every op it
knows (Relu, MaxPool, Add, Concat, Reshape ...). TensorRT honours every Q/DQ in an explicitly quantized
network, so each extra pair is a forced INT8 <-> float conversion that splits fusions; this is the most
reported reason TensorRT INT8 comes out slower than FP16. The rules here follow NVIDIA's own:

- TensorRT developer guide, "Q/DQ layer-placement recommendations": quantize all inputs of weighted
  operations (Convolution, Deconvolution, GEMM/MatMul); by default do not quantize their outputs; do not
  simulate BatchNorm/ReLU fusions (TensorRT fuses them into the convolution); quantize the *residual*
  input of an element-wise Add that follows a convolution so that the Add fuses into that convolution.
- TensorRT Model Optimizer (modelopt.onnx.quantization, INT8 mode), whose placement is built on the same
  rules: weights per-channel symmetric (Conv axis 0, ConvTranspose axis 1, Gemm/MatMul along N),
  activations per-tensor symmetric, no output quantization for any op type, residual Add inputs from
  `build_non_residual_input_map` (the branch with the longer path is the fused one; the other gets
  Q/DQ), pooling inputs quantized when a neighbour is quantized, convolutions with fewer than 16
  input/output channels left in float unless TensorRT has INT8 kernels for them, GEMV-shaped and
  small (N or K < 16) Gemm/MatMul left in float (no tensor-core benefit), graph outputs never quantized.

The Q/DQ nodes are inserted here rather than by onnxruntime's `quantize_static`: its QDQ quantizer cannot
quantize one input of a node and not another (ModelOpt patches it and then deletes Q/DQ pairs again),
it recalibrates although the scales are already fixed by the TensorRT calibration cache, and its
option set changes between releases. Activation scales are taken verbatim from `scales` (the cache's),
so the explicit-quantization ONNX and the implicit-calibration cache describe the same network.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import onnx
from onnx import TensorProto, helper

LINEAR_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
POOLING_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")
# ops TensorRT fuses into a preceding convolution's epilogue (BiasAdd / ConstMul are Add / Mul with a
# constant operand, checked separately)
EPILOGUE_OPS = ("BatchNormalization", "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish")
# data-movement ops TensorRT moves Q/DQ across
COPY_OPS = ("Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity")
MIN_CHANNELS = 16  # ModelOpt: INT8 conv/GEMM kernels want >= 16 channels (exceptions below)


@dataclass
class QdqInput:
    """One node input that gets a Q/DQ pair: an activation (per-tensor) or a weight (per-channel)."""

    node: str
    index: int
    tensor: str
    kind: str  # "activation" | "weight"
    axis: int | None = None  # weights: the output-channel axis (None: per-tensor)


@dataclass
class Plan:
    """Where Q/DQ goes, before any scale is known. Node names are the model's own."""

    inputs: list[QdqInput] = field(default_factory=list)
    int8_nodes: list[str] = field(default_factory=list)  # nodes TensorRT runs in INT8
    residual_adds: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)  # node -> why it stays in float

    def to_json(self) -> dict[str, Any]:
        return {
            "int8_nodes": list(self.int8_nodes),
            "residual_adds": list(self.residual_adds),
            "excluded": dict(self.excluded),
            "quantized_inputs": [
                {"node": q.node, "input": q.index, "tensor": q.tensor, "kind": q.kind, "axis": q.axis}
                for q in self.inputs
            ],
        }


class Graph:
    """Producer/consumer/constant indexes over an ONNX graph (node names made unique and non-empty)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.nodes = list(graph.node)
        self.names = [node.name or f"{node.op_type}#{i}" for i, node in enumerate(self.nodes)]
        self.by_name = {name: i for i, name in enumerate(self.names)}
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[tuple[int, int]]] = {}
        for i, node in enumerate(self.nodes):
            for out in node.output:
                if out:
                    self.producer[out] = i
            for k, name in enumerate(node.input):
                if name:
                    self.consumers.setdefault(name, []).append((i, k))
        self.constants: dict[str, TensorProto] = {t.name: t for t in graph.initializer}
        for node in self.nodes:
            if node.op_type == "Constant" and len(node.output) == 1:
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    self.constants[node.output[0]] = value
        self.outputs = {o.name for o in graph.output}
        self.graph_inputs = {i.name for i in graph.input} - set(self.constants)
        self.depth = self._depths()
        self.shapes = _shapes(model)
        self.dtypes = {
            vi.name: vi.type.tensor_type.elem_type
            for vi in list(graph.input) + list(graph.value_info) + list(graph.output)
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type
        }

    def _depths(self) -> list[int]:
        """Longest path (in nodes) from a graph input to each node; nodes are in topological order."""
        depth = [0] * len(self.nodes)
        for i, node in enumerate(self.nodes):
            parents = [self.producer[n] for n in node.input if n in self.producer and self.producer[n] < i]
            depth[i] = 1 + max((depth[p] for p in parents), default=0)
        return depth

    def is_const(self, tensor: str) -> bool:
        if tensor in self.constants:
            return True
        i = self.producer.get(tensor)
        return i is not None and self.nodes[i].op_type == "Constant"

    def variable_inputs(self, i: int) -> list[int]:
        return [k for k, name in enumerate(self.nodes[i].input) if name and not self.is_const(name)]

    def parent(self, tensor: str) -> int | None:
        return self.producer.get(tensor)

    def is_float32(self, tensor: str) -> bool:
        """False only when the tensor is known to hold another type (fp16 models, integer inputs)."""
        if tensor in self.constants:
            return self.constants[tensor].data_type == TensorProto.FLOAT
        return self.dtypes.get(tensor, TensorProto.FLOAT) == TensorProto.FLOAT


def _shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Known tensor shapes; shape inference runs only when a Gemm/MatMul output has none recorded
    (the GEMM rules need them; inference serializes the whole model, seconds on a large one)."""

    def collect(graph: onnx.GraphProto) -> dict[str, list[int | None]]:
        out: dict[str, list[int | None]] = {}
        for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
                dims = vi.type.tensor_type.shape.dim
                out[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        return out

    shapes = collect(model.graph)
    gemm_outputs = [n.output[0] for n in model.graph.node if n.op_type in ("Gemm", "MatMul") and n.output]
    if all(name in shapes for name in gemm_outputs):
        return shapes
    try:
        return collect(onnx.shape_inference.infer_shapes(model).graph)
    except Exception:  # noqa: BLE001 - shapes only refine the GEMM rules
        return shapes


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _weight_axis(node: onnx.NodeProto, weight: TensorProto) -> int | None:
    """The output-channel axis TensorRT wants per-channel weight scales on (None: per-tensor)."""
    rank = len(weight.dims)
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1 if _attr(node, "group", 1) == 1 else None  # [Cin, Cout/group, k..]
    if node.op_type == "Gemm":
        return 0 if _attr(node, "transB", 0) else 1
    return rank - 1 if rank >= 2 else None  # MatMul: [.., K, N]


def _float_kernel_reason(g: Graph, i: int) -> str | None:
    """Why TensorRT would run this weighted node faster in float (ModelOpt's INT8 exclusion rules)."""
    node = g.nodes[i]
    weight = g.constants.get(node.input[1]) if len(node.input) > 1 else None
    if node.op_type == "Conv" and weight is not None and len(weight.dims) >= 3:
        cout, cin = int(weight.dims[0]), int(weight.dims[1])
        if cout >= MIN_CHANNELS and cin >= MIN_CHANNELS:
            return None
        group, kernel = _attr(node, "group", 1), list(weight.dims[2:])
        first_layer = node.input[0] in g.graph_inputs
        if (
            group == 1
            and (cout % 8 == 0 or cin % 8 == 0)
            and (first_layer or cout >= MIN_CHANNELS or cin >= MIN_CHANNELS)
            and len(set(kernel)) == 1
        ):
            return None
        if group > 1 and cout % 8 == 0 and all(k >= 3 for k in kernel):
            return None
        return f"conv with {cin} input / {cout} output channels has no faster INT8 kernel"
    if node.op_type in ("Gemm", "MatMul"):
        out = g.shapes.get(node.output[0])
        if not out or any(d is None for d in out):
            return None  # dynamic: keep it quantized
        variable = len(g.variable_inputs(i)) == len(node.input[:2])
        if (variable and len(out) >= 2 and 1 in out[-2:]) or (not variable and len(out) < 3 and 1 in out):
            return "GEMV-shaped (a dimension of 1): no tensor-core INT8 kernel"
        k = None
        if weight is not None and len(weight.dims) >= 2:
            trans_b = node.op_type == "Gemm" and _attr(node, "transB", 0)
            k = int(weight.dims[-1] if trans_b else weight.dims[-2])
        n = out[-1] if len(out) >= 2 else None
        if (n is not None and 0 < n < MIN_CHANNELS) or (k is not None and 0 < k < MIN_CHANNELS):
            return f"small GEMM (N={n}, K={k} < {MIN_CHANNELS}): INT8 is slower than float here"
    return None


def _fused_backbone(g: Graph, tensor: str, int8: set[int]) -> int | None:
    """The INT8 convolution whose epilogue (BN, activation, bias/scale, SiLU, copy ops) produces
    `tensor` with every intermediate used once, i.e. what TensorRT fuses an Add on `tensor` into."""
    uses = 1  # consumers the current tensor may have (SiLU reads its input twice)
    for _ in range(16):
        if tensor in g.outputs or len(g.consumers.get(tensor, [])) != uses:
            return None
        i = g.parent(tensor)
        if i is None:
            return None
        node = g.nodes[i]
        if node.op_type in ("Conv", "ConvTranspose"):
            return i if i in int8 else None
        variable = g.variable_inputs(i)
        unary = node.op_type in EPILOGUE_OPS or node.op_type in COPY_OPS
        unary |= node.op_type in ("Add", "Mul", "Sub", "Div") and len(variable) == 1
        if unary and variable:
            tensor, uses = node.input[variable[0]], 1
            continue
        if node.op_type == "Mul" and len(variable) == 2:  # SiLU: x * Sigmoid(x)
            a, b = (node.input[k] for k in variable)
            for x, s in ((a, b), (b, a)):
                p = g.parent(s)
                if p is not None and g.nodes[p].op_type == "Sigmoid" and g.nodes[p].input[0] == x:
                    tensor, uses = x, 2
                    break
            else:
                return None
            continue
        return None
    return None


def _through_copies_to(g: Graph, tensor: str, wanted: set[int], depth: int = 0) -> bool:
    """Whether `tensor` reaches a node in `wanted` directly or through copy ops."""
    for i, _ in g.consumers.get(tensor, []):
        if i in wanted:
            return True
        node = g.nodes[i]
        if (
            node.op_type in COPY_OPS
            and depth < 8
            and _through_copies_to(g, node.output[0], wanted, depth + 1)
        ):
            return True
    return False


def plan_placement(model: onnx.ModelProto, exclude: Iterable[str] = ()) -> Plan:
    """Decide which node inputs get Q/DQ for TensorRT. `exclude`: node names kept in float (the
    sensitive-layer fallback passes its reverted nodes here); unknown names are ignored."""
    g = Graph(model)
    plan = Plan()
    excluded = set(exclude)
    int8: set[int] = set()
    for i, node in enumerate(g.nodes):
        if node.op_type not in LINEAR_OPS or len(node.input) < 2:
            continue
        name = g.names[i]
        reason = "excluded by request" if name in excluded else _float_kernel_reason(g, i)
        if reason is None and not any(not g.is_const(n) for n in node.input[:2]):
            reason = "constant inputs only"
        if reason is None and any(g.is_const(n) and g.constants.get(n) is None for n in node.input[:2]):
            reason = "weight is computed by a Constant op edgekit cannot read"
        if reason is None and not all(g.is_float32(n) for n in node.input[:2]):
            reason = "inputs are not float32 (Q/DQ here takes float32 tensors)"
        if reason is not None:
            plan.excluded[name] = reason
            continue
        int8.add(i)
        plan.int8_nodes.append(name)
        for k, tensor in enumerate(node.input[:2]):
            if tensor in g.constants:
                axis = _weight_axis(node, g.constants[tensor]) if k == 1 else None
                plan.inputs.append(QdqInput(name, k, tensor, "weight", axis))
            else:
                plan.inputs.append(QdqInput(name, k, tensor, "activation"))

    for i, node in enumerate(g.nodes):  # residual Add: quantize the input that is not fused
        is_add = node.op_type == "Add" or (node.op_type == "Sum" and len(node.input) == 2)
        if not is_add or len(g.variable_inputs(i)) != 2 or g.names[i] in excluded:
            continue
        a, b = node.input[0], node.input[1]
        if g.parent(a) is None or g.parent(b) is None:
            continue
        if a in g.shapes and b in g.shapes and g.shapes[a] != g.shapes[b]:
            continue  # broadcasting Add: not a residual connection
        fa, fb = _fused_backbone(g, a, int8), _fused_backbone(g, b, int8)
        if fa is None and fb is None:
            continue
        fused_a = fb is None or (fa is not None and g.depth[fa] >= g.depth[fb])
        residual = 1 if fused_a else 0
        if not g.is_float32(node.input[residual]):
            continue
        plan.residual_adds.append(g.names[i])
        plan.inputs.append(QdqInput(g.names[i], residual, node.input[residual], "activation"))

    quantized_inputs = {q.tensor for q in plan.inputs if q.kind == "activation"}
    for i, node in enumerate(g.nodes):  # pooling next to INT8 work runs in INT8 too
        if node.op_type not in POOLING_OPS or g.names[i] in excluded or not g.is_float32(node.input[0]):
            continue
        parent = g.parent(node.input[0])
        while parent is not None and g.nodes[parent].op_type in (*COPY_OPS, "Cast") and g.nodes[parent].input:
            parent = g.parent(g.nodes[parent].input[0])
        feeds_int8 = _through_copies_to(g, node.output[0], int8)
        if feeds_int8 or parent in int8 or node.input[0] in quantized_inputs:
            plan.int8_nodes.append(g.names[i])
            plan.inputs.append(QdqInput(g.names[i], 0, node.input[0], "activation"))
    return plan
