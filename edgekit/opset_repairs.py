"""Repairs for old models that onnx's version converter leaves out (see `edgekit.opset`).

- `Op(A, B, broadcast=1, axis=k)` (opset < 7) aligns B's first dim with A's axis k; the converter
  unsqueezes B at the wrong axes (and at opset >= 13 gives the axes to the wrong node).
- `PRelu` below opset 7 applies a slope of shape [C] per channel; opset 7 broadcasts it from the last
  axis, and the converter keeps [C].
- Upsample and Resize-10 map output to input coordinates as x_in = x_out / scale ("asymmetric"); the
  converter turns them into Resize-11 without saying so, and Resize-11 defaults to half_pixel, which
  moves every interpolated pixel (onnx/onnx#3326's adapter; onnxconverter-common sets it the same way).

- Softmax, LogSoftmax and Hardmax read `axis` differently from opset 13 on; the converter relabels
  them when lowering (and Hardmax when raising), which changes the result for any axis but the last.

Each function edits the model in place before (or, for Resize, after) the conversion.
"""

from __future__ import annotations

import logging

import onnx
from onnx import helper, numpy_helper

from edgekit.graph import DEFAULT_DOMAINS, infer_shapes

log = logging.getLogger(__name__)

_BROADCAST_OPS = ("Add", "Sub", "Mul", "Div", "Pow", "And", "Or", "Xor", "Equal", "Greater", "Less")


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    inferred = infer_shapes(model)
    ranks: dict[str, int] = {}
    graph = inferred.graph
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor = vi.type.tensor_type
        if tensor.HasField("shape"):
            ranks[vi.name] = len(tensor.shape.dim)
    for init in graph.initializer:
        ranks[init.name] = len(init.dims)
    return ranks


def _reshaped_initializer(model: onnx.ModelProto, name: str, shape: list[int], suffix: str) -> str | None:
    """A copy of initializer `name` reshaped to `shape` (a new name unless nothing else reads it)."""
    inits = {init.name: init for init in model.graph.initializer}
    if name not in inits:
        return None
    array = numpy_helper.to_array(inits[name]).reshape(shape)
    readers = sum(list(node.input).count(name) for node in model.graph.node)
    outputs = {vi.name for vi in model.graph.output}
    if readers == 1 and name not in outputs:
        inits[name].CopyFrom(numpy_helper.from_array(array, name))
        return name
    new = f"{name}_{suffix}"
    model.graph.initializer.append(numpy_helper.from_array(array, new))
    return new


def align_legacy_broadcasts(model: onnx.ModelProto) -> int:
    """`Op(A, B, broadcast=1, axis=k)` (opset < 7) aligns B's first dim with A's axis k; give B trailing
    ones so that it aligns from the end (numpy rules), which the converter then keeps as it is."""
    ranks = _ranks(model)
    inserted: dict[int, onnx.NodeProto] = {}  # node index -> Unsqueeze to put before it
    fixed = 0
    for index, node in enumerate(model.graph.node):
        if node.op_type not in _BROADCAST_OPS or node.domain not in DEFAULT_DOMAINS or len(node.input) != 2:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if not attrs.get("broadcast") or "axis" not in attrs:
            continue
        a_rank, b_rank = ranks.get(node.input[0]), ranks.get(node.input[1])
        if a_rank is None or b_rank is None:
            log.warning(
                "legacy broadcast of %s '%s': input ranks unknown, left as is", node.op_type, node.name
            )
            continue
        axis = int(attrs["axis"]) % a_rank if a_rank else 0
        trailing = a_rank - axis - b_rank
        if trailing <= 0:
            continue
        b_name = node.input[1]
        inits = {i.name: i for i in model.graph.initializer}
        if b_name in inits:
            new = _reshaped_initializer(model, b_name, [*inits[b_name].dims, *([1] * trailing)], "aligned")
        else:
            new = f"{b_name}_aligned_{index}"
            axes = list(range(b_rank, b_rank + trailing))
            inserted[index] = helper.make_node("Unsqueeze", [b_name], [new], axes=axes)
        if new is None:
            continue
        node.input[1] = new
        for attr in node.attribute:
            if attr.name == "axis":
                attr.i = axis
        fixed += 1
    if inserted:
        nodes = []
        for index, node in enumerate(model.graph.node):
            if index in inserted:
                nodes.append(inserted[index])
            nodes.append(node)
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return fixed


