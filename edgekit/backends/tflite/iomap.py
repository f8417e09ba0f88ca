"""Which tflite tensor is which ONNX input/output, in which layout and quantization.

onnx2tf keeps input names (int8 files prefix them `serving_default_`), makes 3/4/5-D tensors
channel-last and may reorder outputs; the map recorded in the manifest (`details.io_map`) lets every
runner feed and read the artifact with the source model's names and layout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import ExportJob, TensorSpec
from edgekit.backends.tflite.plan import LAYOUTS, InputPlan
from edgekit.errors import BadInput, InternalError
from edgekit.fidelity import output_metrics


def open_interpreter(path: Path, threads: int) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType  # type: ignore[import-untyped]

    try:
        interpreter = Interpreter(
            model_path=str(path),
            num_threads=threads,
            # AUTO = builtin kernels with LiteRT's default delegate, XNNPACK, applied
            experimental_op_resolver_type=OpResolverType.AUTO,
        )
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        raise BadInput(
            f"{path.name}: LiteRT cannot load the model: {str(exc).strip().splitlines()[0]}"
        ) from exc
    return interpreter


def _bare_name(name: str) -> str:
    name = name.removeprefix("serving_default_")
    return re.sub(r":\d+$", "", name)


def _output_order(interpreter: Any, count: int) -> tuple[list[int], str]:
    """Tensor indices of the tflite outputs in ONNX output order, and how that was decided."""
    details = interpreter.get_output_details()
    signatures = interpreter._get_full_signature_list()  # noqa: SLF001 - the only place it is exposed
    if len(signatures) == 1:
        outputs = next(iter(signatures.values())).get("outputs", {})
        keys = [f"output_{i}" for i in range(count)]
        if set(keys) == set(outputs):
            return [int(outputs[k]) for k in keys], "signature output_<i> (onnx2tf names them in ONNX order)"
    names = [d["name"] for d in details]
    identity = [f"Identity_{i}" if i else "Identity" for i in range(count)]
    if set(identity) == set(names):
        by_name = {d["name"]: d["index"] for d in details}
        return [int(by_name[n]) for n in identity], "Identity_<i> tensor names"
    return [int(d["index"]) for d in details], "flatbuffer output order"


def _compatible(tf_shape: Sequence[int], onnx_shape: Sequence[int]) -> list[list[int]]:
    """Permutations p with onnx_shape[p] == tf_shape, among identity and channel-last."""
    rank = len(onnx_shape)
    candidates = [list(range(rank))]
    if rank in LAYOUTS:
        candidates.append([0, *range(2, rank), 1])
    return [p for p in candidates if len(tf_shape) == rank and [onnx_shape[i] for i in p] == list(tf_shape)]


def static_shape(shape: Sequence[int | str | None]) -> list[int]:
    """A prepared model's shape: static for this backend (ingest fixes every dimension)."""
    dims = [d for d in shape if isinstance(d, int)]
    if len(dims) != len(shape):
        raise InternalError(f"the TFLite backend needs static shapes, got {list(shape)}")
    return dims


def probe_feed(job: ExportJob) -> dict[str, np.ndarray]:
    """One sample in the prepared model's layout: from the calibration set, else seeded noise."""
    feed = {}
    rng = np.random.default_rng(0)
    for info in job.prepared.inputs:
        shape = static_shape(info.shape)
        if job.calib is not None and info.name in job.calib.arrays:
            arr = np.asarray(job.calib.arrays[info.name])
            sample = arr[:1] if arr.ndim == len(shape) else arr[0]
            feed[info.name] = np.ascontiguousarray(sample.reshape(shape).astype(info.dtype))
        else:
            feed[info.name] = rng.random(shape, dtype=np.float32).astype(info.dtype)
    return feed


