"""ai-edge-quantizer on onnx2tf's float TFLite model, seen from edgekit's process: recipes, the ONNX node
-> TFLite op map, mixed-scale outputs, and the sandboxed quantizer runs.

Why: onnx2tf quantizes all or nothing, with float inputs only. ai-edge-quantizer (LiteRT's quantizer)
takes the float32 file onnx2tf writes and quantizes it op by op with recipes scoped by the op's output
tensor names (a regex), so edgekit gets a per-node fallback on TFLite (int8 everywhere but the ops the
sensitivity ranking names), integer inputs kept (token ids) with the activations quantized, float outputs
where one int8 scale cannot carry an output, and weight-only INT8 / block-wise INT4.

ONNX names -> TFLite ops. onnx2tf names TFLite tensors after TF ops (`model/tf.nn.convolution_1/...`),
and after ONNX names only for some layers, so names are not enough: one sample runs through the prepared
ONNX model (every node output exposed) and through the float TFLite model (every tensor kept), and an
ONNX node maps to the op whose output holds the same values (same shape up to the channel-last
permutation, cosine >= 0.9999). A node whose value TFLite never materialises (a Conv whose Relu or Add
onnx2tf fused into it, a BatchNormalization folded away) maps to the op of the first node downstream
that does ("fused"). Nodes with no float output, or none downstream that matches, stay unmapped; the
record counts each kind.

The quantizer imports TensorFlow-side packages: it runs in the converter sandbox
(`edgekit.backends.tflite.aeq`), many builds per process with one calibration.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.tflite.plan import InputPlan
from edgekit.errors import BadInput

log = logging.getLogger(__name__)

AEQ_TIMEOUT_S = 1800
# an output whose Concat joins inputs whose ranges differ by more than this factor cannot share one
# int8 scale: at 16x the smaller quantity keeps at most 16 of 256 levels (a probability in 0..1 next to
# pixel coordinates in 0..320 keeps 0 or 1)
MIXED_SCALE_RATIO = 16.0
MATCH_COSINE = 0.9999
# ops that only move values: an output reached from a Concat through them still carries its scales
SHAPE_OPS = {"Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten"}
# what ai-edge-quantizer 0.10's default policy lets INT4 weights on: block-wise (dynamic_wi4_afp32_blockwise)
# and per channel (weightonly_wi4_afp32)
INT4_BLOCK_OPS = ("FULLY_CONNECTED", "EMBEDDING_LOOKUP")
INT4_CHANNEL_OPS = ("FULLY_CONNECTED", "BATCH_MATMUL", "EMBEDDING_LOOKUP", "CONV_2D")


def scope_regex(tensor_names: Iterable[str]) -> str:
    """ai-edge-quantizer matches a rule's regex (re.search) against an op's scope: its output tensor
    names joined by ';' with a trailing ';'. This matches exactly the ops writing these tensors."""
    names = sorted(set(tensor_names))
    return "(^|;)(" + "|".join(re.escape(n) for n in names) + ");"


def static_rules(exclude: Iterable[str] = (), float_io: bool = False) -> list[dict[str, Any]]:
    """int8 weights and activations everywhere ai-edge-quantizer can (static_wi8_ai8), but the ops
    writing the `exclude` tensors; float_io keeps the model's inputs and outputs float."""
    rules: list[dict[str, Any]] = [{"regex": ".*", "kind": "static"}]
    names = list(exclude)
    if names:
        rules.append({"regex": scope_regex(names), "kind": "none"})
    if float_io:
        rules += [
            {"regex": ".*", "op": "INPUT", "kind": "none"},
            {"regex": ".*", "op": "OUTPUT", "kind": "none"},
        ]
    return rules


