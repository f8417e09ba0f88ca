"""An export job's INT8 Q/DQ model through the search: split the data, run the engine, write the
artifact, `sensitivity.json`, and the manifest section (every candidate with its score, the nodes
kept in float by original name, and what that costs in bytes and host latency)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from edgekit.fsio import write_json_atomic
from edgekit.int8.engine import Outcome, Search
from edgekit.int8.ort_qdq import HOST, OrtQdqAdapter, QdqBuilder, session
from edgekit.int8.scoring import ScoringSet, score
from edgekit.int8.search_inputs import job_data, settings_for

if TYPE_CHECKING:
    from edgekit.backends.base import ExportJob

log = logging.getLogger(__name__)

SENSITIVITY_FILE = "sensitivity.json"

# TensorRT explicit quantization: symmetric int8 activations and weights; 7-bit weights (an x86
# onnxruntime kernel workaround) mean nothing to TensorRT, so they are not searched
TENSORRT_QUANTIZATION: dict[str, Any] = {
    "activation_type": "int8",
    "weight_type": "int8",
    "per_channel": True,
    "symmetric_activations": True,
    "search": {"weights": ["per-channel", "per-tensor"]},
}


def search_qdq(
    job: ExportJob,
    out: Path,
    *,
    settings: Mapping[str, Any],
    always_exclude: Sequence[str] = (),
    symmetric_only: bool = False,
    semantics: str = HOST,
    builder: QdqBuilder | None = None,
    save: Callable[[onnx.ModelProto, Path], None] | None = None,
    progress: Callable[[str], None] = lambda _: None,
    ranges_out: dict[str, tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """Run the search for a Q/DQ target and write the chosen model to `out`. Returns the manifest's
    `int8_search` section (its `passed` says whether the gate holds on the scoring samples).

    `settings` is the target's [quantization] table; its optional `search` table restricts the
    dimensions (e.g. `weights = ["per-channel", "per-tensor"]`). TensorRT's explicit quantization calls
    this with `symmetric_only=True`, `semantics=REFERENCE` (its host runner must then run the Q/DQ
    ONNX without Q/DQ fusion, as TensorRT computes it) and its own Q/DQ placement as `builder`."""
    from edgekit.targets import Gates

    assert job.calib is not None
    started = time.perf_counter()
    inputs = job_data(job, job.options.threads)
    adapter = OrtQdqAdapter(
        job.prepared.path,
        inputs.calib_feeds,
        settings,
        calib_method=job.options.calib_method,
        always_exclude=always_exclude,
        symmetric_only=symmetric_only,
        semantics=semantics,
        threads=job.options.threads,
        source_path=job.prepared.source_path,
        name_map=job.prepared.name_map,
        builder=builder,
    )
    prepare_s = time.perf_counter() - started
    try:
        data = inputs.data
        gates: Gates = job.gates or job.target.fidelity
        search = Search(adapter, data, gates, settings_for(job), progress)
        outcome = search.run()
        if not outcome.excluded and builder is None:
            _compact(adapter, outcome, data, gates)
        if ranges_out is not None:  # every activation's range under the chosen recipe (a calib cache)
            recipe = outcome.candidate.recipe
            symmetric = recipe.get("activations") == "symmetric"
            ranges_out.update(adapter.ranges(str(recipe.get("calibration", "minmax")), symmetric))
        model = onnx.load(str(adapter.path(outcome.candidate)))
        if save is not None:
            save(model, out)
        else:
            onnx.save(model, str(out))
        record = _record(outcome, adapter, data, gates, len(inputs.calib_feeds), semantics)
        record["timings"] = {
            "calibration_s": round(prepare_s, 2),  # pre-processing + the one statistics pass
            **outcome.timings,
            "total_s": round(time.perf_counter() - started, 2),
        }
        if outcome.sensitivity:
            write_json_atomic(
                out.parent / SENSITIVITY_FILE,
                {
                    "scored_on": data.source,
                    "metric": "recovery: share of the error on the worst samples removed by keeping only "
                    "this node in float; local_error: relative error this node adds to its output",
                    "nodes": outcome.sensitivity,
                },
            )
            record["sensitivity_file"] = SENSITIVITY_FILE
        return record
    finally:
        adapter.close()


def search_tensorrt_qdq(
    job: ExportJob,
    out: Path,
    builder: QdqBuilder | None = None,
    progress: Callable[[str], None] = lambda _: None,
    ranges_out: dict[str, tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """The search for a TensorRT target's Q/DQ ONNX, scored with reference Q/DQ semantics (what
    TensorRT computes; the backend's host runner must verify the same way: OrtRunner(reference_qdq=True)).
    `builder` is the TensorRT-aware Q/DQ placement (default: onnxruntime's quantizer); with one, the
    graph-output and op-scope dimensions are left out (the placement decides both). `ranges_out`
    receives every activation's range under the chosen recipe (for the calibration cache)."""
    from edgekit.int8.ort_qdq import REFERENCE

    settings = {**TENSORRT_QUANTIZATION, **(job.target.quantization or {})}
    if builder is not None:
        settings["search"] = {**settings.get("search", {}), "outputs": ["int8"], "scope": ["all"]}
    return search_qdq(
        job,
        out,
        settings=settings,
        symmetric_only=True,
        semantics=REFERENCE,
        builder=builder,
        progress=progress,
        ranges_out=ranges_out,
    )


def _compact(adapter: OrtQdqAdapter, outcome: Outcome, data: ScoringSet, gates: Any) -> None:
    """Without fallback, ship the recipe as onnxruntime builds it by default (Relu/Clip folded into the
    Q/DQ ranges: fewer nodes, same kernels once optimized), when it scores no worse."""
    try:
        compact = adapter.build(outcome.candidate.recipe, (), keep_activations=False)
        result = score(adapter.run(compact, data), data, gates)
    except Exception as exc:  # noqa: BLE001 - the searched candidate stays
        log.debug("compact rebuild failed: %s", exc)
        return
    if result.passed >= outcome.score.passed and result.budget <= outcome.score.budget * 1.02 + 1e-9:
        adapter.release(outcome.candidate)
        outcome.candidate, outcome.score = compact, result
        outcome.passed = result.passed
        outcome.notes.append("shipped with Relu/Clip folded into the Q/DQ ranges (fewer nodes, scored again)")
    else:
        adapter.release(compact)


def _record(
    outcome: Outcome,
    adapter: OrtQdqAdapter,
    data: ScoringSet,
    gates: Any,
    calib_samples: int,
    semantics: str,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "passed": outcome.passed,
        "summary": outcome.summary(),
        "goal": gates.to_json(),
        "scored_on": data.source,
        "calibrated_on": f"{calib_samples} calibration samples (one pass; every candidate's ranges from it)",
        "runtime_semantics": (
            "this host's onnxruntime int8 kernels (as verify runs the artifact)"
            if semantics == HOST
            else "reference Q/DQ semantics (onnxruntime without Q/DQ fusion)"
        ),
        "numerics": semantics,
        "recipe": outcome.candidate.recipe.to_json(),
        "default_recipe": adapter.space().default().to_json(),
        "default_score": outcome.default_score.to_json(),
        "score": outcome.score.to_json(),
        "space": adapter.space().to_json(),
        "candidates": [t.to_json() for t in outcome.trials],
        "quantized_nodes": outcome.quantized_nodes,
        "reverted": [adapter.describe(n) for n in outcome.excluded],
        "seconds": round(outcome.seconds, 2),
        "notes": adapter.notes + outcome.notes,
    }
    if outcome.would_take:
        record["would_take"] = outcome.would_take
    if outcome.before_fallback is not None:
        record["fallback_cost"] = _fallback_cost(adapter, outcome, data)
    if adapter.heads:
        record["head"] = _head_record(adapter, outcome, data)
    return record


def _head_record(adapter: OrtQdqAdapter, outcome: Outcome, data: ScoringSet) -> dict[str, Any]:
    """The mixed-scale heads found, what the chosen recipe keeps in float for them, and what that
    costs against the same recipe with the head in INT8 (bytes, host p50)."""
    recipe = outcome.candidate.recipe
    value = recipe.get("head", "int8")
    nodes = adapter.head_nodes(recipe)
    out: dict[str, Any] = {
        "mixed_scale": [h.to_json() for h in adapter.heads],
        "recipe": value,
        "kept_in_float": [adapter.describe(n) for n in nodes],
    }
    if not nodes:
        return out
    try:
        plain = adapter.build(recipe.with_("head", "int8"), outcome.excluded)
    except Exception as exc:  # noqa: BLE001 - the cost is a note, the artifact stands
        out["cost"] = {"error": str(exc)}
        return out
    try:
        timed = _p50s(
            adapter, {"head_int8": adapter.path(plain), "chosen": adapter.path(outcome.candidate)}, data
        )
        out["cost"] = {
            "nodes_in_float": len(nodes),
            "bytes_added": _bytes(adapter.path(outcome.candidate)) - _bytes(adapter.path(plain)),
            "p50_ms_head_int8": round(timed["head_int8"], 4),
            "p50_ms_chosen": round(timed["chosen"], 4),
            "timed_on": "this host, onnxruntime CPU",
        }
    finally:
        adapter.release(plain)
    return out


def _p50s(adapter: OrtQdqAdapter, paths: Mapping[str, Path], data: ScoringSet) -> dict[str, float]:
    """Host p50 latency (ms) of each model, one after the other on the first scoring sample."""
    from edgekit.agent import latency_stats, timed_loop

    feed = data.feeds[0]
    timings: dict[str, float] = {}
    for label, path in paths.items():
        sess = session(path, adapter.semantics, adapter.threads)
        names = [o.name for o in sess.get_outputs()]
        for _ in range(3):
            sess.run(names, feed)
        samples, _ = timed_loop(lambda s=sess, n=names: s.run(n, feed), 30, 0.5)
        timings[label] = latency_stats(samples)["p50"]
    return timings


def _fallback_cost(adapter: OrtQdqAdapter, outcome: Outcome, data: ScoringSet) -> dict[str, Any]:
    """Bytes and host p50 of the artifact with and without the nodes kept in float."""
    assert outcome.before_fallback is not None
    without = adapter.path(outcome.before_fallback)
    timings = _p50s(adapter, {"all_int8": without, "with_fallback": adapter.path(outcome.candidate)}, data)
    size_without = _bytes(without)
    size_with = _bytes(adapter.path(outcome.candidate))
    return {
        "bytes_all_int8": size_without,
        "bytes_with_fallback": size_with,
        "bytes_added": size_with - size_without,
        "p50_ms_all_int8": round(timings["all_int8"], 4),
        "p50_ms_with_fallback": round(timings["with_fallback"], 4),
        "score_all_int8": outcome.before_fallback_score.to_json() if outcome.before_fallback_score else None,
        "timed_on": "this host, onnxruntime CPU",
    }


def _bytes(path: Path) -> int:
    """Size of the model as an artifact is saved (shape annotations dropped), weights included."""
    model = onnx.load(str(path))
    del model.graph.value_info[:]
    return model.ByteSize()
