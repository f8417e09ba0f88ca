"""Opset and IR-version changes: onnx's version converter, plus the repairs it leaves out.

Models from old exporters (the classic ONNX model zoo, early PyTorch/Caffe2/CNTK exports) are written at
IR 3 with opset 1-9. Three things stand between them and today's backends:

- IR 3 requires every initializer to be listed as a graph input; ingest drops those entries (backends
  must not treat weights as inputs), so the IR version is raised to what the model then needs
  (`settle_ir_version`: the minimum for its opset, at least 4; never above, so old device runtimes
  still load it). Lowering the opset for a target lowers a newer IR version to that opset's too.
- onnxruntime refuses ops below opset 7 (legacy `broadcast`/`axis` attributes, `consumed_inputs`,
  `is_test`), TensorRT's parser wants opset >= 9, and opset <= 10 carries deprecated forms (Upsample,
  BatchNormalization `spatial`, Reshape/Pad/Slice with attributes). Ingest upgrades such models to
  `LEGACY_OPSET` with onnx's version converter.
- The converter gets three legacy forms wrong (broadcast with `axis`, per-channel PRelu below opset 7,
  Upsample/Resize-10 to Resize-11 coordinates) and Softmax/LogSoftmax/Hardmax across opset 13 (one
  axis vs a flattened 2-D view): `edgekit.opset_repairs` repairs them around the conversion.

Lowering the opset (TensorRT 8.2 on a Jetson Nano takes opset 13 at most) also needs more than the
converter: it has no down adapter for ops whose newer version only accepts more types (Relu-14,
BatchNormalization-15, Add-14 ...), so not even a plain opset-17 CNN would lower. Such nodes are held
out of the conversion and checked against the older schema instead (`_hold_compatible`).

A conversion the converter cannot do raises `OpsetConversionError`, one line naming the op that blocks
it and the two opsets, instead of the converter's C++ assertion and source path.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import onnx
from onnx import helper

from edgekit import opset_repairs
from edgekit.errors import BadInput
from edgekit.graph import DEFAULT_DOMAINS, all_graphs, first_line, infer_shapes, onnx_opset

log = logging.getLogger(__name__)

LEGACY_OPSET = 11  # models below it are upgraded: no deprecated op forms left from here on
ORT_MIN_OPSET = 7  # onnxruntime has no kernels below it


class OpsetConversionError(BadInput):
    """The version converter cannot take the model from one opset to another. The message is one
    line: the op that blocks it, the opsets; callers add what the user can do."""

    def __init__(self, op: str | None, source: int, target: int, detail: str) -> None:
        self.op = op
        self.source = source
        self.target = target
        self.detail = detail
        super().__init__(detail)


# ---- IR version -------------------------------------------------------------------------------------
def required_ir_version(model: onnx.ModelProto) -> int:
    """The lowest IR version valid for what ingest changes: the minimum the default-domain opset needs
    (other domains' imports are the exporter's, often unused: they never raise it), and 4 when a graph
    has initializers that are not also graph inputs (IR 3 forbids that)."""
    default = [entry for entry in model.opset_import if entry.domain in DEFAULT_DOMAINS]
    need = int(helper.find_min_ir_version_for(default, ignore_unknown=True)) if default else 3
    for graph in all_graphs(model.graph):
        inputs = {vi.name for vi in graph.input}
        if any(init.name not in inputs for init in graph.initializer):
            need = max(need, 4)
            break
    return need


def settle_ir_version(model: onnx.ModelProto) -> str | None:
    """Raise the IR version to `required_ir_version` (never lower it: that is the exporter's choice);
    returns a note for the prepare steps when it changed."""
    need = required_ir_version(model)
    if model.ir_version >= need:
        return None
    old = model.ir_version
    model.ir_version = need
    return f"IR version {old} -> {need}"


# ---- conversion ---------------------------------------------------------------------------------------
def convert_opset(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """The model at default-domain opset `target`, legacy forms repaired, IR version settled, checked.
    Raises OpsetConversionError (one line) when the converter cannot do it."""
    source = onnx_opset(model)
    work = onnx.ModelProto()
    work.CopyFrom(model)
    if source < ORT_MIN_OPSET <= target:
        opset_repairs.align_legacy_broadcasts(work)
        opset_repairs.per_channel_prelu_slopes(work)
    resized = opset_repairs.resize_outputs(work) if source < 11 <= target else set()
    blocked = opset_repairs.single_axis_softmax(work, source, target)
    if blocked and target < source:
        detail = f"{blocked[0]} on an input of unknown rank cannot be lowered below opset 13 exactly"
        raise OpsetConversionError(blocked[0], source, target, detail)
    held = _hold_compatible(work, source, target) if target < source else []
    settle_ir_version(work)
    try:
        from onnx import version_converter

        converted = version_converter.convert_version(work, target)
    except Exception as exc:  # noqa: BLE001 - the converter raises RuntimeError/ValidationError with C++ text
        raise _conversion_error(work, source, target, exc) from exc
    if held:
        _release(converted)
    opset_repairs.asymmetric_resize(converted, resized)
    settle_ir_version(converted)
    try:
        onnx.checker.check_model(converted)
    except Exception as exc:  # noqa: BLE001
        raise _conversion_error(work, source, target, exc) from exc
    if target < source:
        _era_ir_version(converted, target)
    return converted


def _era_ir_version(model: onnx.ModelProto, opset: int) -> None:
    """A runtime that takes opset `opset` at most is from that opset's time and may refuse a newer IR
    version (TensorRT 8.2's parser): write that era's IR, unless the model needs a newer one."""
    era = int(helper.find_min_ir_version_for([helper.make_opsetid("", opset)], ignore_unknown=True))
    if model.ir_version <= era:
        return
    newer = model.ir_version
    model.ir_version = max(era, required_ir_version(model))
    try:
        onnx.checker.check_model(model)
    except Exception:  # noqa: BLE001 - it uses something of its IR (functions, optional types ...)
        model.ir_version = newer


_NO_PREVIOUS = re.compile(r"No Previous Version of (\w+) exists")
_NO_ADAPTER = re.compile(r"No Adapter (From|To) Version \$(\d+) for (\w+)")
_CPP_NOISE = re.compile(r"^\S+\.(h|cc|cpp):\d+:\s*\w+:\s*(Assertion `.*?` failed:\s*)?")


def _conversion_error(
    model: onnx.ModelProto, source: int, target: int, exc: BaseException
) -> OpsetConversionError:
    text = first_line(exc)
    direction = "lower" if target < source else "raise"
    if match := _NO_PREVIOUS.search(text):
        op = match.group(1)
        since = _since_version(op, source)
        detail = f"{op} (opset {since}) has no equivalent in opset {target}"
        return OpsetConversionError(op, source, target, detail)
    if match := _NO_ADAPTER.search(text):
        op = match.group(3)
        detail = f"onnx's version converter cannot {direction} {op} from opset {source} to {target}"
        return OpsetConversionError(op, source, target, detail)
    op = _changed_op(model, source, target)
    reason = _CPP_NOISE.sub("", text).strip() or type(exc).__name__
    where = f" at {op}" if op else ""
    detail = f"onnx's version converter failed{where} going from opset {source} to {target} ({reason})"
    return OpsetConversionError(op, source, target, detail)


def _since_version(op: str, opset: int) -> int | str:
    try:
        return int(onnx.defs.get_schema(op, opset).since_version)
    except Exception:  # noqa: BLE001 - unknown op
        return opset


def _changed_op(model: onnx.ModelProto, source: int, target: int) -> str | None:
    """The first op of the model whose definition changes between the two opsets (a guess at the
    blocker when the converter's message names none)."""
    low, high = sorted((source, target))
    for node in model.graph.node:
        if node.domain not in DEFAULT_DOMAINS:
            continue
        try:
            since = onnx.defs.get_schema(node.op_type, high).since_version
        except Exception:  # noqa: BLE001
            continue
        if low < since <= high:
            return str(node.op_type)
    return None


# ---- lowering ops whose newer versions only widened them -------------------------------------------
HOLD_DOMAIN = "ai.edgekit.hold"
# changes that keep inputs, outputs and attributes but change what the op computes: never relabelled.
# (Softmax, LogSoftmax and Hardmax changed at 13 too; `opset_repairs.single_axis_softmax` has moved their axis
# last before this runs, where both readings agree.)
_SEMANTIC_CHANGES = {
    "GroupNormalization": (21,),
    "RoiAlign": (16,),
    "GridSample": (20,),
}
# attribute values a newer version added to an existing attribute: the older one cannot express them
_NEW_VALUES = {
    ("Resize", "coordinate_transformation_mode"): {"half_pixel_symmetric"},
    ("Pad", "mode"): {"wrap"},
    ("ScatterElements", "reduction"): {"max", "min"},
    ("ScatterND", "reduction"): {"max", "min"},
}


def _hold_compatible(model: onnx.ModelProto, source: int, target: int) -> list[onnx.NodeProto]:
    """Move to a private domain (which the converter leaves alone) the nodes whose op changed between
    `target` and `source` only by accepting more types or gaining attributes they do not use: Relu-14,
    BatchNormalization-15, Add-14, Reshape-14 (allowzero=0), Cast-19 ... The converter has no down
    adapter for many of these, so a plain opset-17 CNN could not be lowered to 13. Each held node is
    checked against the target's schema: its inputs' types, its attributes, its input/output counts."""
    types = _value_types(model)
    held: list[onnx.NodeProto] = []
    for graph in all_graphs(model.graph):
        for node in graph.node:
            if node.domain in DEFAULT_DOMAINS and _relabel_fits(node, source, target, types):
                node.domain = HOLD_DOMAIN
                held.append(node)
    if held:
        model.opset_import.append(helper.make_opsetid(HOLD_DOMAIN, 1))
    return held


def _release(model: onnx.ModelProto) -> None:
    for graph in all_graphs(model.graph):
        for node in graph.node:
            if node.domain == HOLD_DOMAIN:
                node.domain = ""
    kept = [entry for entry in model.opset_import if entry.domain != HOLD_DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(kept)


def _relabel_fits(node: onnx.NodeProto, source: int, target: int, types: dict[str, str]) -> bool:
    try:
        new = onnx.defs.get_schema(node.op_type, source)
        old = onnx.defs.get_schema(node.op_type, target)
    except Exception:  # noqa: BLE001 - unknown op, or none in the target opset
        return False
    if new.since_version == old.since_version:
        return False  # unchanged: the converter passes it through
    if any(old.since_version < v <= new.since_version for v in _SEMANTIC_CHANGES.get(node.op_type, ())):
        return False
    inputs = len(node.input)
    outputs = len(node.output)
    if not (old.min_input <= inputs <= old.max_input and old.min_output <= outputs <= old.max_output):
        return False
    dropped = []
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes) and value.decode() in _NEW_VALUES.get((node.op_type, attr.name), ()):
            return False
        if attr.name in old.attributes:
            continue
        if not _is_default(new, attr):
            return False
        dropped.append(attr)
    if not _types_fit(node, old, types):
        return False
    for attr in dropped:  # set to the value the older op always had: say nothing
        node.attribute.remove(attr)
    return True


def _is_default(schema: onnx.defs.OpSchema, attr: onnx.AttributeProto) -> bool:
    spec = schema.attributes.get(attr.name)
    if spec is None:
        return False
    value = helper.get_attribute_value(attr)
    if attr.name == "dilations":  # AveragePool-19: no schema default, all ones is the old behaviour
        return all(v == 1 for v in value)
    if spec.default_value.type == onnx.AttributeProto.UNDEFINED:
        return False
    return bool(value == helper.get_attribute_value(spec.default_value))


def _types_fit(node: onnx.NodeProto, schema: onnx.defs.OpSchema, types: dict[str, str]) -> bool:
    """Every input whose type is known is allowed by the older schema's type constraint."""
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    formal = list(schema.inputs)
    for index, name in enumerate(node.input):
        if not name or not formal:
            continue
        param = formal[min(index, len(formal) - 1)]
        actual = types.get(name)
        if actual is None:
            continue
        wanted = allowed.get(param.type_str, {param.type_str})
        if actual not in wanted:
            return False
    return True


def _value_types(model: onnx.ModelProto) -> dict[str, str]:
    """Tensor name -> 'tensor(float)' style type string, from shape inference and the initializers."""
    inferred = infer_shapes(model)
    found: dict[str, str] = {}
    for graph in all_graphs(inferred.graph):
        for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
            elem = vi.type.tensor_type.elem_type
            if vi.type.HasField("tensor_type") and elem:
                found[vi.name] = f"tensor({_TYPE_NAMES.get(elem, '?')})"
        for init in graph.initializer:
            found[init.name] = f"tensor({_TYPE_NAMES.get(init.data_type, '?')})"
    return found


_TYPE_NAMES = {
    onnx.TensorProto.FLOAT: "float",
    onnx.TensorProto.DOUBLE: "double",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.BFLOAT16: "bfloat16",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.INT16: "int16",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.UINT16: "uint16",
    onnx.TensorProto.UINT32: "uint32",
    onnx.TensorProto.UINT64: "uint64",
    onnx.TensorProto.BOOL: "bool",
    onnx.TensorProto.STRING: "string",
}


@dataclass
class Upgrade:
    """What `upgrade_legacy` did: the new model, steps for the record, a warning when it could not."""

    model: onnx.ModelProto
    step: str | None = None
    warning: str | None = None


def upgrade_legacy(model: onnx.ModelProto, ceiling: int | None = None) -> Upgrade:
    """Upgrade a model below `LEGACY_OPSET` (capped by the target's `ceiling`) to it. A failure is a
    warning, not an error: the backend may still take the old form (onnxruntime does from opset 7)."""
    source = onnx_opset(model)
    target = LEGACY_OPSET if ceiling is None else min(LEGACY_OPSET, ceiling)
    if not source or source >= target:
        return Upgrade(model)
    try:
        converted = convert_opset(model, target)
    except OpsetConversionError as exc:
        hint = " onnxruntime needs opset >= 7;" if source < ORT_MIN_OPSET else ""
        return Upgrade(
            model,
            warning=f"old opset {source} kept ({exc});{hint} re-exporting the model at opset "
            f"{LEGACY_OPSET} or later avoids this",
        )
    return Upgrade(converted, step=f"opset {source} -> {target} (legacy model upgraded)")