def map_io(path: Path, inputs: Sequence[InputPlan], job: ExportJob, threads: int) -> dict[str, Any]:
    """Match tflite inputs/outputs to the prepared ONNX ones: inputs by name (onnx2tf keeps them,
    int8 files prefix `serving_default_`), outputs by the signature's `output_<i>` keys (else the
    Identity names, else flatbuffer order), checked against the shapes; where a tensor's shape fits
    both its ONNX layout and the channel-last one (e.g. 1x4x4x4), or the shapes do not fit the order,
    one sample run through ONNX Runtime and LiteRT decides (highest cosine)."""
    interpreter = open_interpreter(path, threads)
    in_details = interpreter.get_input_details()
    by_bare = {_bare_name(d["name"]): d for d in in_details}
    entries_in = []
    for position, spec in enumerate(inputs):
        detail = by_bare.get(spec.name)
        if detail is None and len(in_details) == len(inputs):
            detail = in_details[position]
        if detail is None:
            raise InternalError(f"cannot find ONNX input '{spec.name}' among the tflite inputs")
        perms = _compatible([int(d) for d in detail["shape"]], spec.shape)
        if not perms:
            raise InternalError(
                f"tflite input '{detail['name']}' has shape {list(detail['shape'])}, which does not "
                f"match ONNX input '{spec.name}' {spec.shape} in any layout"
            )
        perm = spec.perm if spec.perm in perms else perms[0]
        entry = io_entry(spec.name, detail, perm)
        if spec.channels_last:
            entry["layout"] = "NHWC"  # the source model's own layout, kept as it is
        entries_in.append(entry)

    feed = probe_feed(job)
    reference = _onnx_outputs(job.prepared.path, feed)
    raw = _run_raw(interpreter, entries_in, feed)
    order, how = _output_order(interpreter, len(job.prepared.outputs))
    details_by_index = {int(d["index"]): d for d in interpreter.get_output_details()}
    entries_out = []
    used: set[int] = set()
    for position, info in enumerate(job.prepared.outputs):
        onnx_shape = static_shape(info.shape)
        want = reference[info.name]
        candidates = []
        preferred = order[position] if position < len(order) else None
        for index, detail in details_by_index.items():
            if index in used:
                continue
            for perm in _compatible([int(d) for d in detail["shape"]], onnx_shape):
                got = raw[index].transpose(np.argsort(perm))
                candidates.append(
                    (output_metrics(info.name, want, got).cosine, index == preferred, index, perm)
                )
        if not candidates:
            raise InternalError(f"no tflite output matches ONNX output '{info.name}' {onnx_shape}")
        # the order from the signature wins unless the numbers clearly say otherwise
        candidates.sort(key=lambda c: (round(c[0], 3), c[1]), reverse=True)
        cosine, _, index, perm = candidates[0]
        used.add(index)
        entry = io_entry(info.name, details_by_index[index], perm)
        entry["probe_cosine"] = round(cosine, 5)
        entries_out.append(entry)
    return {"inputs": entries_in, "outputs": entries_out, "output_order": how}


def io_entry(prepared_name: str, detail: Mapping[str, Any], perm: list[int]) -> dict[str, Any]:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    dtype = np.dtype(detail["dtype"]).name
    return {
        "prepared_name": prepared_name,
        "tflite_name": detail["name"],
        "shape": [int(d) for d in detail["shape"]],
        "dtype": dtype,
        "perm": perm,  # tflite tensor = onnx tensor.transpose(perm)
        "quant": {"scale": float(scale), "zero_point": int(zero_point)}
        if dtype in ("int8", "uint8", "int16") and scale
        else None,
    }


def _onnx_outputs(path: Path, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    from edgekit.onnx_run import cpu_session, run_each

    return next(run_each(cpu_session(path), [feed]))


def quantize(x: np.ndarray, entry: Mapping[str, Any]) -> np.ndarray:
    quant = entry.get("quant")
    dtype = np.dtype(entry["dtype"])
    if quant is None or dtype.kind == "f":
        return x.astype(dtype)
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float32) / quant["scale"]) + quant["zero_point"]
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(x: np.ndarray, entry: Mapping[str, Any]) -> np.ndarray:
    quant = entry.get("quant")
    if quant is None:
        return x.astype(np.float32)
    return ((x.astype(np.float32) - quant["zero_point"]) * quant["scale"]).astype(np.float32)


def _run_raw(interpreter: Any, entries: Sequence[Mapping[str, Any]], feed: Mapping[str, np.ndarray]) -> dict:
    """Feed (prepared names, ONNX layout) -> {output tensor index: dequantized array, tflite layout}."""
    index_by_name = {d["name"]: d["index"] for d in interpreter.get_input_details()}
    for entry in entries:
        x = np.asarray(feed[entry["prepared_name"]]).transpose(entry["perm"])
        interpreter.set_tensor(index_by_name[entry["tflite_name"]], np.ascontiguousarray(quantize(x, entry)))
    interpreter.invoke()
    out = {}
    for detail in interpreter.get_output_details():
        entry = io_entry("", detail, [])
        out[int(detail["index"])] = dequantize(interpreter.get_tensor(detail["index"]), entry)
    return out


def specs(io_map: Mapping[str, Any], prepared: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    def spec(entry: Mapping[str, Any]) -> TensorSpec:
        rank = len(entry["shape"])
        channel_last = rank in LAYOUTS and entry["perm"] != list(range(rank))
        layout = LAYOUTS[rank][1 if channel_last else 0] if rank in LAYOUTS else ""
        layout = entry.get("layout", layout)
        if np.dtype(entry["dtype"]).kind in "iub" and entry["quant"] is None:
            layout = ""  # token ids, masks: no image layout
        return TensorSpec.build(
            entry["tflite_name"],
            entry["shape"],
            entry["dtype"],
            source_name=prepared.source_name(entry["prepared_name"]),
            layout=layout,
            quant=entry["quant"],
        )

    return [spec(e) for e in io_map["inputs"]], [spec(e) for e in io_map["outputs"]]