def per_channel_prelu_slopes(model: onnx.ModelProto) -> int:
    """PRelu below opset 7 applies a slope of shape [C] per channel (axis 1); opset 7 broadcasts it
    from the last axis. Reshape such slopes to [C, 1, ..., 1]."""
    ranks = _ranks(model)
    inits = {i.name: i for i in model.graph.initializer}
    fixed = 0
    for node in model.graph.node:
        if node.op_type != "PRelu" or node.domain not in DEFAULT_DOMAINS or len(node.input) != 2:
            continue
        slope = inits.get(node.input[1])
        x_rank = ranks.get(node.input[0])
        if slope is None or x_rank is None or x_rank < 3 or len(slope.dims) != 1 or slope.dims[0] <= 1:
            continue
        new = _reshaped_initializer(
            model, slope.name, [int(slope.dims[0]), *([1] * (x_rank - 2))], "per_channel"
        )
        if new is not None:
            node.input[1] = new
            fixed += 1
            inits = {i.name: i for i in model.graph.initializer}
    return fixed


def resize_outputs(model: onnx.ModelProto) -> set[str]:
    """Outputs of Upsample / Resize (opset < 11) nodes: after conversion they are Resize-11 nodes."""
    return {
        node.output[0]
        for node in model.graph.node
        if node.op_type in ("Upsample", "Resize") and node.domain in DEFAULT_DOMAINS and node.output
    }


def asymmetric_resize(model: onnx.ModelProto, outputs: set[str]) -> None:
    """Give the Resize nodes that were Upsample / Resize-10 the coordinate mapping those ops had."""
    for node in model.graph.node:
        if node.op_type != "Resize" or not node.output or node.output[0] not in outputs:
            continue
        present = {a.name for a in node.attribute}
        mode = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "mode"), b"nearest")
        if "coordinate_transformation_mode" not in present:
            node.attribute.append(helper.make_attribute("coordinate_transformation_mode", "asymmetric"))
        if (mode in (b"nearest", "nearest")) and "nearest_mode" not in present:
            node.attribute.append(helper.make_attribute("nearest_mode", "floor"))


_AXIS_SEMANTICS_OPS = ("Softmax", "LogSoftmax", "Hardmax")


def single_axis_softmax(model: onnx.ModelProto, source: int, target: int) -> list[str]:
    """Softmax, LogSoftmax and Hardmax work on one axis from opset 13 and on a 2-D view (the axes from
    `axis` on, flattened) before it. The converter's down adapter only relabels them, and its Hardmax
    up adapter too. Rewrite each such node so that both readings agree before converting: lowering, the
    axis is moved last with a Transpose pair; raising Hardmax, the input is flattened at `axis` and
    reshaped back. Returns the ops that could not be rewritten (input rank unknown)."""
    down, up = source >= 13 > target, source < 13 <= target
    if not (down or up):
        return []
    ranks = _ranks(model)
    blocked: list[str] = []
    nodes: list[onnx.NodeProto] = []
    for index, node in enumerate(model.graph.node):
        if node.op_type not in _AXIS_SEMANTICS_OPS or node.domain not in DEFAULT_DOMAINS:
            nodes.append(node)
            continue
        rank = ranks.get(node.input[0])
        default_axis = -1 if source >= 13 else 1
        axis = next((a.i for a in node.attribute if a.name == "axis"), default_axis)
        if rank is not None:
            axis %= rank
        if rank is not None and axis == rank - 1:
            nodes.append(node)  # the last axis: both readings agree
        elif rank is None:
            blocked.append(node.op_type)
            nodes.append(node)
        elif down:
            nodes.extend(_moved_to_last_axis(node, axis, rank, index))
        elif node.op_type == "Hardmax":
            nodes.extend(_flattened_at_axis(node, axis, index))
        else:
            nodes.append(node)  # Softmax/LogSoftmax: the converter's up adapter is right
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return blocked


def _set_axis(node: onnx.NodeProto, axis: int) -> None:
    kept = [a for a in node.attribute if a.name != "axis"]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute("axis", axis)])


def _moved_to_last_axis(node: onnx.NodeProto, axis: int, rank: int, index: int) -> list[onnx.NodeProto]:
    perm = [d for d in range(rank) if d != axis] + [axis]
    inverse = [perm.index(d) for d in range(rank)]
    moved, result = f"{node.input[0]}_to_last_{index}", f"{node.output[0]}_last_{index}"
    before = helper.make_node("Transpose", [node.input[0]], [moved], perm=perm)
    after = helper.make_node("Transpose", [result], [node.output[0]], perm=inverse)
    node.input[0], node.output[0] = moved, result
    _set_axis(node, rank - 1)
    return [before, node, after]


def _flattened_at_axis(node: onnx.NodeProto, axis: int, index: int) -> list[onnx.NodeProto]:
    x, y = node.input[0], node.output[0]
    shape, flat, result = f"{x}_shape_{index}", f"{x}_flat_{index}", f"{y}_flat_{index}"
    nodes = [
        helper.make_node("Shape", [x], [shape]),
        helper.make_node("Flatten", [x], [flat], axis=axis),
    ]
    node.input[0], node.output[0] = flat, result
    _set_axis(node, 1)
    return [*nodes, node, helper.make_node("Reshape", [result, shape], [y])]
