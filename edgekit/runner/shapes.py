"""Shapes a benchmark times, stated never guessed, and the values it feeds integer inputs (issue 17).

`bench --input-shape NAME:D0,D1,..` may be given more than once for a name: each occurrence is one
shape set (e.g. input_ids:1,16 and input_ids:1,128 time sequence 16 and 128). Inputs not named take
the sizes their symbolic dims got from a named input (attention_mask [batch, sequence] follows
input_ids); a dynamic dimension still unknown is an error that names it, except a leading batch
dimension, which is 1 and says so in the record.

Integer inputs get values their model can take: token ids in [0, vocab) with vocab read from the
embedding table the ids index (a Gather on the model's initializer), attention masks all 1, token
type ids 0, position ids 0..T-1; any other integer input 0. Never random negatives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgekit.errors import BadInput

ShapeSet = dict[str, list[int]]


def parse_shape_sets(specs: Sequence[str]) -> list[ShapeSet]:
    """`["input_ids:1,16", "input_ids:1,128", "pixel:1,3,224,224"]` -> one dict per shape set. A name
    given k times makes k sets; names given once apply to every set; two names given a different
    number of times > 1 are BadInput."""
    from edgekit.ingest import parse_input_shapes

    by_name: dict[str, list[list[int]]] = {}
    for spec in specs:
        for name, dims in parse_input_shapes([spec]).items():
            by_name.setdefault(name, []).append(list(dims))
    counts = {len(v) for v in by_name.values() if len(v) > 1}
    if len(counts) > 1:
        raise BadInput(
            "--input-shape: names given several times must be given the same number of times "
            + ", ".join(f"{n} x{len(v)}" for n, v in by_name.items())
        )
    count = counts.pop() if counts else 1
    return [{n: (v[i] if len(v) > 1 else v[0]) for n, v in by_name.items()} for i in range(count)]


def resolve(inputs: Sequence[Mapping[str, Any]], given: Mapping[str, Sequence[int]]) -> ShapeSet:
    """Concrete shapes of every artifact input (manifest specs), keyed by source name."""
    names = {str(s.get("source_name", s["name"])): s for s in inputs}
    for name in given:
        if name not in names and name not in {s["name"] for s in inputs}:
            from edgekit.errors import suggest

            raise BadInput(f"--input-shape {name}: not an input of the artifact.{suggest(name, list(names))}")
    bound: dict[str, int] = {}
    for spec in inputs:
        shape = given.get(str(spec.get("source_name", spec["name"]))) or given.get(spec["name"])
        if shape is None:
            continue
        dims = list(spec["shape"])
        if len(shape) != len(dims):
            raise BadInput(
                f"--input-shape {spec['name']}: {len(shape)} dims given, the input has {len(dims)}"
            )
        for want, have in zip(dims, shape, strict=True):
            if isinstance(want, int) and want > 0 and want != have:
                raise BadInput(
                    f"--input-shape {spec['name']}: {list(shape)} does not fit its fixed shape {dims}"
                )
            if isinstance(want, str) and want not in ("", "?"):
                bound[want] = int(have)
    out: ShapeSet = {}
    for spec in inputs:
        source = str(spec.get("source_name", spec["name"]))
        shape = given.get(source) or given.get(spec["name"])
        if shape is not None:
            out[source] = [int(d) for d in shape]
            continue
        dims: list[int] = []
        for axis, dim in enumerate(spec["shape"]):
            if isinstance(dim, int) and dim > 0:
                dims.append(dim)
            elif isinstance(dim, str) and dim in bound:
                dims.append(bound[dim])
            elif axis == 0:
                dims.append(1)  # the batch: 1 unless stated (the record says so)
            else:
                raise BadInput(
                    f"input '{source}' dimension {axis} ('{dim}') is dynamic and no shape was given: "
                    f"state it, e.g. --input-shape {source}:{','.join(str(d if isinstance(d, int) and d > 0 else (1 if i == 0 else 128)) for i, d in enumerate(spec['shape']))}"
                )
        out[source] = dims
    return out


def label(shapes: Mapping[str, Sequence[int]]) -> str:
    return "; ".join(f"{n}:{'x'.join(str(d) for d in dims)}" for n, dims in shapes.items())


def sequence_length(
    shapes: Mapping[str, Sequence[int]], ranges: Mapping[str, Mapping[str, Any]]
) -> int | None:
    """The sequence length a shape set times: the last dim of the token ids (None: not a token model)."""
    for name, rng in ranges.items():
        if rng.get("kind") == "ids" and name in shapes and len(shapes[name]) >= 2:
            return int(shapes[name][-1])
    return None


# ---- integer inputs ---------------------------------------------------------------------------------
_THROUGH = {"Cast", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity"}


def input_ranges(model: Any) -> dict[str, dict[str, Any]]:
    """{integer input name: {"kind": "ids", "high": vocab} | {"kind": "ones"} | {"kind": "zeros"} |
    {"kind": "positions"}} of an ONNX model (see the module docstring)."""
    from onnx import TensorProto

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    integer = (TensorProto.INT64, TensorProto.INT32, TensorProto.INT16, TensorProto.INT8, TensorProto.UINT8)
    out: dict[str, dict[str, Any]] = {}
    for value in graph.input:
        if value.name in inits or value.type.tensor_type.elem_type not in integer:
            continue
        lowered = value.name.lower()
        if "mask" in lowered:
            out[value.name] = {"kind": "ones"}
            continue
        if "token_type" in lowered or "segment" in lowered:
            out[value.name] = {"kind": "zeros"}
            continue
        if "position" in lowered:
            out[value.name] = {"kind": "positions"}
            continue
        vocab = _gather_rows(value.name, consumers, inits)
        out[value.name] = {"kind": "ids", "high": vocab} if vocab else {"kind": "zeros"}
    return out


def _gather_rows(name: str, consumers: Mapping[str, list[Any]], inits: Mapping[str, Any]) -> int | None:
    frontier, seen = [name], set()
    while frontier:
        tensor = frontier.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        for node in consumers.get(tensor, []):
            if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == tensor:
                table = inits.get(node.input[0])
                if table is not None and len(table.dims) >= 1:
                    return int(table.dims[0])
            if node.op_type in _THROUGH:
                frontier.extend(node.output)
    return None


def artifact_ranges(manifest: Mapping[str, Any], artifact_dir: str | Path) -> dict[str, dict[str, Any]]:
    """`input_ranges` of an artifact's source ONNX model (or its ONNX entry), keyed by the artifact's
    input names; {} when neither can be read or no input is an integer."""
    import onnx

    candidates = []
    source = manifest.get("source")
    if isinstance(source, Mapping) and source.get("path"):
        candidates.append(Path(str(source["path"])))
    entry = Path(artifact_dir) / str(manifest.get("entry", ""))
    if entry.suffix == ".onnx":
        candidates.append(entry)
    for path in candidates:
        if not path.is_file():
            continue
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception:  # noqa: BLE001 - ranges are a courtesy; the agent falls back to zeros
            continue
        ranges = input_ranges(model)
        by_source = {str(s.get("source_name", s["name"])): s["name"] for s in manifest.get("inputs", [])}
        return {by_source.get(k, k): v for k, v in ranges.items()}
    return {}
