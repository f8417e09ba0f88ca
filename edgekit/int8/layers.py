"""`edgekit verify --per-layer`: which nodes of an ONNX artifact (ONNX Runtime INT8/FP16, TensorRT's Q/DQ
ONNX) add the most error against the FP32 source, by the source's own node names.

Every tensor the artifact and the source share (by name, through the manifest's `name_map` for tensors
ingest renamed) is exposed as an output of both models and compared on the validation set. A node's
error is the relative noise energy (||artifact - fp32||^2 / ||fp32||^2) of its output as the next
node reads it (after its Q/DQ pair when quantized); what it *adds* is that minus the worst error of its
inputs, so a layer is not blamed for the error it inherits. The INT8 search's ranking (what keeping
each node in float recovers, `sensitivity.json`) is attached when the export wrote one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgekit.calib import CalibrationReader

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
SENSITIVITY_FILE = "sensitivity.json"


def onnx_entry(artifact_dir: Path, manifest: Mapping[str, Any]) -> Path | None:
    """The artifact's ONNX file when its host runner is onnxruntime (None for IR / flatbuffers)."""
    entry = artifact_dir / str(manifest.get("entry", ""))
    return entry if entry.suffix == ".onnx" and entry.is_file() else None


def export_sensitivity(artifact_dir: Path) -> dict[str, Any] | None:
    path = artifact_dir / SENSITIVITY_FILE
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def per_layer(
    artifact: Path,
    source: Path,
    val: CalibrationReader,
    name_map: Mapping[str, str],
    reference_qdq: bool = False,
    top: int | None = None,
) -> list[dict[str, Any]]:
    """Rows {node, source_node, op_type, quantized, error, added_error, snr_db}, most added error first."""
    from edgekit.int8.names import NodeOrigins
    from edgekit.int8.ort_qdq import HOST, REFERENCE, session
    from edgekit.int8.qdq_surgery import serialize, with_outputs

    model = onnx.load(str(artifact))
    reference = onnx.load(str(source))
    to_source = dict(name_map)
    source_writer = {out: node for node in reference.graph.node for out in node.output}
    source_tensors = set(source_writer) | {i.name for i in reference.graph.input}
    seen = _seen_as_readers(model)
    # by name first (a Conv that absorbed its Relu writes the Relu's tensor), then by output tensor
    origins = NodeOrigins(model, source, to_source)
    pairs: dict[str, str] = {}  # artifact tensor as read downstream -> source tensor
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.op_type in QDQ_OPS:
            continue
        nodes.append(node)
        for tensor in [*node.input, *node.output]:
            if tensor in seen and to_source.get(tensor, tensor) in source_tensors:
                pairs[seen[tensor]] = to_source.get(tensor, tensor)
    if not pairs:
        return []
    import tempfile

    with tempfile.TemporaryDirectory(prefix="edgekit-layers-") as work:
        quantized = session(
            serialize(with_outputs(model, list(pairs)), Path(work)), REFERENCE if reference_qdq else HOST
        )
        fp32 = session(serialize(with_outputs(reference, sorted(set(pairs.values()))), Path(work)), HOST)
        errors = _errors(quantized, fp32, val, pairs)
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    rows: list[dict[str, Any]] = []
    for node in nodes:
        outs = [seen[t] for t in node.output if seen.get(t) in errors]
        if not outs:
            continue
        produced = max(errors[t] for t in outs)
        # an input is either already what readers see (a DQ output) or a float tensor seen through one
        inherited = max((errors.get(t, errors.get(seen.get(t, ""), 0.0)) for t in node.input), default=0.0)
        rows.append(
            {
                "node": node.name,
                "source_node": origins.original(node.name),
                "op_type": node.op_type,
                "quantized": any(t in dq_outputs for t in node.input),  # reads int8 (through a DQ)
                "error": _r(produced),
                "added_error": _r(max(produced - inherited, 0.0)),
                "snr_db": _r(-10 * math.log10(produced)) if produced > 0 else None,
            }
        )
    rows.sort(key=lambda r: -(r["added_error"] or 0.0))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows[:top] if top else rows


def _seen_as_readers(model: onnx.ModelProto) -> dict[str, str]:
    """Every float tensor -> the tensor its readers get (DQ(Q(t)) when quantized, else itself)."""
    from edgekit.int8.qdq_surgery import seen_as

    return seen_as(model)


def _errors(
    artifact: Any, reference: Any, val: CalibrationReader, pairs: Mapping[str, str]
) -> dict[str, float]:
    names = list(pairs)
    ref_names = sorted(set(pairs.values()))
    noise = dict.fromkeys(names, 0.0)
    energy = dict.fromkeys(names, 0.0)
    for feed in val.feeds(1):
        got = dict(zip(names, artifact.run(names, _feed_for(artifact, feed)), strict=True))
        want = dict(zip(ref_names, reference.run(ref_names, _feed_for(reference, feed)), strict=True))
        for name in names:
            r64 = np.asarray(want[pairs[name]], dtype=np.float64)
            q64 = np.asarray(got[name], dtype=np.float64)
            if q64.shape != r64.shape:
                continue
            noise[name] += float(np.sum((q64 - r64) ** 2))
            energy[name] += float(np.sum(r64**2))
    return {n: noise[n] / energy[n] for n in names if energy[n] > 0}


def _feed_for(sess: Any, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The validation feed under the session's input names, in its input dtypes (fp16-I/O artifacts)."""
    out = {}
    values = list(feed.values())
    for i, spec in enumerate(sess.get_inputs()):
        value = feed.get(spec.name, values[i] if i < len(values) else None)
        if value is None:
            continue
        dtype = np.float16 if spec.type == "tensor(float16)" else None
        out[spec.name] = value.astype(dtype) if dtype is not None else value
    return out


def _r(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.6g}")
