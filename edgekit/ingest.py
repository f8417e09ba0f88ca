"""ONNX ingest: prepare a model for a backend; the prepared model is cached by content hash.

Every later step reads the *prepared* model, never the user's file directly. Preparing means:
load (external data too) and check; move weights held in Constant nodes into initializers and drop
initializers that old exporters also list as graph inputs (raising the IR version that then needs);
fix dynamic dims from `--input-shape`; upgrade models from old exporters (below opset 11, see
`edgekit.opset`); raise the opset where quantization needs it (per-channel Q/DQ needs 13) or lower it
to a target's maximum; fold constants with onnxslim when installed; rename tensors whose names a
backend rejects, keeping a map back to the original names; infer shapes. The result is stored in the
content cache (`edgekit.cache`) keyed by the source's sha256 plus the options, so the second export of
a model is instant.

The graph utilities (`edgekit.graph`) and the content cache (`edgekit.cache`) used to live here; their
names are re-exported below for the code that imports them from `edgekit.ingest`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgekit import __version__
from edgekit.cache import CACHE_ENV, ContentCache, cache_root, digest
from edgekit.calib import InputInfo
from edgekit.digest import file_sha256
from edgekit.errors import BadInput
from edgekit.graph import (
    EXTERNAL_DATA_THRESHOLD,
    all_graphs,
    constants_to_initializers,
    drop_initializer_inputs,
    dynamic_dims,
    first_line,
    fix_input_shapes,
    infer_shapes,
    io_info,
    load_model,
    model_bytes,
    model_files,
    model_sha256,
    onnx_opset,
    sanitize_names,
    subgraph_inputs,
    tensor_names,
    toposort,
)
from edgekit.opset import OpsetConversionError, convert_opset, settle_ir_version, upgrade_legacy

__all__ = [  # the prepare pipeline, and the graph/cache names importers still take from here
    "CACHE_ENV",
    "EXTERNAL_DATA_THRESHOLD",
    "PrepareOptions",
    "PreparedModel",
    "all_graphs",
    "cache_root",
    "change_opset",
    "constants_to_initializers",
    "drop_initializer_inputs",
    "dynamic_dims",
    "file_sha256",
    "fix_input_shapes",
    "infer_shapes",
    "io_info",
    "load_model",
    "model_bytes",
    "model_files",
    "model_sha256",
    "onnx_opset",
    "parse_input_shapes",
    "prepare",
    "sanitize_names",
    "simplify",
    "subgraph_inputs",
    "tensor_names",
    "toposort",
]

log = logging.getLogger(__name__)

CACHE_KIND = "prepared"
PREPARE_FORMAT = 2  # bump when preparation changes what it writes: older cache entries are not reused


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


def change_opset(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """The model at opset `target` (see `edgekit.opset.convert_opset`)."""
    return convert_opset(model, target)


def simplify(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """Fold constants with onnxslim when it is installed. Returns (model, note)."""
    try:
        import onnxslim  # type: ignore[import-untyped]
    except ImportError:
        return model, "not simplified: onnxslim not installed (pip install 'edgekit[slim]')"
    try:
        slimmed = onnxslim.slim(model)
        if slimmed is None:
            return model, "not simplified: onnxslim returned nothing"
        onnx.checker.check_model(slimmed)
        return slimmed, f"simplified with onnxslim {getattr(onnxslim, '__version__', '')}".strip()
    except Exception as exc:  # noqa: BLE001 - fall back to the unsimplified model
        return model, f"not simplified: onnxslim failed ({first_line(exc)})"


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


def prepare(model_path: str | Path, options: PrepareOptions | None = None) -> PreparedModel:
    """Prepare `model_path` for a backend (see module docstring); cached by content + options."""
    options = options or PrepareOptions()
    source = Path(model_path).expanduser().resolve() if Path(model_path).exists() else Path(model_path)
    if not source.is_file():
        load_model(source)  # raises the right one-line error
    sha = model_sha256(source)
    cache = ContentCache(CACHE_KIND)
    key = digest(f"{sha}|{options.key()}|{__version__}|prepare-{PREPARE_FORMAT}")
    found = cache.lookup(key)
    if found is not None:
        try:
            return _from_meta(found[1], found[0], source)
        except (KeyError, ValueError, TypeError, OSError) as exc:
            log.debug("ignoring broken cache entry %s: %s", found[0], exc)
    prepared_model, meta = _prepare(load_model(source), options, str(source))
    meta.update(source_sha256=sha, source_bytes=model_bytes(source))
    with cache.store(key, meta) as tmp:
        save_model(prepared_model, tmp / "model.onnx")
    return _from_meta(meta, cache.path(key), source)


def _prepare(
    model: onnx.ModelProto, options: PrepareOptions, where: str
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    steps: list[str] = []
    warnings: list[str] = []
    source_opset = onnx_opset(model)
    source_ir = model.ir_version

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

    upgrade = upgrade_legacy(model, options.max_opset)
    model = upgrade.model
    steps.extend([upgrade.step] if upgrade.step else [])
    warnings.extend([upgrade.warning] if upgrade.warning else [])
    opset = onnx_opset(model)
    if options.min_opset and opset < options.min_opset:
        try:
            model = convert_opset(model, options.min_opset)
            steps.append(f"opset {opset} -> {options.min_opset}")
        except OpsetConversionError as exc:  # backends fall back (e.g. per-tensor Q/DQ)
            warnings.append(f"could not raise opset {opset} -> {options.min_opset}: {exc}")
    opset = onnx_opset(model)
    if options.max_opset and opset > options.max_opset:
        try:
            model = convert_opset(model, options.max_opset)
            steps.append(f"opset {opset} -> {options.max_opset} (target maximum)")
        except OpsetConversionError as exc:
            raise BadInput(f"{where}: {_lowering_advice(exc, options.max_opset)}") from exc

    if options.simplify:
        model, note = simplify(model)
        (steps if note.startswith("simplified") else warnings).append(note)

    name_map: dict[str, str] = {}
    if options.name_pattern:
        name_map = sanitize_names(model, options.name_pattern)
        if name_map:
            steps.append(f"renamed {len(name_map)} tensors with characters the backend rejects")

    model = infer_shapes(model)
    settle_ir_version(model)
    if model.ir_version != source_ir:
        steps.append(f"IR version {source_ir} -> {model.ir_version}")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001
        raise BadInput(f"{where}: model is invalid after preparation: {first_line(exc)}") from exc
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


def _lowering_advice(exc: OpsetConversionError, max_opset: int) -> str:
    """One line: what blocks lowering the opset to the target's maximum, and what the user can do."""
    exporter = f"e.g. torch.onnx.export(..., opset_version={max_opset})"
    if exc.op and "no equivalent" in exc.detail:
        exporter += f", which writes {exc.op} with older ops"
    return (
        f"the target accepts opset <= {max_opset} but the model is opset {exc.source}, and {exc.detail}. "
        f"Re-export the model at opset {max_opset} ({exporter}) or choose a target that accepts opset "
        f"{exc.source}"
    )


def _example_dim(axis: int, dim: int | str | None) -> str:
    """A fixed dim as it is, a dynamic batch as 1, other dynamic dims as a <placeholder> to fill in."""
    if isinstance(dim, int):
        return str(dim)
    return "1" if axis == 0 else f"<{dim or 'size'}>"


def _info_json(info: InputInfo) -> dict[str, Any]:
    return {"name": info.name, "shape": list(info.shape), "dtype": info.dtype.name}


def _info_from_json(data: Mapping[str, Any]) -> InputInfo:
    return InputInfo(data["name"], tuple(data["shape"]), np.dtype(data["dtype"]))


def save_model(model: onnx.ModelProto, path: Path) -> None:
    """Save an ONNX model, its weights in one `<name>.data` file beside it when it is too large for
    one protobuf."""
    large = model.ByteSize() > EXTERNAL_DATA_THRESHOLD
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=large,
        all_tensors_to_one_file=True,
        location=f"{path.name}.data",
    )


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
