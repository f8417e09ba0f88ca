"""Weight-only INT4 / INT8 for OpenVINO: `nncf.compress_weights` on the converted model.

INT4 (INT4_ASYM, or INT4_SYM with --int4-symmetric) with the group size and ratio asked for, INT8_ASYM
backup for the rest (NNCF keeps embeddings and the last layer at the backup precision, as it does for
language models); with a calibration set NNCF ranks layers by activation-aware sensitivity and runs AWQ
and scale estimation. The gate and search: each candidate is scored against FP32 on the held-out
samples (or --val); when the asked ratio fails, layers are ranked as for onnxruntime (what raising each
to INT8 recovers) and the fewest top-ranked ones are compressed to INT8 first, the rest to INT4 (two NNCF
passes, each ignoring the other's layers), until the gate holds. Which layer ended at INT4/INT8/float is read back from the
compressed model's weight constants, by the ONNX node name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.errors import NotApplicable

if TYPE_CHECKING:
    from edgekit.backends.base import ExportJob

log = logging.getLogger(__name__)

_PASS_THROUGH = {"Convert", "Subtract", "Multiply", "Reshape", "Transpose"}


def _weight_type(node: Any) -> str | None:
    """Element type of the constant a weight input comes from (through dequantization ops)."""
    seen = 0
    while node is not None and seen < 8:
        kind = node.get_type_name()
        if kind == "Constant":
            return str(node.get_element_type().get_type_name())
        if kind not in _PASS_THROUGH:
            return None
        node = node.input_value(0).get_node()
        seen += 1
    return None


_LEVEL = {"u4": "int4", "i4": "int4", "u8": "int8", "i8": "int8", "f32": "float", "f16": "float"}


def layer_levels(ov_model: Any, onnx_names: dict[str, str]) -> dict[str, str]:
    """{ONNX MatMul/Gemm node name: int4 | int8 | float} of a compressed OpenVINO model. `onnx_names`
    maps each layer's output tensor name to its node name (OpenVINO keeps tensor names)."""
    levels: dict[str, str] = {}
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        names: set[str] = set(op.output(0).get_names())
        names.add(op.get_friendly_name())
        node = next((onnx_names[n] for n in names if n in onnx_names), None)
        if node is None:
            continue
        kind = _weight_type(op.input_value(1).get_node())
        if kind is not None:
            levels[node] = _LEVEL.get(kind, kind)
    return levels


def _score(ov_model: Any, data: Any, gates: Any) -> Any:
    import openvino as ov

    from edgekit.int8.scoring import score, stack

    # compiled as the host runner compiles the artifact (edgekit.backends.ov.runtime.compile_ir: no
    # precision hint for compressed weights), so the search sees the numbers verify will see: the CPU
    # plugin's defaults for compressed MatMuls (e.g. dynamic activation quantization) included
    compiled = ov.Core().compile_model(ov_model, "CPU", {})
    names = list(data.reference)
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in data.feeds:
        result = compiled(dict(feed))
        for name in names:
            chunks[name].append(np.asarray(result[compiled.output(name)]))
    return score({n: stack(c, data.batched) for n, c in chunks.items()}, data, gates)


