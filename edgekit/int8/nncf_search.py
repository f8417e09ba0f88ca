"""The INT8 search for OpenVINO: NNCF's knobs as recipes, and NNCF's own accuracy control as fallback,
both aimed at edgekit's gate.

The gate becomes one NNCF metric, `1 - budget_used` (edgekit.int8.scoring): 1.0 for the FP32 model, 0.0
where the gate's most exhausted criterion is exactly met. With `max_drop=1.0` (absolute), NNCF's
accuracy control then restores layers until every criterion of the gate holds: cosine and SNR against
FP32 always, accuracy when the validation set has labels, agreement with FP32 when it has none.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.int8.head import head_dimension
from edgekit.int8.recipes import Dimension, Recipe, Space, ordered
from edgekit.int8.scoring import Outputs, Score, ScoringSet, sample_errors, score, stack
from edgekit.targets import Gates

log = logging.getLogger(__name__)

Feed = dict[str, np.ndarray]


def run_compiled(compiled: Any, feeds: Sequence[Feed], names: Sequence[str], batched: bool) -> Outputs:
    """Outputs of a compiled OpenVINO model, keyed by tensor name, stacked over samples."""
    ports = {}
    for port in compiled.outputs:
        for name in port.get_names():
            ports[name] = port
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in feeds:
        result = compiled(dict(feed))
        for name in names:
            chunks[name].append(np.asarray(result[ports[name]]))
    return {n: stack(c, batched) for n, c in chunks.items()}


def gate_metric(data: ScoringSet, gates: Gates) -> Callable[[Any, Any], tuple[float, list[float]]]:
    """NNCF's validation_fn: (1 - share of the gate's error budget used, per-sample -error)."""
    names = list(data.reference)

    def validate(compiled: Any, items: Any) -> tuple[float, list[float]]:
        feeds = list(items)
        if len(feeds) == len(data):
            subset = data
        else:  # NNCF's ranking subset: the items are ours, find which
            index = [_index_of(data.feeds, f) for f in feeds]
            subset = data.subset(index)
        outputs = run_compiled(compiled, feeds, names, data.batched)
        result = score(outputs, subset, gates)
        metric = 1.0 - result.budget if math.isfinite(result.budget) else -1e9
        return metric, [-float(e) for e in sample_errors(outputs, subset)]

    return validate


def _index_of(feeds: Sequence[Feed], feed: Feed) -> int:
    for i, candidate in enumerate(feeds):
        if candidate is feed or all(np.array_equal(candidate[k], feed[k]) for k in feed):
            return i
    raise ValueError("a validation item that is not in the scoring set")


@dataclass
class NncfOutcome:
    model: Any
    recipe: Recipe
    score: Score
    default_score: Score
    candidates: list[dict[str, Any]] = field(default_factory=list)
    accuracy_control: bool = False
    passed: bool = False
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    would_take: str | None = None

    def record(self) -> dict[str, Any]:
        return {
            "would_take": self.would_take,
            "passed": self.passed,
            "summary": ("passes" if self.passed else "FAILS") + f" the gate: {self.score.summary()}",
            "recipe": self.recipe.to_json(),
            "default_score": self.default_score.to_json(),
            "score": self.score.to_json(),
            "candidates": self.candidates,
            "accuracy_control": self.accuracy_control,
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
        }


def nncf_space(base: Mapping[str, Any], transformer: bool, head: bool = False) -> Space:
    """preset (symmetric PERFORMANCE vs asymmetric-activation MIXED) and bias correction; SmoothQuant
    for transformer-shaped graphs, where outlier channels in activations are the common failure; with
    a mixed-scale head (edgekit.int8.head), the head's Concat or decode in NNCF's ignored scope."""
    preset = base.get("preset", "performance")
    preset = str(getattr(preset, "value", preset)).lower()  # an nncf.QuantizationPreset or its name
    dims = [
        Dimension("preset", ordered(preset, ("performance", "mixed"))),
        Dimension(
            "fast_bias_correction",
            ordered(bool(base.get("fast_bias_correction", True)), (True, False)),
            "fast vs full bias correction",
        ),
    ]
    if transformer:
        dims.append(Dimension("smooth_quant", (False, True), "SmoothQuant migrates activation outliers"))
    if head:
        dims.insert(0, head_dimension())
    return Space(tuple(dims))


def _key(recipe: Recipe, result: Score) -> tuple[int, int, float]:
    """Passing first; among passing recipes the faster symmetric PERFORMANCE preset; then fidelity."""
    # a head recipe is not "slower": its few float ops are what a mixed-scale output needs (as in the
    # Q/DQ search), so among passing recipes the one closest to FP32 wins
    slower = int(recipe.get("preset") == "mixed") + int(bool(recipe.get("smooth_quant")))
    return (0 if result.passed else 1, slower if result.passed else 0, result.budget)


def search_nncf(
    ov_model: Any,
    calib_items: Sequence[Feed],
    data: ScoringSet,
    gates: Gates,
    base_kwargs: Mapping[str, Any],
    *,
    transformer: bool = False,
    search: bool = True,
    max_revert: float = 0.25,
    time_budget_s: float = 600.0,
    compile_fn: Callable[[Any], Any] | None = None,
    progress: Callable[[str], None] = lambda _: None,
    head_scopes: Mapping[str, Sequence[str]] | None = None,
) -> NncfOutcome:
    """nncf.quantize over the recipe space (coordinate search, default first), then, when the best
    misses the gate, nncf.quantize_with_accuracy_control from the best recipe with edgekit's gate as
    the metric, restoring at most `max_revert` of the quantizers. `base_kwargs` are nncf.quantize's
    (preset, target_device, subset_size, model_type, ignored_scope, ...). `head_scopes`: IR node names
    each `head` recipe value adds to the ignored scope (a mixed-scale head's Concat, or its decode)."""
    import nncf
    import openvino as ov

    started = time.perf_counter()
    core = ov.Core()
    compile_fn = compile_fn or (lambda model: core.compile_model(model, "CPU"))
    calibration = nncf.Dataset(list(calib_items))
    head_scopes = {k: list(v) for k, v in (head_scopes or {}).items() if v}
    space = nncf_space(base_kwargs, transformer, head=bool(head_scopes))
    candidates: list[dict[str, Any]] = []

    def kwargs_for(recipe: Recipe) -> dict[str, Any]:
        kwargs = dict(base_kwargs)
        kwargs["preset"] = getattr(nncf.QuantizationPreset, str(recipe.get("preset")).upper())
        kwargs["fast_bias_correction"] = bool(recipe.get("fast_bias_correction"))
        if recipe.get("smooth_quant"):
            from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

            kwargs["model_type"] = nncf.ModelType.TRANSFORMER
            kwargs["advanced_parameters"] = AdvancedQuantizationParameters(smooth_quant_alpha=0.5)
        extra = head_scopes.get(str(recipe.get("head")), [])
        if extra:
            scope = kwargs.get("ignored_scope")
            names = list(dict.fromkeys([*(scope.names if scope is not None else []), *extra]))
            kwargs["ignored_scope"] = nncf.IgnoredScope(names=names, validate=False)
        return kwargs

    def evaluate(recipe: Recipe) -> tuple[Any, Score]:
        t0 = time.perf_counter()
        quantized = nncf.quantize(ov_model, calibration, **kwargs_for(recipe))
        outputs = run_compiled(compile_fn(quantized), data.feeds, list(data.reference), data.batched)
        result = score(outputs, data, gates)
        candidates.append(
            {
                "stage": "recipe",
                "recipe": recipe.to_json(),
                "seconds": round(time.perf_counter() - t0, 3),
                **result.to_json(),
            }
        )
        return quantized, result

    progress("int8: nncf.quantize with the default recipe")
    best_recipe = space.default()
    best_model, best_score = evaluate(best_recipe)
    default_score = best_score
    notes: list[str] = []
    if search:
        seen = {best_recipe}
        for dimension in space.dimensions:
            for recipe in space.neighbours(best_recipe, dimension):
                if recipe in seen:
                    continue
                if time.perf_counter() - started > time_budget_s:
                    notes.append(f"time budget ({time_budget_s:.0f} s) spent during the recipe search")
                    break
                seen.add(recipe)
                progress(f"int8: nncf recipe {recipe.label}")
                model, result = evaluate(recipe)
                if _key(recipe, result) < _key(best_recipe, best_score):
                    best_recipe, best_model, best_score = recipe, model, result
    outcome = NncfOutcome(best_model, best_recipe, best_score, default_score, candidates, notes=notes)
    if search and not best_score.passed and max_revert > 0 and time.perf_counter() - started < time_budget_s:
        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

        quantizers = sum(1 for op in best_model.get_ordered_ops() if op.get_type_name() == "FakeQuantize")
        limit = max(1, math.floor(max_revert * quantizers))
        progress(f"int8: NNCF accuracy control (at most {limit} of {quantizers} quantizers restored)")
        validation = nncf.Dataset(list(data.feeds))
        restored = nncf.quantize_with_accuracy_control(
            ov_model,
            calibration,
            validation,
            gate_metric(data, gates),
            max_drop=1.0,  # the metric is 1 - budget used: a drop of 1 is the gate itself
            drop_type=nncf.DropType.ABSOLUTE,
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=limit, ranking_subset_size=min(len(data), 32), num_ranking_workers=1
            ),
            **kwargs_for(best_recipe),
        )
        outputs = run_compiled(compile_fn(restored), data.feeds, list(data.reference), data.batched)
        result = score(outputs, data, gates)
        candidates.append({"stage": "accuracy_control", "recipe": best_recipe.to_json(), **result.to_json()})
        if (not result.passed, result.budget) <= (not best_score.passed, best_score.budget):
            outcome.model, outcome.score, outcome.accuracy_control = restored, result, True
    outcome.passed = outcome.score.passed
    outcome.seconds = time.perf_counter() - started
    if not outcome.passed:
        outcome.would_take = (
            "search is off (--no-search); drop it to let edgekit search recipes and fall back"
            if not search
            else f"more quantizers restored to float than --max-revert {max_revert:g} allows "
            "(raise it), or fp16"
        )
    return outcome


