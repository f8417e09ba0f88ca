"""The INT8 search for TFLite (onnx2tf full-integer quantization), aimed at the target's gate.

onnx2tf quantizes inside TensorFlow's converter and offers no per-node float fallback, so the knobs
are what it does offer: the weights' quantization (`quant_type`: per-channel or per-tensor, one
conversion each, both cached) and, as the only fallback, onnx2tf's dynamic-range file of the same
conversion (int8 weights, float activations: every activation in float). That fallback leaves float
ops in the artifact; on a full-integer target (int8 I/O, e.g. Android delegates that run integer
kernels only) it is taken only with the user's consent (`--allow-float-ops`), otherwise the record says
that it would take it. Every candidate is run through LiteRT (the host runner `verify` uses) and scored
against FP32 on `--val`, or else on the calibration samples themselves (see `tflite_scoring_set`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.int8.scoring import Outputs, Score, ScoringSet, score, stack

if TYPE_CHECKING:
    from edgekit.backends.base import ExportJob

DYNAMIC_VARIANT = "dynamic_range_quant"
# build(quant_type) -> the onnx2tf output folder holding every model_<variant>.tflite of that conversion
Convert = Callable[[str], Path]
# run(path to a .tflite, scoring set) -> outputs keyed like the FP32 reference
Run = Callable[[Path, ScoringSet], Outputs]


def tflite_scoring_set(job: ExportJob) -> ScoringSet:
    """--val, or else the calibration samples themselves: onnx2tf calibrates on the whole set so that one
    conversion (cached) serves every precision and target of a calibration set, and holding samples out
    would cost a conversion of its own; the record says so."""
    from edgekit.int8.search_inputs import scoring_set

    assert job.calib is not None
    data = scoring_set(job, list(range(len(job.calib))), job.options.threads)
    if job.val is None:
        data.source = (
            f"the {len(data)} calibration samples (onnx2tf calibrates on all of them; pass --val for an "
            "independent check)"
        )
    return data


def run_tflite(runner: Any, data: ScoringSet, source_name: Callable[[str], str]) -> Outputs:
    """A TFLite host runner (source names, source layout) over the scoring set (prepared names)."""
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in data.reference}
    for feed in data.feeds:
        result = runner.infer({source_name(k): v for k, v in feed.items()})
        for name in chunks:
            chunks[name].append(np.asarray(result[source_name(name)]))
    return {name: stack(c, data.batched) for name, c in chunks.items()}


def search_tflite(
    job: ExportJob,
    variant: str,
    full_integer: bool,
    default_quant_type: str,
    convert: Convert,
    run: Run,
    data: ScoringSet,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[Path, str, dict[str, Any]]:
    """(the chosen .tflite, its onnx2tf variant, the manifest's `int8_search` section)."""
    from edgekit.int8.search_inputs import settings_for
    from edgekit.targets import Gates

    started = time.perf_counter()
    settings = settings_for(job)
    gates: Gates = job.gates or job.target.fidelity
    candidates: list[dict[str, Any]] = []
    notes: list[str] = []

    def evaluate(stage: str, quant_type: str, chosen_variant: str) -> tuple[Path, Score]:
        t0 = time.perf_counter()
        path = convert(quant_type) / f"model_{chosen_variant}.tflite"
        result = score(run(path, data), data, gates)
        recipe = {
            "weights": quant_type,
            "activations": "float" if chosen_variant == DYNAMIC_VARIANT else "int8",
        }
        candidates.append(
            {
                "stage": stage,
                "recipe": recipe,
                "seconds": round(time.perf_counter() - t0, 3),
                **result.to_json(),
            }
        )
        return path, result

    other = "per-tensor" if default_quant_type == "per-channel" else "per-channel"
    progress("int8: scoring onnx2tf's default recipe")
    best = (default_quant_type, variant, *evaluate("recipe", default_quant_type, variant))
    default_score = best[3]
    would_take = None
    if not best[3].passed and settings.search and time.perf_counter() - started < settings.time_budget_s:
        progress(f"int8: onnx2tf with {other} weights")
        path, result = evaluate("recipe", other, variant)
        if (not result.passed, result.budget) < (not best[3].passed, best[3].budget):
            best = (other, variant, path, result)
    if not best[3].passed and settings.search and settings.fallback and settings.max_revert > 0:
        if full_integer and not settings.allow_float_ops:
            would_take = (
                "float activations (onnx2tf has no per-node fallback: its dynamic-range file keeps every "
                "activation in float), which leaves float ops in this full-integer artifact: rerun with "
                "--allow-float-ops if the device's runtime may run them (an integer-only delegate may not)"
            )
        else:
            progress("int8: fallback to float activations (onnx2tf's dynamic-range file)")
            path, result = evaluate("fallback", best[0], DYNAMIC_VARIANT)
            if (not result.passed, result.budget) < (not best[3].passed, best[3].budget):
                best = (best[0], DYNAMIC_VARIANT, path, result)
                notes.append(
                    "every activation is kept in float (dynamic-range INT8): onnx2tf offers no per-node "
                    "fallback; weights stay int8"
                )
    quant_type, chosen_variant, path, result = best
    if not result.passed and would_take is None:
        would_take = (
            "search is off (--no-search); drop it to let edgekit search recipes and fall back"
            if not settings.search
            else "no onnx2tf recipe meets the gate, float activations included; loosen it or choose fp16"
        )
    record: dict[str, Any] = {
        "passed": result.passed,
        "summary": ("passes" if result.passed else "FAILS")
        + f" the gate: {result.summary()}"
        + ("" if result.passed or not would_take else f"; {would_take}"),
        "goal": gates.to_json(),
        "scored_on": data.source,
        "runtime_semantics": "LiteRT with XNNPACK on this host (as verify runs the artifact)",
        "recipe": {
            "weights": quant_type,
            "activations": "float" if chosen_variant == DYNAMIC_VARIANT else "int8",
        },
        "default_recipe": {"weights": default_quant_type, "activations": "int8"},
        "default_score": default_score.to_json(),
        "score": result.to_json(),
        "candidates": candidates,
        "reverted": [],
        "float_activations": chosen_variant == DYNAMIC_VARIANT,
        "seconds": round(time.perf_counter() - started, 2),
        "notes": notes,
    }
    if would_take and not result.passed:
        record["would_take"] = would_take
    return path, chosen_variant, record
