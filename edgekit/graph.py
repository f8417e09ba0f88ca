"""ONNX graph utilities shared by ingest, the backends, analysis and splitting: load and check a model,
its real inputs and outputs, tensor names, subgraphs, topological order, weight repairs, content hash.

Nothing here prepares a model for a backend (that is `edgekit.ingest`); these are the small, pure
operations the preparation and everyone else are built from.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgekit.calib import InputInfo
from edgekit.digest import file_sha256
from edgekit.errors import BadInput, suggest

log = logging.getLogger(__name__)

EXTERNAL_DATA_THRESHOLD = 1_800_000_000  # protobuf's hard limit is 2 GiB
DEFAULT_DOMAINS = ("", "ai.onnx")


# ---- loading -------------------------------------------------------------------------------------
def load_model(path: str | Path, load_external_data: bool = True) -> onnx.ModelProto:
    """Load and check an ONNX file; every failure is one BadInput line."""
    path = Path(path).expanduser()
    if not path.exists():
        raise BadInput(f"model not found: {path}")
    if path.is_dir():
        raise BadInput(f"{path} is a directory, not an ONNX file")
    if path.stat().st_size == 0:
        raise BadInput(f"{path} is empty")
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except FileNotFoundError as exc:
        raise BadInput(f"{path}: external data file missing ({exc.filename or exc})") from exc
    except Exception as exc:  # protobuf DecodeError and friends
        raise BadInput(f"{path}: not a valid ONNX model (cannot parse: {first_line(exc)})") from exc
    if not model.graph.node and not model.graph.output:
        raise BadInput(f"{path}: not a valid ONNX model (no graph found; truncated or not ONNX?)")
    if not model.opset_import:
        raise BadInput(f"{path}: not a valid ONNX model (no opset_import)")
    try:
        if model.ByteSize() > EXTERNAL_DATA_THRESHOLD:
            onnx.checker.check_model(str(path))
        else:
            onnx.checker.check_model(model)
    except Exception as exc:  # ValidationError, or a protobuf error for garbage that parsed
        raise BadInput(f"{path}: ONNX check failed: {first_line(exc)}") from exc
    return model


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's text (library errors can run to pages)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def onnx_opset(model: onnx.ModelProto) -> int:
    """The default-domain opset the model imports (0 when it imports none)."""
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            return int(entry.version)
    return 0


# ---- inputs and outputs ----------------------------------------------------------------------------
def _dims(value_info: onnx.ValueInfoProto) -> tuple[int | str | None, ...]:
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return ()
    out: list[int | str | None] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            out.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            out.append(dim.dim_param)
        else:
            out.append(None)
    return tuple(out)


def _np_dtype(value_info: onnx.ValueInfoProto) -> np.dtype:
    elem = value_info.type.tensor_type.elem_type
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem)) if elem else np.dtype("float32")


def io_info(model: onnx.ModelProto) -> tuple[list[InputInfo], list[InputInfo]]:
    """Real inputs (initializers excluded) and outputs with shapes and numpy dtypes."""
    inits = {init.name for init in model.graph.initializer}
    inputs = [
        InputInfo(vi.name, _dims(vi), _np_dtype(vi)) for vi in model.graph.input if vi.name not in inits
    ]
    outputs = [InputInfo(vi.name, _dims(vi), _np_dtype(vi)) for vi in model.graph.output]
    return inputs, outputs


def dynamic_dims(infos: Sequence[InputInfo]) -> dict[str, list[int | str | None]]:
    """{name: dims} of the tensors with at least one dim that is not a fixed positive integer."""
    return {i.name: list(i.shape) for i in infos if any(not isinstance(d, int) for d in i.shape)}


def fix_input_shapes(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> None:
    """Fix input dims in place (`--input-shape`); a name, rank or fixed dim that does not fit is BadInput."""
    inputs, _ = io_info(model)
    by_name = {i.name: i for i in inputs}
    for name, dims in shapes.items():
        if name not in by_name:
            raise BadInput(
                f"--input-shape names '{name}', which is not a model input.{suggest(name, by_name)} "
                f"Inputs: {', '.join(by_name)}"
            )
        current = by_name[name].shape
        if current and len(current) != len(dims):
            raise BadInput(
                f"--input-shape {name}: gives {len(dims)} dims but the input has rank {len(current)} "
                f"({', '.join(str(d) for d in current)})"
            )
        for axis, (have, want) in enumerate(zip(current, dims, strict=False)):
            if isinstance(have, int) and have != want:
                raise BadInput(
                    f"--input-shape {name}: dimension {axis} is fixed at {have} in the model, not {want}"
                )
        for vi in model.graph.input:
            if vi.name == name:
                shape = vi.type.tensor_type.shape
                del shape.dim[:]
                for value in dims:
                    shape.dim.add().dim_value = int(value)
    if shapes:
        # stale symbolic shapes on intermediate tensors would block re-inference
        del model.graph.value_info[:]


# ---- weights -------------------------------------------------------------------------------------------
def constants_to_initializers(model: onnx.ModelProto) -> int:
    """Move tensors held in main-graph Constant nodes into initializers (quantizers and converters
    only treat initializers as weights). Returns how many were moved."""
    graph = model.graph
    keep = []
    moved = 0
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS and len(node.output) == 1:
            tensor = _constant_value(node)
            if tensor is not None:
                tensor.name = node.output[0]
                graph.initializer.append(tensor)
                moved += 1
                continue
        keep.append(node)
    if moved:
        del graph.node[:]
        graph.node.extend(keep)
    return moved


def _constant_value(node: onnx.NodeProto) -> onnx.TensorProto | None:
    for attr in node.attribute:
        if attr.name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(attr.t)
            return tensor
        if attr.name in ("value_float", "value_int", "value_floats", "value_ints"):
            value = helper.get_attribute_value(attr)
            dtype = np.float32 if "float" in attr.name else np.int64
            return numpy_helper.from_array(np.asarray(value, dtype=dtype))
    return None  # sparse_value / strings: left as they are


def drop_initializer_inputs(model: onnx.ModelProto) -> int:
    """Old exporters (IR < 4, and later ones with `keep_initializers_as_inputs`) list every
    initializer as a graph input too; backends then treat weights as overridable inputs. Remove those
    entries. IR < 4 requires them, so the caller must raise the IR version (`opset.settle_ir_version`)."""
    inits = {init.name for init in model.graph.initializer}
    keep = [vi for vi in model.graph.input if vi.name not in inits]
    dropped = len(model.graph.input) - len(keep)
    if dropped:
        del model.graph.input[:]
        model.graph.input.extend(keep)
    return dropped


# ---- names and subgraphs --------------------------------------------------------------------------------
def all_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every subgraph (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from all_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from all_graphs(sub)


def tensor_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name one graph (not its subgraphs) declares or uses."""
    names = {vi.name for vi in graph.input} | {vi.name for vi in graph.output}
    names |= {init.name for init in graph.initializer}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
    return names


def subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Outer-scope names a node's subgraphs (If/Loop/Scan bodies) read."""
    needed: set[str] = set()
    for attr in node.attribute:
        subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for sub in subs:
            local = {vi.name for vi in sub.input} | {i.name for i in sub.initializer}
            for inner in sub.node:
                local.update(inner.output)
            for inner in sub.node:
                needed.update(
                    n for n in list(inner.input) + list(subgraph_inputs(inner)) if n and n not in local
                )
    return needed


_SAFE_START = re.compile(r"[A-Za-z]")


def sanitize_names(model: onnx.ModelProto, allowed: str) -> dict[str, str]:
    """Rewrite every tensor and node name with characters outside the `allowed` regex class
    (e.g. "[A-Za-z0-9_]"). Returns {new_name: original_name} for the renamed tensors."""
    ok_char = re.compile(allowed)
    taken: set[str] = set()
    graphs = list(all_graphs(model.graph))
    for graph in graphs:
        taken.update(tensor_names(graph))
    mapping: dict[str, str] = {}

    def clean(name: str) -> str:
        if not name:
            return name
        if name in mapping:
            return mapping[name]
        new = "".join(ch if ok_char.fullmatch(ch) else "_" for ch in name)
        if not _SAFE_START.match(new):
            new = "t_" + new
        if new != name:
            base, index = new, 1
            while new in taken:
                new = f"{base}_{index}"
                index += 1
            taken.add(new)
        mapping[name] = new
        return new

    for graph in graphs:
        for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
            vi.name = clean(vi.name)
        for init in graph.initializer:
            init.name = clean(init.name)
        for sparse in graph.sparse_initializer:
            sparse.values.name = clean(sparse.values.name)
        for node in graph.node:
            node.input[:] = [clean(n) for n in node.input]
            node.output[:] = [clean(n) for n in node.output]
            if node.name:
                new = "".join(ch if ok_char.fullmatch(ch) else "_" for ch in node.name)
                node.name = new if _SAFE_START.match(new) else "n_" + new
    return {new: old for old, new in mapping.items() if new != old}


def toposort(graph: onnx.GraphProto) -> bool:
    """Sort nodes topologically in place (some converters append nodes out of order).
    Returns False when the graph has a cycle or a dangling input (left unchanged)."""
    producer: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.output:
            if name:
                producer[name] = index
    deps = []
    for node in graph.node:
        wanted = [n for n in list(node.input) + sorted(subgraph_inputs(node)) if n in producer]
        deps.append({producer[n] for n in wanted})
    users: dict[int, list[int]] = {}
    for index, needed in enumerate(deps):
        for dep in needed:
            users.setdefault(dep, []).append(index)
    remaining = [len(d) for d in deps]
    ready = [i for i, count in enumerate(remaining) if count == 0]
    order: list[int] = []
    while ready:
        current = ready.pop(0)
        order.append(current)
        for user in users.get(current, []):
            remaining[user] -= 1
            if remaining[user] == 0:
                ready.append(user)
    if len(order) != len(graph.node):
        return False
    nodes = [graph.node[i] for i in order]
    del graph.node[:]
    graph.node.extend(nodes)
    return True


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference with data propagation; returns the input unchanged when it fails."""
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - inference is an aid, not a requirement
        log.debug("shape inference failed: %s", exc)
        return model


# ---- files and content hash -----------------------------------------------------------------------------
def model_files(path: str | Path) -> list[Path]:
    """The ONNX file plus the external-data files it references (which hold the weights)."""
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - load_model reports unreadable files properly
        return [path]
    files: dict[str, Path] = {}
    for graph in all_graphs(model.graph):
        for init in graph.initializer:
            if init.data_location == onnx.TensorProto.EXTERNAL:
                for entry in init.external_data:
                    if entry.key == "location" and entry.value not in files:
                        files[entry.value] = path.parent / entry.value
    return [path, *(f for f in files.values() if f.is_file())]


def model_sha256(path: str | Path) -> str:
    """Content hash of a model: of the file alone, or of the file and its external data together
    (so new weights in `model.onnx.data` give a new hash and a fresh prepared model)."""
    files = model_files(path)
    if len(files) == 1:
        return file_sha256(files[0])
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}:{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def model_bytes(path: str | Path) -> int:
    """Size on disk of the model including its external data files."""
    return sum(f.stat().st_size for f in model_files(path))