def weight_rules(
    bits: int, block: int = 0, symmetric: bool = True, at_int8: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Weight-only rules: INT8 weights (per channel) on every op that takes weights; for INT4 on top of
    that what ai-edge-quantizer 0.10's policy allows: block-wise INT4 only symmetric and only as
    LiteRT's dynamic kernels run it (FULLY_CONNECTED, EMBEDDING_LOOKUP: int4 weights, activations
    quantized on the fly), else per-channel INT4 weights dequantized to float (symmetric or not). The
    ops writing `at_int8` tensors keep INT8 weights."""
    rules: list[dict[str, Any]] = [{"regex": ".*", "kind": "weight_only", "weight_bits": 8}]
    if bits == 4 and block and symmetric:
        for op in INT4_BLOCK_OPS:
            rules.append(
                {
                    "regex": ".*",
                    "op": op,
                    "kind": "dynamic",
                    "weight_bits": 4,
                    "granularity": f"BLOCKWISE_{block}",
                    "symmetric": True,
                }
            )
    elif bits == 4:
        for op in INT4_CHANNEL_OPS:
            rules.append(
                {
                    "regex": ".*",
                    "op": op,
                    "kind": "weight_only",
                    "weight_bits": 4,
                    "granularity": "CHANNELWISE",
                    "symmetric": symmetric,
                }
            )
    names = list(at_int8)
    if names and bits != 8:
        rules.append({"regex": scope_regex(names), "kind": "weight_only", "weight_bits": 8})
    return rules


# ---- the float model's ops ---------------------------------------------------------------------------
def open_float(path: Path) -> Any:
    import warnings

    from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-untyped]

    with warnings.catch_warnings():  # "intended for debugging": here it is the point (one probe sample)
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(model_path=str(path), num_threads=1, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    return interpreter


def op_table(interpreter: Any) -> list[dict[str, Any]]:
    """The float model's ops in execution order: index, type, output tensor indices and names."""
    tensors = interpreter.get_tensor_details()
    names = {int(t["index"]): t["name"] for t in tensors}
    ops = []
    for op in interpreter._get_ops_details():  # noqa: SLF001 - the only place LiteRT exposes ops
        if op["op_name"] == "DELEGATE":
            continue
        outputs = [int(i) for i in op["outputs"] if i >= 0]
        ops.append(
            {
                "index": int(op["index"]),
                "type": op["op_name"],
                "inputs": [int(i) for i in op["inputs"] if i >= 0],
                "outputs": outputs,
                "names": [names[i] for i in outputs],
            }
        )
    return ops


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    if den == 0.0:
        return 1.0 if float(np.abs(a - b).max(initial=0.0)) == 0.0 else 0.0
    return float(np.dot(a, b) / den)


def _same_values(onnx_value: np.ndarray, tfl_value: np.ndarray) -> bool:
    if onnx_value.size != tfl_value.size or onnx_value.size == 0:
        return False
    shape, rank = list(onnx_value.shape), onnx_value.ndim
    candidates = [list(range(rank))]
    if rank >= 3:
        candidates.append([0, *range(2, rank), 1])
    for perm in candidates:
        if [shape[i] for i in perm] == list(tfl_value.shape):
            if _cosine(onnx_value.transpose(perm), tfl_value) >= MATCH_COSINE:
                return True
    return False


def tf_feed(
    feed: Mapping[str, np.ndarray], inputs: Sequence[InputPlan], interpreter: Any
) -> dict[int, np.ndarray]:
    """One prepared-layout feed -> {tflite input index: array in TF layout and the file's dtype}."""
    by_name = {re.sub(r"^serving_default_|:\d+$", "", d["name"]): d for d in interpreter.get_input_details()}
    out = {}
    for position, spec in enumerate(inputs):
        detail = by_name.get(spec.name) or interpreter.get_input_details()[position]
        x = np.asarray(feed[spec.name]).reshape(spec.shape).transpose(spec.perm)
        out[int(detail["index"])] = np.ascontiguousarray(x.astype(detail["dtype"]))
    return out


