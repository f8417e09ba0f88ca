"""What a model is for: the task its fidelity is judged by, and the feature slices of its outputs.

`infer_task(model, task)` decides, in this order: `--task` (the caller's word wins); Ultralytics metadata
(`metadata_props` keys task, names, imgsz, stride; `names` is a Python dict literal such as
"{0: 'person', 1: 'car'}"); the outputs' shapes and producers; else "raw". It must work on real exports
(opset 9-17, symbolic or unknown dims, odd names): every shape entry may be None, and nothing here runs the
model.

Shape rules (only without --task and metadata, so they are conservative):
- detect: a 3-D output of an image model ([N, C, H, W] or NHWC input), produced by a Concat, with one small
  axis (5..1029) and a long anchor axis (>= 64 and >= 4x the small one): [N, 4+C, A] is YOLOv8/11 ("v8"),
  [N, A, 5+C] YOLOv5 ("v5"); or a pair [N, A, 4] boxes + [N, A, C] / [N, C, A] scores ("boxes_scores",
  boxes x1 y1 x2 y2). With metadata also [N, K, 6] NMS-inside heads ("end2end", YOLOv10), and an output
  whose dims the exporter left symbolic is read as [N, 4+C, A] (`resolve` sizes it from the arrays).
- tokens: a 3-D output [N, T, V] (V >= 100) that a linear layer produced (logits, not hidden states) in a
  model with an integer [N, T] input (token ids; a float KV cache beside it is fine).
- map: [N, 1, H, W] with H, W > 1; segment: [N, C, H, W] produced by Softmax/Sigmoid/ArgMax, or by a
  Resize to the input's height and width.
- classify / embed: [N, D] (size-1 axes aside): embed when it comes from pooling or normalisation and
  D >= 32; classify when a linear head produced it (through bias, Softmax, Sigmoid: logits); else raw
  (a BERT pooler's Tanh, a bare feature vector: nothing to say what its values mean).

Slices: each output is traced back through ops that keep its axes (elementwise ops, Transpose, Reshape
that only adds or drops size-1 axes, Identity/Cast) to the Concat that produced it; the Concat's inputs give the
ranges along that axis. A detect layout gives its own slices (v8: boxes 0-4, classes 4-4+C, then any
extra rows: mask coefficients / keypoints / angle; v5: boxes, objectness, classes).
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import onnx

from edgekit.errors import BadInput, suggest

log = logging.getLogger(__name__)

TASKS = ("detect", "segment", "classify", "embed", "map", "tokens", "raw")
SOURCES = ("--task", "metadata", "output shapes", "default")
#: Ultralytics task names and what edgekit judges them as (pose / obb heads are detection heads with
#: extra rows after the class scores)
ULTRALYTICS_TASKS = {
    "detect": "detect",
    "segment": "segment",
    "classify": "classify",
    "pose": "detect",
    "obb": "detect",
}
DETECT_DEFAULTS: dict[str, Any] = {"conf": 0.25, "iou": 0.45, "match_iou": 0.5, "low_conf": 0.1}
MAP_THRESHOLD = 0.5  # probability maps; logit maps (values outside [0, 1]) use 0
EMBED_MIN_DIM = 32

_KEEP_AXES = {
    "Sigmoid",
    "Relu",
    "Tanh",
    "Softmax",
    "LogSoftmax",
    "Identity",
    "Cast",
    "Clip",
    "Exp",
    "Log",
    "Neg",
    "Abs",
    "Sqrt",
    "HardSigmoid",
    "LeakyRelu",
    "Mul",
    "Add",
    "Sub",
    "Div",
    "Pow",
    "DequantizeLinear",
    "QuantizeLinear",
    "Dropout",
}
_PASS_TO_LINEAR = {
    "Softmax",
    "LogSoftmax",
    "Sigmoid",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Cast",
    "Identity",
    "DequantizeLinear",
}
_LINEAR = {"Gemm", "MatMul", "Conv", "Einsum"}  # a linear head after pooling makes logits, not an embedding
_POOLING = {"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax", "LpNormalization", "ReduceL2"}


@dataclass(frozen=True)
class TaskSpec:
    """What the model is for (`kind`, one of TASKS), how that was decided (`source`), which outputs the
    task metric reads (`outputs`, ONNX source names, in order), its parameters and the outputs' slices.

    params: detect: layout "v8" | "v5" | "boxes_scores" | "end2end", num_classes, conf (0.25), iou (NMS, 0.45),
    match_iou (0.5), low_conf (0.1: a confident detection matched at this lower score on the other side
    is not lost), names, imgsz; map / segment: threshold; classify: topk (5).
    slices: output name -> {"axis": int, "ranges": [[start, stop, label], ...]} (stop exclusive)."""

    kind: str
    source: str
    outputs: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    slices: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in TASKS:
            raise BadInput(
                f"unknown task '{self.kind}'.{suggest(self.kind, TASKS)} Valid tasks: {', '.join(TASKS)}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "outputs": list(self.outputs),
            "params": _jsonable(self.params),
            "slices": {
                name: {
                    "axis": int(s["axis"]),
                    "ranges": [[int(a), int(b), str(label)] for a, b, label in s["ranges"]],
                }
                for name, s in self.slices.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskSpec:
        params = dict(data.get("params") or {})
        if isinstance(params.get("names"), dict):  # JSON keys are strings; class ids are ints
            params["names"] = {int(k): v for k, v in params["names"].items()}
        return cls(
            kind=str(data["kind"]),
            source=str(data.get("source", "default")),
            outputs=tuple(data.get("outputs") or ()),
            params=params,
            slices={
                name: {
                    "axis": int(s["axis"]),
                    "ranges": [[int(a), int(b), str(label)] for a, b, label in s["ranges"]],
                }
                for name, s in (data.get("slices") or {}).items()
            },
        )

    def describe(self) -> str:
        """'detect (metadata; output0, v8, 18 classes)'."""
        bits = [self.source]
        if self.outputs:
            bits.append(", ".join(self.outputs))
        if "layout" in self.params:
            bits.append(str(self.params["layout"]))
        if self.params.get("num_classes"):
            bits.append(f"{self.params['num_classes']} classes")
        return f"{self.kind} ({'; '.join(bits)})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# ---- the model, read without running it ------------------------------------------------------------------
Shape = tuple[int | None, ...]


def _dims(value: onnx.ValueInfoProto) -> Shape | None:
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return tuple(
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim
    )


class _Graph:
    """Producers, initializers and known shapes of the main graph (shape inference where it works)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception as exc:  # noqa: BLE001 - odd exports: shapes are a hint, never required
            log.debug("shape inference failed (%s); using the declared shapes only", exc)
            inferred = model
        graph = inferred.graph
        self.initializers = {t.name for t in graph.initializer}
        self.producer = {out: node for node in graph.node for out in node.output if out}
        self.shapes: dict[str, Shape | None] = {}
        for value in list(graph.value_info) + list(graph.input) + list(graph.output):
            self.shapes[value.name] = _dims(value)
        for tensor in graph.initializer:
            self.shapes[tensor.name] = tuple(int(d) for d in tensor.dims)
        self.constants = set(self.initializers) | {
            out for node in graph.node if node.op_type == "Constant" for out in node.output
        }
        self.inputs = [i for i in model.graph.input if i.name not in self.initializers]
        self.outputs = [o.name for o in model.graph.output]
        self.output_types = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}

    def shape(self, name: str) -> Shape | None:
        return self.shapes.get(name)

    def data_input(self, node: onnx.NodeProto) -> str | None:
        """The input of an elementwise node that carries the data (not a constant operand)."""
        for name in node.input:
            if name and name not in self.constants:
                return name
        return None

    def image_input(self) -> bool:
        for value in self.inputs:
            shape = _dims(value)
            if value.type.tensor_type.elem_type not in (
                onnx.TensorProto.FLOAT,
                onnx.TensorProto.FLOAT16,
                onnx.TensorProto.UINT8,
            ):
                continue
            if shape is not None and len(shape) == 4 and (shape[1] in (1, 3, 4) or shape[3] in (1, 3, 4)):
                return True
        return False

    def token_inputs(self) -> bool:
        """An integer input of rank 2 ([N, T] token ids); other inputs (a KV cache) may be float."""
        ints = (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
        for value in self.inputs:
            shape = _dims(value)
            if value.type.tensor_type.elem_type in ints and shape is not None and len(shape) == 2:
                return True
        return False

    def ends_in_linear(self, name: str) -> bool:
        """Whether `name` is a linear layer's output (logits), through bias Adds (one constant operand),
        Softmax / LogSoftmax / Sigmoid and layout ops; a residual Add, a LayerNorm or a Tanh is not."""
        current = name
        for _ in range(12):
            node = self.producer.get(current)
            if node is None:
                return False
            if node.op_type in ("Gemm", "MatMul", "Conv"):
                return True
            if node.op_type == "Add":
                operands = [i for i in node.input if i and i not in self.constants]
                if len(operands) != 1:
                    return False
                current = operands[0]
            elif node.op_type in _PASS_TO_LINEAR:
                current = node.input[0]
            else:
                return False
        return False

    def input_hw(self) -> tuple[int | None, int | None]:
        for value in self.inputs:
            shape = _dims(value)
            if shape is not None and len(shape) == 4:
                return (shape[2], shape[3]) if shape[1] in (1, 3, 4) else (shape[1], shape[2])
        return None, None


def _through_size1(before: Shape, after: Shape, axis: int) -> int | None:
    """`axis` of `before` in `after` when the reshape only adds or drops size-1 axes (the k-th axis that
    is not 1 stays the k-th), None when the axis itself is 1 or cannot be followed."""
    if axis >= len(before) or before[axis] == 1:
        return None
    rank_among = sum(1 for d in before[:axis] if d != 1)
    positions = [k for k, d in enumerate(after) if d != 1]
    return positions[rank_among] if rank_among < len(positions) else None


def _trace_concat(graph: _Graph, name: str) -> tuple[onnx.NodeProto, int] | None:
    """The Concat that produced `name` through axis-keeping ops, and the axis in `name`'s numbering."""
    rank = len(graph.shape(name) or ()) or None
    # how an axis of the inner tensor maps to the outer one, for each layout op met (outermost first)
    maps: list[Any] = []
    current = name
    for _ in range(32):
        node = graph.producer.get(current)
        if node is None:
            return None
        if node.op_type == "Concat":
            axis: int | None = next((a.i for a in node.attribute if a.name == "axis"), 0)
            in_rank = len(graph.shape(node.output[0]) or ()) or rank
            if axis is not None and axis < 0 and in_rank:
                axis += in_rank
            for step in reversed(maps):  # innermost first: the output's axis that holds the concat axis
                axis = None if axis is None else step(axis)
            return (node, axis) if axis is not None else None
        if node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            if perm is None:
                return None
            maps.append(lambda a, perm=perm: perm.index(a) if a in perm else None)
            current = node.input[0]
        elif node.op_type in ("Reshape", "Flatten", "Squeeze", "Unsqueeze"):
            before, after = graph.shape(node.input[0]), graph.shape(node.output[0])
            if before is None or after is None or None in before or None in after:
                return None
            if [d for d in before if d != 1] != [d for d in after if d != 1]:
                return None  # only reshapes that add or drop size-1 axes keep the feature axis
            maps.append(lambda a, before=before, after=after: _through_size1(before, after, a))
            current = node.input[0]
        elif node.op_type in _KEEP_AXES:
            data = graph.data_input(node)
            if data is None:
                return None
            current = data
        else:
            return None
    return None


def trace_slices(
    model: onnx.ModelProto, outputs: list[str] | None = None, _graph: _Graph | None = None
) -> dict[str, dict[str, Any]]:
    """output -> {"axis", "ranges"} for each output that a Concat on a non-batch axis produced."""
    graph = _graph or _Graph(model)
    found: dict[str, dict[str, Any]] = {}
    for name in outputs or graph.outputs:
        traced = _trace_concat(graph, name)
        if traced is None:
            continue
        node, axis = traced
        concat_axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        sizes = []
        for part in node.input:
            shape = graph.shape(part)
            if shape is None or not shape:
                break
            ax = concat_axis if concat_axis >= 0 else concat_axis + len(shape)
            if ax >= len(shape) or shape[ax] is None:
                break
            sizes.append(int(shape[ax]))
        else:
            if axis == 0 or len(sizes) < 2:
                continue
            word = "channels" if axis == 1 else f"axis {axis}"
            ranges, start = [], 0
            for size in sizes:
                ranges.append([start, start + size, f"{word} {start}-{start + size - 1}"])
                start += size
            found[name] = {"axis": axis, "ranges": ranges}
    return found


def _metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _literal(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


def _names(meta: Mapping[str, str]) -> dict[int, str] | None:
    names = _literal(meta.get("names"))
    if isinstance(names, dict):
        try:
            return {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            return None
    if isinstance(names, list | tuple):
        return {i: str(v) for i, v in enumerate(names)}
    return None


# ---- detection layouts -------------------------------------------------------------------------------------
def _detect_layout(
    shape: Shape | None, num_classes: int | None, end2end: bool = False
) -> tuple[str, int] | None:
    """("v8" | "v5" | "end2end", num_classes) for a 3-D detection output, or None. "end2end" is a head
    with NMS inside (YOLOv10, Ultralytics end2end exports): [N, K, 6] rows x1 y1 x2 y2 score class."""
    if shape is None or len(shape) != 3:
        return None
    rows, cols = shape[1], shape[2]
    if num_classes:
        if cols == 6 and (end2end or (rows is not None and rows <= 1000 and rows != 4 + num_classes)):
            return "end2end", num_classes
        if rows is not None and rows >= 4 + num_classes and (cols is None or cols > rows):
            return "v8", num_classes
        if cols is not None and cols == 5 + num_classes:
            return "v5", num_classes
        return None
    if rows is None or cols is None:
        return None
    small, long = min(rows, cols), max(rows, cols)
    if not (5 <= small <= 1029 and long >= 64 and long >= 4 * small):
        return None
    return ("v8", rows - 4) if rows < cols else ("v5", cols - 5)


_EXTRA_ROWS = {"segment": "mask coefficients", "pose": "keypoints", "obb": "angle"}


def _layout_slices(layout: str, num_classes: int, shape: Shape | None, task: str = "") -> dict[str, Any]:
    if layout == "v8":
        ranges = [[0, 4, "boxes"], [4, 4 + num_classes, "classes"]]
        rows = shape[1] if shape is not None and len(shape) == 3 else None
        if rows is not None and rows > 4 + num_classes:
            ranges.append([4 + num_classes, rows, _EXTRA_ROWS.get(task, "extra")])
        return {"axis": 1, "ranges": ranges}
    if layout == "end2end":
        return {"axis": 2, "ranges": [[0, 4, "boxes"], [4, 5, "scores"], [5, 6, "classes"]]}
    return {"axis": 2, "ranges": [[0, 4, "boxes"], [4, 5, "objectness"], [5, 5 + num_classes, "classes"]]}


def _detect_spec(
    graph: _Graph,
    source: str,
    names: dict[int, str] | None,
    meta: Mapping[str, str],
    kind: str = "detect",
    require_concat: bool = False,
) -> TaskSpec | None:
    num_classes = len(names) if names else None
    params: dict[str, Any] = dict(DETECT_DEFAULTS)
    if names:
        params["names"] = names
    imgsz = _literal(meta.get("imgsz"))
    if isinstance(imgsz, list | tuple) and imgsz:
        params["imgsz"] = [int(v) for v in imgsz]
    for name in graph.outputs:
        end2end = str(meta.get("end2end", "")).strip().lower() == "true"
        found = _detect_layout(graph.shape(name), num_classes, end2end)
        if found is not None and require_concat and _trace_concat(graph, name) is None:
            found = None  # by shape alone, only a head's Concat (a sequence's Softmax is no detector)
        if found is not None:
            return _layout_spec(kind, source, name, found, params, graph, meta)
    pair = _boxes_scores(graph, num_classes)
    if pair is not None:
        boxes, scores, classes = pair
        params.update(layout="boxes_scores", num_classes=classes)
        return TaskSpec(kind, source, (boxes, scores), params, {})
    if source in ("metadata", "--task"):
        # the word of the user or of Ultralytics, on an export whose output dims are symbolic (the
        # exporter could not size them): the first 3-D (or unsized) output, read as Ultralytics' own
        # [N, 4+C, A]; `resolve` sizes it from the arrays at compare time
        for name in graph.outputs:
            shape = graph.shape(name)
            if shape is None or (len(shape) == 3 and None in shape[1:]):
                end2end = str(meta.get("end2end", "")).strip().lower() == "true"
                layout = "end2end" if end2end or (shape is not None and shape[2] == 6) else "v8"
                if shape is not None and num_classes and shape[2] == 5 + num_classes:
                    layout = "v5"
                return _layout_spec(kind, source, name, (layout, num_classes or 0), params, graph, meta)
    return None


def _layout_spec(
    kind: str,
    source: str,
    name: str,
    found: tuple[str, int],
    params: dict[str, Any],
    graph: _Graph,
    meta: Mapping[str, str],
) -> TaskSpec:
    layout, classes = found
    params.update(layout=layout, num_classes=classes)
    others = tuple(o for o in graph.outputs if o != name) if kind == "segment" else ()
    slices = {}
    if classes or layout == "end2end":
        slices[name] = _layout_slices(layout, classes, graph.shape(name), meta.get("task", kind))
    return TaskSpec(kind, source, (name, *others), params, slices)


def resolve(task: TaskSpec, arrays: Mapping[str, Any]) -> TaskSpec:
    """`task` completed from the outputs themselves (samples on axis 0) where the model left it open: a
    detection head whose class count the graph could not size gets it (and its slices) from the array."""
    layout = task.params.get("layout")
    if task.kind not in ("detect", "segment") or layout not in ("v8", "v5") or task.params.get("num_classes"):
        return task
    if not task.outputs or task.outputs[0] not in arrays:
        return task
    name = task.outputs[0]
    shape = tuple(getattr(arrays[name], "shape", ()))
    while len(shape) > 3 and shape[1] == 1:  # samples stacked before the model's batch axis
        shape = shape[:1] + shape[2:]
    if len(shape) != 3:
        return task
    extra = 0
    if task.kind == "segment" and len(task.outputs) > 1 and task.outputs[1] in arrays:
        protos = tuple(getattr(arrays[task.outputs[1]], "shape", ()))
        extra = protos[-3] if len(protos) >= 3 else 0  # mask coefficients: one per prototype
    classes = (shape[1] - 4 - extra) if layout == "v8" else (shape[2] - 5)
    if classes <= 0:
        return task
    params = {**task.params, "num_classes": int(classes)}
    slices = {**task.slices, name: _layout_slices(layout, int(classes), (None, *shape[1:]), task.kind)}
    return TaskSpec(task.kind, task.source, task.outputs, params, slices)


def _boxes_scores(graph: _Graph, num_classes: int | None) -> tuple[str, str, int] | None:
    shapes = {n: graph.shape(n) for n in graph.outputs}
    for boxes, bshape in shapes.items():
        if bshape is None or len(bshape) < 3 or bshape[-1] != 4:
            continue
        anchors = bshape[-2] if len(bshape) == 3 else bshape[1]
        for scores, sshape in shapes.items():
            if scores == boxes or sshape is None or len(sshape) != 3:
                continue
            if sshape[1] == anchors and anchors is not None:
                classes = sshape[2]
            elif sshape[2] == anchors and anchors is not None:
                classes = sshape[1]
            else:
                continue
            if classes is not None and (num_classes is None or classes == num_classes):
                return boxes, scores, int(classes)
    return None


# ---- the decision ------------------------------------------------------------------------------------------
def infer_task(model: onnx.ModelProto, task: str | None = None) -> TaskSpec:
    """The task this model is judged by (see the module docstring for the order and the rules)."""
    if task is not None and task not in TASKS:
        raise BadInput(f"unknown task '{task}'.{suggest(task, TASKS)} Valid tasks: {', '.join(TASKS)}")
    graph = _Graph(model)
    meta = _metadata(model)
    names = _names(meta)
    meta_task = ULTRALYTICS_TASKS.get(meta.get("task", "").strip().lower())
    if task is not None:
        spec = _spec_for(graph, task, "--task", names, meta)
    elif meta_task is not None:
        spec = _spec_for(graph, meta_task, "metadata", names, meta)
    else:
        spec = _from_shapes(graph, names, meta)
    # every output without a layout's slices gets its Concat's
    traced = trace_slices(model, [o for o in graph.outputs if o not in spec.slices], graph)
    if traced:
        spec = TaskSpec(spec.kind, spec.source, spec.outputs, spec.params, {**traced, **spec.slices})
    return spec


def _spec_for(
    graph: _Graph, kind: str, source: str, names: dict[int, str] | None, meta: Mapping[str, str]
) -> TaskSpec:
    """A task named by the user or the metadata: find the outputs and parameters it reads."""
    if kind in ("detect", "segment"):
        spec = _detect_spec(graph, source, names, meta, kind)
        if spec is not None:
            return spec
        if kind == "detect":
            shapes = ", ".join(f"{o} {list(graph.shape(o) or [])}" for o in graph.outputs)
            what = (
                f"no output has a detection layout ([N, 4+C, A], [N, A, 5+C], [N, K, 6] or boxes [N, A, 4] "
                f"+ scores [N, A, C]); the outputs are {shapes}"
            )
            if source == "--task":
                raise BadInput(f"--task detect: {what}; choose another --task ({', '.join(TASKS)})")
            log.warning("the model's metadata says detect, but %s: judging its outputs as raw data", what)
            return TaskSpec("raw", "default", tuple(graph.outputs))
    if kind in ("map", "segment"):
        name = _first(graph, lambda s: len(s) == 4) or (graph.outputs[0] if graph.outputs else None)
        return TaskSpec(kind, source, (name,) if name else (), {"threshold": None})
    if kind == "classify":
        name = _first(graph, lambda s: _flat_dim(s) is not None) or (
            graph.outputs[0] if graph.outputs else None
        )
        params: dict[str, Any] = {"topk": 5}
        if names:
            params["names"] = names
        return TaskSpec(kind, source, (name,) if name else (), params)
    if kind == "tokens":
        name = _first(graph, lambda s: len(s) == 3) or (graph.outputs[0] if graph.outputs else None)
        return TaskSpec(kind, source, (name,) if name else (), {})
    if kind == "embed":
        name = _first(graph, lambda s: _flat_dim(s) is not None) or (
            graph.outputs[0] if graph.outputs else None
        )
        return TaskSpec(kind, source, (name,) if name else (), {})
    return TaskSpec("raw", source, tuple(graph.outputs), {})


def _first(graph: _Graph, test: Any) -> str | None:
    for name in graph.outputs:
        shape = graph.shape(name)
        if shape is not None and test(shape):
            return name
    return None


def _flat_dim(shape: Shape) -> int | None:
    """D of [N, D] (size-1 axes aside), None for other shapes (or an unknown D)."""
    rest = [d for d in shape[1:] if d != 1]
    return rest[0] if len(rest) == 1 and rest[0] is not None and rest[0] > 1 else None


def _producer_chain(graph: _Graph, name: str, depth: int = 6) -> list[str]:
    ops, current = [], name
    for _ in range(depth):
        node = graph.producer.get(current)
        if node is None:
            break
        ops.append(node.op_type)
        data = graph.data_input(node)
        if data is None:
            break
        current = data
    return ops


def _from_shapes(graph: _Graph, names: dict[int, str] | None, meta: Mapping[str, str]) -> TaskSpec:
    source = "output shapes"
    if graph.token_inputs():
        for name in graph.outputs:
            shape = graph.shape(name)
            long = shape is not None and len(shape) == 3 and shape[2] is not None and shape[2] >= 100
            if long and graph.ends_in_linear(name):  # logits, not an encoder's hidden states
                return TaskSpec("tokens", source, (name,), {})
    if graph.image_input():
        spec = _detect_spec(graph, source, names, meta, require_concat=True)
        if spec is not None:
            return spec
    pair = _boxes_scores(graph, len(names) if names else None)  # [N, A, 4] + [N, A, C]: specific enough
    if pair is not None:
        params = {**DETECT_DEFAULTS, "layout": "boxes_scores", "num_classes": pair[2]}
        return TaskSpec("detect", source, pair[:2], params)
    height, width = graph.input_hw()
    for name in graph.outputs:
        shape = graph.shape(name)
        if shape is None:
            continue
        if len(shape) == 4 and shape[1] == 1 and shape[2] != 1 and shape[3] != 1 and graph.image_input():
            return TaskSpec("map", source, (name,), {"threshold": None})
        if len(shape) == 4 and shape[1] is not None and 1 < shape[1] <= 1024:
            chain = _producer_chain(graph, name)
            at_input = shape[2] is not None and (shape[2], shape[3]) == (height, width)
            if (chain[:1] and chain[0] in ("Softmax", "Sigmoid", "ArgMax")) or (
                chain[:1] == ["Resize"] and at_input and graph.image_input()
            ):
                # independent sigmoid channels are thresholded each; softmax/logit maps take the arg-max
                params = {"threshold": None, "multilabel": chain[:1] == ["Sigmoid"]}
                return TaskSpec("segment", source, (name,), params)
    for name in graph.outputs:
        shape = graph.shape(name)
        dim = _flat_dim(shape) if shape is not None else None
        if dim is None:
            continue
        chain = _producer_chain(graph, name)
        head = chain[: next((i for i, op in enumerate(chain) if op in _LINEAR), len(chain))]
        pooled = (
            any(op in _POOLING for op in head[:4])
            or (chain[:1] == ["Div"] and any(op in ("ReduceL2", "Sqrt") for op in _norm_ops(graph, name)))
            # masked mean pooling (sentence encoders): ReduceSum(hidden * mask) / ReduceSum(mask)
            or (chain[:2] == ["Div", "ReduceSum"] and "ReduceSum" in _norm_ops(graph, name))
        )
        if pooled and dim >= EMBED_MIN_DIM:
            return TaskSpec("embed", source, (name,), {})
        if not pooled and graph.ends_in_linear(name):  # a linear head's logits (a Tanh pooler is not)
            params: dict[str, Any] = {"topk": 5}
            if names:
                params["names"] = names
            return TaskSpec("classify", source, (name,), params)
    return TaskSpec("raw", "default", tuple(graph.outputs), {})


def _norm_ops(graph: _Graph, name: str) -> list[str]:
    """The ops feeding a Div's divisor (x / ||x||: ReduceL2, or Sqrt(ReduceSum(x*x)))."""
    node = graph.producer.get(name)
    if node is None or len(node.input) < 2:
        return []
    return _producer_chain(graph, node.input[1], depth=4)
