"""ONNX ingest: load, check, repair and prepare a model for a backend; cached by content hash.

Every later step reads the *prepared* model, never the user's file directly. Preparing means:
load (external data too) and check; move weights held in Constant nodes into initializers (and drop
initializers that old exporters also list as graph inputs); fix dynamic dims from `--input-shape`;
raise the opset where quantization needs it (per-channel Q/DQ needs 13) or lower it to a target's
maximum; fold constants with onnxslim when installed; rename tensors whose names a backend rejects,
keeping a map back to the original names; infer shapes. The result is stored under the cache
directory keyed by the source's sha256 plus the options, so the second export of a model is instant.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgekit import __version__
from edgekit.calib import InputInfo
from edgekit.digest import file_sha256
from edgekit.errors import BadInput, suggest

log = logging.getLogger(__name__)

CACHE_ENV = "EDGEKIT_CACHE_DIR"
EXTERNAL_DATA_THRESHOLD = 1_800_000_000  # protobuf's hard limit is 2 GiB


# ---- loading ---------------------------------------------------------------------------------
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
        raise BadInput(f"{path}: not a valid ONNX model (cannot parse: {_first_line(exc)})") from exc
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
        raise BadInput(f"{path}: ONNX check failed: {_first_line(exc)}") from exc
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def onnx_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


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
    return {i.name: list(i.shape) for i in infos if any(not isinstance(d, int) for d in i.shape)}


def parse_input_shapes(specs: Sequence[str]) -> dict[str, list[int]]:
    """`name:1,3,224,224` (repeatable). The name may itself contain ':' — the last one splits."""
    shapes: dict[str, list[int]] = {}
    for spec in specs:
        name, sep, dims = spec.rpartition(":")
        if not sep or not name:
            raise BadInput(f"--input-shape '{spec}' must look like NAME:D0,D1,... (e.g. input:1,3,224,224)")
        try:
            values = [int(d) for d in dims.replace("x", ",").split(",") if d.strip()]
        except ValueError as exc:
            raise BadInput(f"--input-shape '{spec}': dimensions must be integers") from exc
        if not values or any(v <= 0 for v in values):
            raise BadInput(f"--input-shape '{spec}': dimensions must be positive integers")
        shapes[name] = values
    return shapes


# ---- repairs -----------------------------------------------------------------------------------
def constants_to_initializers(model: onnx.ModelProto) -> int:
    """Move tensors held in main-graph Constant nodes into initializers (quantizers and converters
    only treat initializers as weights). Returns how many were moved."""
    graph = model.graph
    keep = []
    moved = 0
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.output) == 1:
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
    """Old exporters (IR < 4) list every initializer as a graph input too; backends then treat
    weights as overridable inputs. Remove those entries."""
    inits = {init.name for init in model.graph.initializer}
    keep = [vi for vi in model.graph.input if vi.name not in inits]
    dropped = len(model.graph.input) - len(keep)
    if dropped:
        del model.graph.input[:]
        model.graph.input.extend(keep)
    return dropped


def fix_input_shapes(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> None:
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


def change_opset(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    from onnx import version_converter

    converted = version_converter.convert_version(model, target)
    onnx.checker.check_model(converted)
    return converted


_SAFE_START = re.compile(r"[A-Za-z]")


def sanitize_names(model: onnx.ModelProto, allowed: str) -> dict[str, str]:
    """Rewrite every tensor and node name with characters outside the `allowed` regex class
    (e.g. "[A-Za-z0-9_]"). Returns {new_name: original_name} for the renamed tensors."""
    ok_char = re.compile(allowed)
    taken: set[str] = set()
    graphs = list(all_graphs(model.graph))
    for graph in graphs:
        taken.update(_tensor_names(graph))
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


def all_graphs(graph: onnx.GraphProto):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from all_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from all_graphs(sub)


def _tensor_names(graph: onnx.GraphProto) -> set[str]:
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


def simplify(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """Fold constants with onnxslim when it is installed. Returns (model, note)."""
    try:
        import onnxslim
    except ImportError:
        return model, "not simplified: onnxslim not installed (pip install 'edgekit[slim]')"
    try:
        slimmed = onnxslim.slim(model)
        if slimmed is None:
            return model, "not simplified: onnxslim returned nothing"
        onnx.checker.check_model(slimmed)
        return slimmed, f"simplified with onnxslim {getattr(onnxslim, '__version__', '')}".strip()
    except Exception as exc:  # noqa: BLE001 - fall back to the unsimplified model
        return model, f"not simplified: onnxslim failed ({_first_line(exc)})"


# ---- the prepared model ------------------------------------------------------------------------
@dataclass
class PrepareOptions:
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    static_shapes: bool = False  # the backend needs every dim fixed
    min_opset: int | None = None
    max_opset: int | None = None
    simplify: bool = True
    name_pattern: str | None = None  # allowed-character regex class, None = keep names

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class PreparedModel:
    path: Path
    source_path: Path
    source_sha256: str
    source_bytes: int
    source_opset: int
    opset: int
    inputs: list[InputInfo]
    outputs: list[InputInfo]
    name_map: dict[str, str]  # prepared name -> source name (renamed tensors only)
    steps: list[str]
    warnings: list[str]

    def load(self) -> onnx.ModelProto:
        return onnx.load(str(self.path))

    def source_name(self, name: str) -> str:
        return self.name_map.get(name, name)

    def prepared_name(self, source_name: str) -> str:
        for new, old in self.name_map.items():
            if old == source_name:
                return new
        return source_name

    def record(self) -> dict[str, Any]:
        return {
            "name": self.source_path.name,
            "sha256": self.source_sha256,
            "bytes": self.source_bytes,
            "opset": self.source_opset,
            "prepared_opset": self.opset,
            "prepare_steps": self.steps,
        }


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


def cache_root(kind: str = "prepared") -> Path:
    """`<EDGEKIT_CACHE_DIR or ~/.cache/edgekit>/<kind>`: prepared models, onnx2tf conversions, ..."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "edgekit"
    return base / kind


