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
from collections.abc import Callable, Sequence
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


# ---- the per-node fallback through ai-edge-quantizer (edgekit.backends.tflite.selective) -------------
# build([(label, rules), ...]) -> one .tflite per entry, made in one quantizer run
Build = Callable[[list[tuple[str, list[dict[str, Any]]]]], list[Path]]
MAX_RANKED_OPS = 32  # revert-one builds measured per search (one quantizer run builds them all)


def search_selective(
    job: ExportJob,
    mapping: dict[str, Any],
    rules_of: Callable[[list[int]], list[dict[str, Any]]],
    revertible: list[int],
    full_integer: bool,
    build: Build,
    run: Run,
    data: ScoringSet,
    progress: Callable[[str], None] = lambda _: None,
    reverted_to: str = "float",
    forced: Sequence[int] = (),
    heads: Sequence[tuple[str, Sequence[int]]] = (),
    quantizer: str = "ai-edge-quantizer static_wi8_ai8 on onnx2tf's float32 file (selective: by op output names)",
) -> tuple[Path, dict[str, Any]]:
    """`rules_of([])` first (e.g. int8 everywhere ai-edge-quantizer can, but `forced` ops: float outputs,
    --ignore); when that fails the gate, the `revertible` ops whose revert (to `reverted_to`: float, or
    INT8 weights for --int4) recovers most, fewest first (at most --max-revert of them; on a
    full-integer target float ops only with --allow-float-ops). `heads`: head-aware recipes (label,
    more ops kept in float, e.g. ("split", []), ("float-tail", the head's decode)), all built in the first
    quantizer run; the first that meets the gate (else the one nearest it) is the base of the search. A
    head recipe keeps a mixed-scale output's decode in float (float outputs): like `forced`, it needs no
    --allow-float-ops. Returns (the chosen .tflite, record)."""
    from edgekit.backends.tflite.selective import onnx_names_of
    from edgekit.int8.search_inputs import settings_for
    from edgekit.targets import Gates

    started = time.perf_counter()
    settings = settings_for(job)
    gates: Gates = job.gates or job.target.fidelity
    candidates: list[dict[str, Any]] = []
    notes: list[str] = []
    by_index = {op["index"]: op for op in mapping["ops"]}
    sources = mapping.get("sources", {})
    rules = rules_of

    def describe(index: int) -> dict[str, Any]:
        op = by_index[index]
        return {
            "tflite_op": op["type"],
            "tflite_tensor": op["names"][0] if op["names"] else "",
            "onnx_nodes": onnx_names_of(mapping, index),
            # the user's own node names (ingest may rename or split nodes)
            "source_nodes": sorted({sources.get(n) or n for n in onnx_names_of(mapping, index)}),
        }

    def evaluate(stage: str, entries: list[tuple[str, list[int]]]) -> list[tuple[Path, Score, list[int]]]:
        t0 = time.perf_counter()
        paths = build([(label, rules(ops)) for label, ops in entries])
        results = []
        for (label, ops), path in zip(entries, paths, strict=True):
            result = score(run(path, data), data, gates)
            candidates.append(
                {
                    "stage": stage,
                    f"ops_{reverted_to}": [describe(i) for i in ops],
                    "label": label,
                    "seconds": round((time.perf_counter() - t0) / len(entries), 3),
                    **result.to_json(),
                }
            )
            results.append((path, result, ops))
        return results

    head_record: dict[str, Any] | None = None
    if not settings.search:
        heads = heads[:1]  # --no-search: the first (fewest float ops) recipe only
    if heads:
        progress(f"{job.precision}: ai-edge-quantizer, head-aware recipes {', '.join(h[0] for h in heads)}")
        tried = evaluate("recipe", [(f"head {label}", list(ops)) for label, ops in heads])
        default_score = tried[0][1]
        pick = next((i for i, r in enumerate(tried) if r[1].passed), None)
        if pick is None:
            pick = min(range(len(tried)), key=lambda i: tried[i][1].budget)
        label, head_ops = heads[pick][0], list(heads[pick][1])
        best = (tried[pick][0], tried[pick][1], [])
        head_record = {
            "recipe": label,
            "tried": [
                {"recipe": h[0], "ops_float": len(h[1]), **r[1].to_json()}
                for h, r in zip(heads, tried, strict=True)
            ],
            "kept_in_float": [describe(i) for i in [*forced, *head_ops]],
        }
        forced = [*forced, *[i for i in head_ops if i not in forced]]
        rules = lambda ops: rules_of([*head_ops, *ops])  # noqa: E731
        if label != "split":
            notes.append(
                f"head recipe {label}: {len(head_ops)} more TFLite ops of the detector head's decode kept "
                "in float (float outputs; inputs and the weighted layers stay int8)"
            )
    else:
        progress(f"{job.precision}: ai-edge-quantizer, every op it can")
        best = evaluate("recipe", [("base", [])])[0]
        default_score = best[1]
    quantizable = [i for i in revertible if i not in forced]
    max_k = max(1, int(settings.max_revert * len(quantizable)))
    ranking: list[dict[str, Any]] = []
    would_take = None
    if not best[1].passed and settings.search and settings.fallback and quantizable:
        if full_integer and reverted_to == "float" and not settings.allow_float_ops:
            would_take = (
                "ops kept in float by ai-edge-quantizer's selective quantization (the fallback), which leaves "
                "float ops in this full-integer artifact: rerun with --allow-float-ops if the device's runtime "
                "may run them (an integer-only delegate may not)"
            )
        else:
            # revert-one ranking: the ops nearest the outputs first when there are more than we measure
            order = quantizable[::-1][:MAX_RANKED_OPS]
            progress(
                f"{job.precision}: ranking {len(order)} TFLite ops by what each at {reverted_to} recovers"
            )
            ranked = evaluate("rank", [(f"{reverted_to} {by_index[i]['type']}", [i]) for i in order])
            base_budget = best[1].budget
            rows = sorted(ranked, key=lambda r: (not r[1].passed, r[1].budget))
            for _, result, ops in rows:
                ranking.append(
                    {
                        **describe(ops[0]),
                        "recovery": round(base_budget - result.budget, 4),
                        "passes_alone": result.passed,
                    }
                )
            top = [r[2][0] for r in rows]
            steps, k = [], 1
            while k <= min(max_k, len(top)):
                steps.append(k)
                k *= 2
            if steps and steps[-1] != min(max_k, len(top)):
                steps.append(min(max_k, len(top)))
            progress(
                f"{job.precision}: fallback with the top {', '.join(map(str, steps))} ops at {reverted_to}"
            )
            for path, result, ops in evaluate(
                "fallback", [(f"top {k} at {reverted_to}", top[:k]) for k in steps]
            ):
                if result.passed:  # steps ascend: the first that passes keeps the fewest ops back
                    best = (path, result, ops)
                    break
                if not best[1].passed and result.budget < best[1].budget:
                    best = (path, result, ops)
            if not best[1].passed:
                would_take = (
                    f"no selection of at most {max_k} ops at {reverted_to} (--max-revert) meets the gate"
                )
    path, result, ops = best
    if not result.passed and would_take is None:
        would_take = "search is off (--no-search)" if not settings.search else "the gate is out of reach"
    if ops:
        notes.append(f"{len(ops)} of {len(quantizable)} TFLite ops kept at {reverted_to} to meet the gate")
    record: dict[str, Any] = {
        "passed": result.passed,
        "summary": ("passes" if result.passed else "FAILS")
        + f" the gate: {result.summary()}"
        + ("" if result.passed or not would_take else f"; {would_take}"),
        "quantizer": quantizer,
        "goal": gates.to_json(),
        "scored_on": data.source,
        "runtime_semantics": "LiteRT with XNNPACK on this host (as verify runs the artifact)",
        "default_score": default_score.to_json(),
        "score": result.to_json(),
        "forced_float": [describe(i) for i in forced],
        "head": head_record,
        "reverted_to": reverted_to,
        "reverted": [describe(i) for i in ops],
        "ranking": ranking,
        "candidates": candidates,
        "onnx_to_tflite": mapping["counts"],
        "seconds": round(time.perf_counter() - started, 2),
        "notes": notes,
    }
    if would_take and not result.passed:
        record["would_take"] = would_take
    return path, record