def search_openvino(
    job: Any,
    ov_model: Any,
    base_kwargs: Mapping[str, Any],
    *,
    transformer: bool = False,
    progress: Callable[[str], None] = lambda _: None,
    head_scopes: Mapping[str, Sequence[str]] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """For the OpenVINO backend's INT8 export (job: ExportJob): the quantized ov.Model and the manifest's
    `int8_search` section. Calibrates on the job's calibration set (less its held-out part when there
    is no --val), scores on --val or the held-out part, aims at the job's gates."""
    from edgekit.int8.search_inputs import job_data, settings_for

    inputs = job_data(job, job.options.threads)
    settings = settings_for(job)
    kwargs = dict(base_kwargs)
    kwargs["subset_size"] = len(inputs.calib_feeds)
    outcome = search_nncf(
        ov_model,
        inputs.calib_feeds,
        inputs.data,
        job.gates or job.target.fidelity,
        kwargs,
        transformer=transformer,
        search=settings.search,
        max_revert=settings.max_revert,
        time_budget_s=settings.time_budget_s,
        progress=progress,
        head_scopes=head_scopes,
    )
    record = outcome.record()
    if head_scopes:
        value = str(outcome.recipe.get("head", "int8"))
        kept = head_scopes.get(value, [])
        record["head"] = {
            "recipe": value,
            "kept_in_float": [{"node": n} for n in kept],
            # the head's IR ops are elementwise and tiny beside the convolutions; not timed apart here
            # (that would take a second nncf.quantize): the candidates list has each head value's score
            "cost": {"nodes_in_float": len(kept), "timed": False},
        }
    record["tool"] = "nncf.quantize_with_accuracy_control" if outcome.accuracy_control else "nncf.quantize"
    record["calibration_samples"] = len(inputs.calib_feeds)
    record["quantized_nodes"] = sum(
        1 for op in outcome.model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"
    )
    record["scored_on"] = inputs.data.source
    record["goal"] = (job.gates or job.target.fidelity).to_json()
    return outcome.model, record
