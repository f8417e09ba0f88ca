"""Head-aware INT8: find where a model's head concatenates quantities of different scales, and the
recipes that keep that place out of one INT8 grid.

A YOLOv8-style detector ends in `Concat(axis=1)` of box centre/size in pixels (0..640) and sigmoid class
scores (0..1): one per-tensor INT8 scale for that output is ~2.5 pixels per step, so every score rounds
to 0 (the most-reported INT8 failure of detectors). The same happens to any head whose last Concat
joins differently scaled branches (boxes + scores, boxes + landmarks, mask coefficients).

`find_heads` walks from each graph output back through pure data movement to its producing Concat and
calls it mixed-scale when its inputs' calibrated ranges differ by more than `MIXED_RATIO`. The recipe
dimension `head` (added to a backend's space only when such a Concat exists) then offers:

- `int8`: everything quantized (the default recipe; what collapses);
- `split`: the mixed-scale Concat kept in float, so each branch (boxes, scores) is quantized apart with
  its own scale and the output leaves in float;
- `float-tail`: the head's decode after its last weighted layers (the Concat and the Mul/Sigmoid/Add/
  Sub/Div/Split/Reshape/level Concats feeding it) kept in float: boxes are decoded and scores squashed
  in float from the INT8 convolutions' outputs.

Each costs a few elementwise ops in float; the export records which nodes and what that cost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import onnx

from edgekit.int8.recipes import Dimension

HEAD_VALUES = ("int8", "split", "float-tail")
MIXED_RATIO = 8.0  # inputs whose largest magnitudes differ this much cannot share one 8-bit scale
# ops that move data without computing: an output reached through them is still the Concat's
PASS_THROUGH = frozenset({"Identity", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten"})
# the decode after the last weighted layers: cheap elementwise/data ops, kept in float by float-tail
TAIL_OPS = frozenset(
    {
        "Mul", "Add", "Sub", "Div", "Sigmoid", "Softmax", "Exp", "Tanh", "Pow", "Sqrt", "Concat",
        "Split", "Slice", "Gather", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten",
        "Expand", "Tile",
    }
)  # fmt: skip
MAX_TAIL = 200  # a "tail" larger than this is not a head's decode: stop (and keep the Concat only)


@dataclass
class Head:
    """One mixed-scale head: its Concat, the branches it joins and the decode that feeds it."""

    output: str  # the graph output it produces
    concat: str  # node name
    axis: int
    branches: list[dict[str, Any]]  # {tensor, range: [lo, hi], channels}
    tail: list[str] = field(default_factory=list)  # node names of the decode, the Concat included

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "concat": self.concat,
            "axis": self.axis,
            "branches": self.branches,
            "tail_nodes": len(self.tail),
        }


def _magnitude(bounds: tuple[float, float] | None) -> float | None:
    if bounds is None:
        return None
    return max(abs(float(bounds[0])), abs(float(bounds[1])))


def find_heads(model: onnx.ModelProto, ranges: Mapping[str, tuple[float, float]]) -> list[Head]:
    """Mixed-scale Concats that produce graph outputs, with each one's decode tail. `ranges` are the
    calibrated min/max of the activations (edgekit.int8.stats), keyed by tensor name."""
    graph = model.graph
    writers = {out: node for node in graph.node for out in node.output}
    constants = {init.name for init in graph.initializer}
    heads: list[Head] = []
    for output in graph.output:
        node = writers.get(output.name)
        while node is not None and node.op_type in PASS_THROUGH:
            node = writers.get(node.input[0])
        if node is None or node.op_type != "Concat":
            continue
        branches = [name for name in node.input if name not in constants]
        sizes = [_magnitude(ranges.get(name)) for name in branches]
        known = [s for s in sizes if s]
        if len(known) < 2 or max(known) / min(known) < MIXED_RATIO:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        shapes = _channels(model, branches, axis)
        heads.append(
            Head(
                output=output.name,
                concat=node.name,
                axis=axis,
                branches=[
                    {
                        "tensor": name,
                        "range": [round(float(v), 6) for v in ranges[name]] if name in ranges else None,
                        "channels": shapes.get(name),
                    }
                    for name in branches
                ],
                tail=_tail(node, writers, constants),
            )
        )
    return heads


def _tail(concat: onnx.NodeProto, writers: Mapping[str, onnx.NodeProto], constants: set[str]) -> list[str]:
    """The Concat and the decode ops feeding it, back to the last weighted layers (Conv, MatMul, ...)."""
    seen = {concat.name}
    order = [concat.name]
    frontier = [name for name in concat.input if name not in constants]
    while frontier:
        producer = writers.get(frontier.pop())
        if producer is None or producer.name in seen or producer.op_type not in TAIL_OPS:
            continue
        seen.add(producer.name)
        order.append(producer.name)
        if len(order) > MAX_TAIL:
            return [concat.name]
        frontier.extend(name for name in producer.input if name and name not in constants)
    return order


def _channels(model: onnx.ModelProto, names: Sequence[str], axis: int) -> dict[str, int]:
    """Each branch's extent on the Concat axis, where shape inference knows it."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - only a label for the record
        return {}
    out: dict[str, int] = {}
    infos = [*inferred.graph.value_info, *inferred.graph.output]
    for info in infos:
        if info.name in names:
            dims = info.type.tensor_type.shape.dim
            if dims and -len(dims) <= axis < len(dims) and dims[axis].HasField("dim_value"):
                out[info.name] = int(dims[axis].dim_value)
    return out


def head_dimension() -> Dimension:
    return Dimension(
        "head",
        HEAD_VALUES,
        "a head that concatenates quantities of different scales (box pixels and class scores) loses the "
        "small ones on one INT8 grid: keep its Concat in float (branches quantized apart) or its whole "
        "decode in float",
    )


def head_nodes(heads: Sequence[Head], value: Any) -> list[str]:
    """The nodes a `head` recipe value keeps in float."""
    if value == "split":
        return [h.concat for h in heads]
    if value == "float-tail":
        return list(dict.fromkeys(n for h in heads for n in h.tail))
    return []