def prepare(model_path: str | Path, options: PrepareOptions | None = None) -> PreparedModel:
    """Prepare `model_path` for a backend (see module docstring); cached by content + options."""
    options = options or PrepareOptions()
    source = Path(model_path).expanduser().resolve() if Path(model_path).exists() else Path(model_path)
    if not source.is_file():
        load_model(source)  # raises the right one-line error
    sha = model_sha256(source)
    key = hashlib.sha256(f"{sha}|{options.key()}|{__version__}".encode()).hexdigest()[:24]
    entry = cache_root() / key
    meta_file = entry / "meta.json"
    if meta_file.exists():
        try:
            return _from_meta(json.loads(meta_file.read_text()), entry, source)
        except (KeyError, ValueError, OSError) as exc:
            log.debug("ignoring broken cache entry %s: %s", entry, exc)
    prepared_model, meta = _prepare(load_model(source), options, str(source))
    meta.update(source_sha256=sha, source_bytes=model_bytes(source))
    _store(entry, prepared_model, meta)
    return _from_meta(meta, entry, source)


def _prepare(
    model: onnx.ModelProto, options: PrepareOptions, where: str
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    steps: list[str] = []
    warnings: list[str] = []
    source_opset = onnx_opset(model)

    moved = constants_to_initializers(model)
    if moved:
        steps.append(f"moved {moved} Constant-node tensors into initializers")
    dropped = drop_initializer_inputs(model)
    if dropped:
        steps.append(f"removed {dropped} initializers listed as graph inputs")

    fix_input_shapes(model, options.input_shapes)
    if options.input_shapes:
        steps.append("fixed input shapes " + ", ".join(f"{k}={v}" for k, v in options.input_shapes.items()))
    inputs, _ = io_info(model)
    dynamic = dynamic_dims(inputs)
    if options.static_shapes and dynamic:
        listing = "; ".join(
            f"'{name}' ({', '.join('?' if d is None else str(d) for d in dims)})"
            for name, dims in dynamic.items()
        )
        example = " ".join(
            f"--input-shape {name}:{','.join(_example_dim(axis, d) for axis, d in enumerate(dims))}"
            for name, dims in dynamic.items()
        )
        raise BadInput(
            f"{where}: this backend needs static shapes; dynamic dims in {listing}. Fix them with {example}"
        )

    opset = onnx_opset(model)
    if options.min_opset and opset < options.min_opset:
        try:
            model = change_opset(model, options.min_opset)
            steps.append(f"opset {opset} -> {options.min_opset}")
        except Exception as exc:  # noqa: BLE001 - backends fall back (e.g. per-tensor Q/DQ)
            warnings.append(f"could not raise opset {opset} -> {options.min_opset}: {_first_line(exc)}")
    opset = onnx_opset(model)
    if options.max_opset and opset > options.max_opset:
        try:
            model = change_opset(model, options.max_opset)
            steps.append(f"opset {opset} -> {options.max_opset} (target maximum)")
        except Exception as exc:  # noqa: BLE001
            raise BadInput(
                f"{where}: the target accepts opset <= {options.max_opset} but converting from opset "
                f"{opset} failed: {_first_line(exc)}"
            ) from exc

    if options.simplify:
        model, note = simplify(model)
        (steps if note.startswith("simplified") else warnings).append(note)

    name_map: dict[str, str] = {}
    if options.name_pattern:
        name_map = sanitize_names(model, options.name_pattern)
        if name_map:
            steps.append(f"renamed {len(name_map)} tensors with characters the backend rejects")

    model = infer_shapes(model)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001
        raise BadInput(f"{where}: model is invalid after preparation: {_first_line(exc)}") from exc
    inputs, outputs = io_info(model)
    meta = {
        "source_opset": source_opset,
        "opset": onnx_opset(model),
        "inputs": [_info_json(i) for i in inputs],
        "outputs": [_info_json(o) for o in outputs],
        "name_map": name_map,
        "steps": steps,
        "warnings": warnings,
    }
    return model, meta


def _example_dim(axis: int, dim: int | str | None) -> str:
    """A fixed dim as it is, a dynamic batch as 1, other dynamic dims as a <placeholder> to fill in."""
    if isinstance(dim, int):
        return str(dim)
    return "1" if axis == 0 else f"<{dim or 'size'}>"


def _info_json(info: InputInfo) -> dict[str, Any]:
    return {"name": info.name, "shape": list(info.shape), "dtype": info.dtype.name}


def _info_from_json(data: Mapping[str, Any]) -> InputInfo:
    return InputInfo(data["name"], tuple(data["shape"]), np.dtype(data["dtype"]))


def _store(entry: Path, model: onnx.ModelProto, meta: dict[str, Any]) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
    try:
        large = model.ByteSize() > EXTERNAL_DATA_THRESHOLD
        onnx.save_model(
            model,
            str(tmp / "model.onnx"),
            save_as_external_data=large,
            all_tensors_to_one_file=True,
            location="model.onnx.data",
        )
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _from_meta(meta: Mapping[str, Any], entry: Path, source: Path) -> PreparedModel:
    path = entry / "model.onnx"
    if not path.exists():
        raise OSError(f"missing {path}")
    return PreparedModel(
        path=path,
        source_path=source,
        source_sha256=meta["source_sha256"],
        source_bytes=int(meta["source_bytes"]),
        source_opset=int(meta["source_opset"]),
        opset=int(meta["opset"]),
        inputs=[_info_from_json(i) for i in meta["inputs"]],
        outputs=[_info_from_json(o) for o in meta["outputs"]],
        name_map=dict(meta["name_map"]),
        steps=list(meta["steps"]),
        warnings=list(meta["warnings"]),
    )