def compress(
    convert: Callable[[], Any], job: ExportJob, level: str, progress: Callable[[str], None] = lambda _: None
) -> tuple[Any, dict[str, Any]]:
    """(compressed OpenVINO model, manifest details). `convert` gives a fresh converted model (NNCF
    changes the one it compresses)."""
    import nncf

    from edgekit.int4.graph import weight_layers

    opts = job.options
    model = job.prepared.load()
    layers = weight_layers(model)
    if not layers:
        raise NotApplicable(f"--{level}: the model has no MatMul/Gemm with a constant weight to quantize")
    by_output = {n.output[0]: n.name for n in model.graph.node if n.name in {layer.node for layer in layers}}
    data = None
    feeds: list[dict[str, np.ndarray]] = []
    if job.calib is not None:
        from edgekit.int8.search_inputs import job_data

        jd = job_data(job, opts.threads)
        data, feeds = jd.data, [dict(f) for f in jd.calib_feeds]
    gates = job.gates if job.gates is not None else job.target.fidelity
    symmetric = bool(opts.int4_symmetric)
    if level == "int4":
        mode = nncf.CompressWeightsMode.INT4_SYM if symmetric else nncf.CompressWeightsMode.INT4_ASYM
    else:
        mode = nncf.CompressWeightsMode.INT8_SYM if symmetric else nncf.CompressWeightsMode.INT8_ASYM
    ratio = float(opts.int4_ratio) if level == "int4" else 1.0
    group = int(opts.int4_group_size)
    data_aware = level == "int4" and bool(feeds)

    def build(r: float, int8_layers: list[str] | None = None) -> Any:
        from edgekit.backends.ov.int8 import nncf_quietly  # NNCF's tables and bars off stdout (--json)

        kwargs: dict[str, Any] = {"mode": mode}
        if level == "int4":
            kwargs.update(ratio=r, group_size=group, backup_mode=nncf.BackupMode.INT8_ASYM)
            if data_aware:
                kwargs.update(
                    dataset=nncf.Dataset(feeds), awq=True, scale_estimation=True, subset_size=len(feeds)
                )
        with nncf_quietly():
            model_in = convert()
            if int8_layers:
                # the named layers at INT8 first (every other one ignored), then INT4 for the rest: NNCF
                # leaves weights it already compressed alone, so each layer gets the level edgekit chose
                others = [layer.node for layer in layers if layer.node not in int8_layers]
                model_in = nncf.compress_weights(
                    model_in,
                    mode=nncf.CompressWeightsMode.INT8_SYM
                    if symmetric
                    else nncf.CompressWeightsMode.INT8_ASYM,
                    ignored_scope=nncf.IgnoredScope(names=others, validate=False),
                )
                kwargs.update(ignored_scope=nncf.IgnoredScope(names=list(int8_layers), validate=False))
            return nncf.compress_weights(model_in, **kwargs)

    trials: list[dict[str, Any]] = []
    chosen, chosen_score, default_score = None, None, None

    def attempt(r: float, int8_layers: list[str] | None = None) -> Any:
        nonlocal chosen, chosen_score, default_score
        what = f"ratio {r:g}" + (f", {len(int8_layers)} layer(s) at INT8" if int8_layers else "")
        progress(f"weights: NNCF {mode.value} {what}")
        started = time.perf_counter()
        candidate = build(r, int8_layers)
        result = _score(candidate, data, gates)
        trials.append(
            {
                "ratio": r,
                "int8_layers": list(int8_layers or []),
                "score": result.to_json(),
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
        if default_score is None:
            default_score = result
        return candidate, result

    ranking: list[dict[str, Any]] = []
    if data is None:
        progress(f"weights: NNCF {mode.value} ratio {ratio:g}")
        chosen = build(ratio)
    else:
        chosen, chosen_score = attempt(ratio)
        if not chosen_score.passed and level == "int4" and opts.search:
            # NNCF's own sensitivity (activation-aware) can miss a layer whose outlier weights read a
            # small channel; edgekit ranks layers by what raising each to INT8 recovers (RTN previews on
            # the ONNX model, the onnxruntime search's ranking), then keeps the fewest top ones at INT8
            from edgekit.int4.search import Spec, WeightSearch

            search = WeightSearch(model, Spec("int4", group, symmetric, 1.0, "rtn"), data, gates)
            base = search.base_levels()
            _, outputs = search.evaluate(base, "")
            ranking = search.rank(base, outputs)
            order = [row["node"] for row in ranking]
            verdicts: dict[int, tuple[Any, Any]] = {}

            def check(k: int) -> bool:
                if k not in verdicts:
                    verdicts[k] = attempt(1.0, order[:k])
                return bool(verdicts[k][1].passed)

            low, high, k = 0, None, 1
            while k <= len(order):
                if check(k):
                    high = k
                    break
                low, k = k, (len(order) if k < len(order) and k * 2 > len(order) else k * 2)
            if high is not None:
                while high - low > 1:
                    mid = (low + high) // 2
                    if check(mid):
                        high = mid
                    else:
                        low = mid
                chosen, chosen_score = verdicts[high]
    levels = layer_levels(chosen, by_output)
    rows = []
    for layer in layers:
        lvl = levels.get(layer.node, "float")
        per = {"int4": 0.5 + 4 / group * (1.0 if symmetric else 1.125), "int8": 1.0 + 8 / layer.k}.get(
            lvl, 4.0
        )
        rows.append(
            {
                "node": layer.node,
                "op": layer.op,
                "shape": [layer.k, layer.n],
                "precision": lvl,
                "fp32_bytes": layer.fp32_bytes,
                "bytes": int(layer.params * per),  # estimate: codes + fp32 scales (+ zero points)
            }
        )
    fp32 = sum(r["fp32_bytes"] for r in rows)
    stored = sum(r["bytes"] for r in rows)
    total = sum(layer.params for layer in layers) or 1
    notes = []
    if data is None:
        notes.append(
            f"no calibration set: NNCF {mode.value} without AWQ/scale estimation, not scored (pass --calib)"
        )
    search = {
        "scored_on": data.source if data is not None else None,
        "default": default_score.to_json() if default_score is not None else None,
        "final": chosen_score.to_json() if chosen_score is not None else None,
        "passed": chosen_score.passed if chosen_score is not None else None,
        "sensitivity": ranking,
        "trials": trials,
    }
    if chosen_score is not None and not chosen_score.passed:
        search["would_take"] = "every MatMul/Gemm layer at INT8 still misses the gate: choose fp16"
    details = {
        "format": "OpenVINO IR with NNCF-compressed weights",
        "level": level,
        "nncf_mode": mode.value,
        "group_size": group,
        "symmetric": symmetric,
        "ratio": ratio,
        "awq": data_aware,
        "scale_estimation": data_aware,
        "backup_mode": "int8_asym" if level == "int4" else None,
        "counts": {lvl: sum(1 for r in rows if r["precision"] == lvl) for lvl in ("int4", "int8", "float")},
        "weight_bytes": {
            "fp32": fp32,
            "stored": stored,
            "ratio": round(stored / fp32, 4) if fp32 else None,
            "note": "estimated from the levels read back (codes, fp32 scales, zero points)",
        },
        "int4_share": round(
            sum(layer.params for layer in layers if levels.get(layer.node) == "int4") / total, 4
        ),
        f"kept_above_{level}": [
            {"node": r["node"], "precision": r["precision"], "bytes": r["bytes"]}
            for r in rows
            if r["precision"] != level
        ],
        "layers": rows,
        "search": search,
        "notes": notes,
    }
    return chosen, details