def map_nodes(
    prepared_path: Path, float_path: Path, inputs: Sequence[InputPlan], feed: Mapping[str, np.ndarray]
) -> dict[str, Any]:
    """{"nodes": {onnx node: {"ops": [op index], "how": "values" | "fused"}}, "ops": op table,
    "counts": {...}} for the prepared model and onnx2tf's float file (see the module docstring)."""
    import onnx
    import onnxruntime as ort  # type: ignore[import-untyped]

    from edgekit.int8.qdq_surgery import with_outputs

    model = onnx.load(str(prepared_path))
    graph_outputs = {o.name for o in model.graph.output}
    produced = [o for node in model.graph.node for o in node.output[:1] if o and o not in graph_outputs]
    probe = with_outputs(model, produced)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(names, {k: np.asarray(v) for k, v in feed.items()}), strict=True))

    interpreter = open_float(float_path)
    for index, array in tf_feed(feed, inputs, interpreter).items():
        interpreter.set_tensor(index, array)
    interpreter.invoke()
    ops = op_table(interpreter)
    tensor_values = {}
    for op in ops:
        for index in op["outputs"]:
            try:
                tensor_values[index] = np.asarray(interpreter.get_tensor(index))
            except ValueError:
                continue

    nodes: dict[str, dict[str, Any]] = {}
    by_output: dict[str, str] = {}
    for node in model.graph.node:
        if not node.output or not node.output[0]:
            continue
        by_output[node.output[0]] = node.name
        value = values.get(node.output[0])
        if value is None or value.dtype.kind != "f":
            continue
        for op in ops:
            if any(_same_values(value, tensor_values[i]) for i in op["outputs"] if i in tensor_values):
                nodes[node.name] = {"ops": [op["index"]], "how": "values", "op_type": node.op_type}
                break
    # fused: the first matched node downstream (a single chain of first consumers)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in model.graph.node:
        if node.name in nodes or not node.output or node.op_type in ("Constant", "Shape"):
            continue
        current, hops = node, 0
        while hops < 4:
            following = consumers.get(current.output[0], [])
            if len(following) != 1:
                break
            current, hops = following[0], hops + 1
            if current.name in nodes and nodes[current.name]["how"] == "values":
                nodes[node.name] = {
                    "ops": nodes[current.name]["ops"],
                    "how": "fused",
                    "op_type": node.op_type,
                }
                break
    counted = [n for n in model.graph.node if n.op_type not in ("Constant",)]
    counts = {
        "onnx_nodes": len(counted),
        "by_values": sum(1 for v in nodes.values() if v["how"] == "values"),
        "fused": sum(1 for v in nodes.values() if v["how"] == "fused"),
    }
    counts["unmapped"] = counts["onnx_nodes"] - counts["by_values"] - counts["fused"]
    return {"nodes": nodes, "ops": ops, "counts": counts}


def ops_for(mapping: Mapping[str, Any], onnx_nodes: Iterable[str]) -> list[int]:
    found: list[int] = []
    for name in onnx_nodes:
        for index in mapping["nodes"].get(name, {}).get("ops", []):
            if index not in found:
                found.append(index)
    return found


def downstream(mapping: Mapping[str, Any], op_indices: Iterable[int]) -> list[int]:
    """These ops and every op fed by them, transitively: what must stay float for an output to be
    float (onnx2tf adds ops of its own after a head's Concat, e.g. the Transpose back to NCHW)."""
    chosen = set(op_indices)
    made = {t for op in mapping["ops"] if op["index"] in chosen for t in op["outputs"]}
    for op in mapping["ops"]:  # execution order: producers come first
        if op["index"] not in chosen and made.intersection(op["inputs"]):
            chosen.add(op["index"])
            made.update(op["outputs"])
    return [op["index"] for op in mapping["ops"] if op["index"] in chosen]


def tensor_names(mapping: Mapping[str, Any], op_indices: Iterable[int]) -> list[str]:
    by_index = {op["index"]: op for op in mapping["ops"]}
    return [name for i in op_indices for name in by_index[i]["names"]]


def onnx_names_of(mapping: Mapping[str, Any], op_index: int) -> list[str]:
    return sorted(n for n, v in mapping["nodes"].items() if op_index in v["ops"])


# ---- outputs that one int8 scale cannot carry ------------------------------------------------------
def mixed_scale_outputs(
    prepared_path: Path, feeds: Sequence[Mapping[str, np.ndarray]]
) -> list[dict[str, Any]]:
    """Outputs produced by a Concat (through shape-only ops) of inputs whose value ranges differ by
    more than MIXED_SCALE_RATIO on these samples (a YOLO head [1, 4 + C, A]: pixels and probabilities):
    [{"output", "concat", "ranges": [absmax per input], "ratio", "nodes": the Concat and what follows}]."""
    import onnx
    import onnxruntime as ort  # type: ignore[import-untyped]

    from edgekit.int8.qdq_surgery import with_outputs

    model = onnx.load(str(prepared_path))
    writers = {o: n for n in model.graph.node for o in n.output}
    found = []
    for output in model.graph.output:
        path, node = [], writers.get(output.name)
        while node is not None and node.op_type in SHAPE_OPS:
            path.append(node.name)
            node = writers.get(node.input[0])
        if node is None or node.op_type != "Concat" or len(node.input) < 2:
            continue
        found.append((output.name, node, [node.name, *path]))
    if not found:
        return []
    wanted = sorted({i for _, concat, _ in found for i in concat.input if i in writers})
    session = ort.InferenceSession(
        with_outputs(model, wanted).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    absmax = dict.fromkeys(wanted, 0.0)
    for feed in feeds:
        result = session.run(wanted, {k: np.asarray(v) for k, v in feed.items()})
        for name, value in zip(wanted, result, strict=True):
            absmax[name] = max(absmax[name], float(np.abs(value).max(initial=0.0)))
    flagged = []
    for output, concat, nodes in found:
        ranges = [absmax.get(i, 0.0) for i in concat.input]
        positive = [r for r in ranges if r > 0]
        if len(positive) < 2:
            continue
        ratio = max(positive) / min(positive)
        if ratio > MIXED_SCALE_RATIO:
            flagged.append(
                {
                    "output": output,
                    "concat": concat.name,
                    "ranges": [round(r, 4) for r in ranges],
                    "ratio": round(ratio, 1),
                    "nodes": nodes,
                    "inputs": list(concat.input),
                }
            )
    return flagged


# ---- running the quantizer --------------------------------------------------------------------------
def calibration_files(work: Path, arrays: Mapping[str, np.ndarray], float_path: Path) -> dict[str, str]:
    """The calibration set (TF layout, by prepared input name) as npy files keyed by the float
    model's input tensor names (ai-edge-quantizer's signature names), in the file's dtypes."""
    from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-untyped]

    details = Interpreter(model_path=str(float_path)).get_input_details()
    files = {}
    for position, detail in enumerate(details):
        bare = re.sub(r"^serving_default_|:\d+$", "", detail["name"])
        array = arrays.get(bare)
        if array is None:
            array = list(arrays.values())[position]
        path = work / f"aeq_calib_{position}.npy"
        np.save(path, np.ascontiguousarray(array.astype(detail["dtype"])))
        files[detail["name"]] = str(path)
    return files


def quantize(
    box: Any,
    float_path: Path,
    builds: Sequence[tuple[Path, list[dict[str, Any]]]],
    calibration: Mapping[str, str] | None,
    log_path: Path,
    model_name: str,
    threads: int = 1,
) -> list[dict[str, Any]]:
    """Run ai-edge-quantizer in the sandbox once for several builds (output path, rules); return each
    build's report (its resolved recipe). A failure is one line (BadInput: the model is not quantizable
    this way), the whole log kept."""
    from edgekit.sandbox import keep_log, last_error_line

    jobs = [
        {"output": str(out), "rules": rules, "report": str(out.with_suffix(".recipe.json"))}
        for out, rules in builds
    ]
    run = box.call(
        "edgekit.backends.tflite.aeq:quantize",
        {
            "float_model": str(float_path),
            "builds": jobs,
            "calibration": dict(calibration or {}),
            "threads": threads,
        },
        log_path,
        timeout=AEQ_TIMEOUT_S,
    )
    if not run.ok:
        kept = keep_log(log_path, model_name, "tflite")
        reason = last_error_line(log_path) or f"exit status {run.returncode}"
        raise BadInput(f"ai-edge-quantizer cannot quantize {model_name}: {reason} (full log: {kept})")
    return [json.loads(Path(job["report"]).read_text()) for job in jobs]


def weight_dtypes(path: Path) -> dict[str, int]:
    """How many constant weight tensors of each dtype the file holds (INT4 / INT8 / FLOAT32 ...)."""
    from ai_edge_litert import schema_py_generated as schema  # type: ignore[import-untyped]
    from ai_edge_litert.tools import flatbuffer_utils  # type: ignore[import-untyped]

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(path.read_bytes()))
    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    counts: dict[str, int] = {}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
            has_data = buffer is not None and (
                (buffer.data is not None and len(buffer.data) > 0) or getattr(buffer, "size", 0)
            )
            if has_data and len(tensor.shape if tensor.shape is not None else []) >= 2:
                kind = names.get(tensor.type, str(tensor.type))
                counts[kind] = counts.get(kind, 0) + 1
    return counts
