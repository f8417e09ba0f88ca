"""The backend-agnostic INT8 search: recipe search, then sensitive-node fallback until the gate holds.

1. Recipe search. The default recipe is scored, then each dimension of the backend's space is varied
   from the best recipe so far (coordinate search). Passing candidates are preferred, then those that
   keep more of the model in INT8 (`Adapter.float_share`), then the smallest share of the gates' error
   budget used.
2. Fallback, when the best recipe still fails. Nodes are ranked by how much keeping each one in float
   recovers on the samples that suffer most (NNCF's accuracy control: revert one, measure, on a
   ranking subset), with the adapter's one-pass per-node error as the order of measurement (so that
   a time budget spends itself on the likeliest nodes). The smallest k for which the top-k nodes in
   float pass the gate is found by doubling then bisection on cheap previews; the artifact is then
   built with exactly those nodes excluded and scored again (extended one node at a time if the
   real build misses where its preview passed).
3. Bounds: at most `max_revert` of the quantized nodes, and a wall-clock budget. When the gate cannot
   be met within them, the best candidate is still returned with what it reached and, where time
   allows, what it would take (how many nodes in float, or that INT8 cannot reach it at all).

The seam to backends (Adapter, Candidate) and the search's settings and results live in
edgekit.int8.adapter; this module re-exports them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgekit.int8.adapter import Adapter, Candidate, Outcome, Settings, Trial
from edgekit.int8.recipes import Recipe
from edgekit.int8.scoring import Outputs, Score, ScoringSet, sample_errors, score
from edgekit.targets import Gates

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Clock:
    def __init__(self, budget_s: float) -> None:
        self.start = time.perf_counter()
        self.budget = budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget - self.elapsed()


def _key(adapter: Adapter, trial: Trial) -> tuple[int, int, float]:
    passed = trial.score.passed
    return (0 if passed else 1, adapter.float_share(trial.recipe) if passed else 0, trial.score.budget)


class Search:
    def __init__(
        self,
        adapter: Adapter,
        data: ScoringSet,
        gates: Gates,
        settings: Settings | None = None,
        progress: Progress = _quiet,
    ) -> None:
        self.adapter = adapter
        self.data = data
        self.gates = gates
        self.settings = settings or Settings()
        self.progress = progress
        self.clock = Clock(self.settings.time_budget_s)
        self.trials: list[Trial] = []
        self.notes: list[str] = []
        self.exhausted = False
        self._settled_noted = False

    # ---- evaluation ----------------------------------------------------------------------------
    def _evaluate(
        self, candidate: Candidate, stage: str, data: ScoringSet | None = None
    ) -> tuple[Trial, Outputs]:
        started = time.perf_counter()
        outputs = self.adapter.run(candidate, data or self.data)
        result = score(outputs, data or self.data, self.gates)
        trial = Trial(stage, candidate.recipe, len(candidate.exclude), result, time.perf_counter() - started)
        trial.preview = candidate.preview
        if stage != "rank":
            self.trials.append(trial)
        return trial, outputs

    def _build_and_score(
        self, recipe: Recipe, exclude: Sequence[str], stage: str
    ) -> tuple[Candidate, Trial, Outputs]:
        started = time.perf_counter()
        candidate = self.adapter.build(recipe, exclude)
        built = time.perf_counter() - started
        trial, outputs = self._evaluate(candidate, stage)
        trial.seconds += built
        log.info("%s %s (%d in float): %s", stage, recipe.label, len(exclude), trial.score.summary())
        return candidate, trial, outputs

    def _out_of_time(self, what: str) -> bool:
        if self.clock.left() > 0:
            return False
        if not self.exhausted:
            self.notes.append(f"time budget ({self.settings.time_budget_s:.0f} s) spent during {what}")
        self.exhausted = True
        return True

    # ---- stage 1: recipes ----------------------------------------------------------------------
    def recipes(self) -> tuple[Candidate, Trial, Outputs, Score]:
        space = self.adapter.space()
        self.progress("int8: scoring the default recipe")
        best_c, best_t, best_o = self._build_and_score(space.default(), (), "recipe")
        default_score = best_t.score
        if not self.settings.search:
            return best_c, best_t, best_o, default_score
        seen = {space.default()}
        for dimension in space.dimensions:
            if self._settled(best_t):
                break
            for recipe in space.neighbours(best_t.recipe, dimension):
                if recipe in seen or self._out_of_time("the recipe search") or self._settled(best_t):
                    continue
                seen.add(recipe)
                self.progress(f"int8: recipe {recipe.label}")
                cand, trial, outputs = self._build_and_score(recipe, (), "recipe")
                if _key(self.adapter, trial) < _key(self.adapter, best_t):
                    self.adapter.release(best_c)
                    best_c, best_t, best_o = cand, trial, outputs
                else:
                    self.adapter.release(cand)
        # a passing recipe that keeps ops in float: try giving back each float choice
        share = self.adapter.float_share(best_t.recipe)
        if best_t.score.passed and share > 0:
            for dimension in space.dimensions:
                recipe = best_t.recipe.with_(dimension.name, dimension.values[0])
                if (
                    recipe in seen
                    or self.adapter.float_share(recipe) >= share
                    or self._out_of_time("the search")
                ):
                    continue
                seen.add(recipe)
                cand, trial, outputs = self._build_and_score(recipe, (), "recipe")
                if _key(self.adapter, trial) < _key(self.adapter, best_t):
                    self.adapter.release(best_c)
                    best_c, best_t, best_o = cand, trial, outputs
                    share = self.adapter.float_share(best_t.recipe)
                else:
                    self.adapter.release(cand)
        return best_c, best_t, best_o, default_score

    def _settled(self, best: Trial) -> bool:
        """A recipe that quantizes everything and passes with most of the gate's error budget to spare
        ends the search: what is left could only widen a margin that is already wide, at the cost of a
        build and a scoring pass per candidate (on ResNet-50 on 2 cores, about 10 s each)."""
        settled = (
            best.score.passed
            and best.score.budget <= self.settings.settle_budget
            and self.adapter.float_share(best.recipe) == 0
        )
        if settled and not self._settled_noted:
            self._settled_noted = True
            self.notes.append(
                f"recipe search stopped at {best.recipe.label}: it passes using {best.score.budget:.0%} of "
                f"the gate's error budget (at most {self.settings.settle_budget:.0%} counts as settled)"
            )
        return settled

    # ---- stage 2: ranking ----------------------------------------------------------------------
    def rank(self, base: Candidate, outputs: Outputs, nodes: list[str]) -> list[dict[str, Any]]:
        """Revert-one recovery per node on the worst samples; unmeasured nodes follow by one-pass error."""
        errors = sample_errors(outputs, self.data)
        count = min(self.settings.ranking_samples, len(self.data))
        worst = sorted(int(i) for i in np.argsort(errors)[::-1][:count])
        subset = self.data.subset(worst)
        base_error = float(np.mean(errors[worst]))
        local = self.adapter.node_errors(base, subset)
        order = sorted(nodes, key=lambda n: -local.get(n, 0.0))
        rows: dict[str, dict[str, Any]] = {
            n: {**self.adapter.describe(n), "local_error": _r(local.get(n)), "recovery": None} for n in nodes
        }
        # ranking may use up to half of what is left, so that fallback keeps time to finish
        deadline = self.clock.elapsed() + max(self.clock.left(), 0.0) / 2
        measured = 0
        for node in order:
            if self.clock.elapsed() > deadline:
                self.notes.append(
                    f"ranking measured {measured} of {len(nodes)} nodes within the time budget; "
                    "the rest are ordered by their one-pass error"
                )
                break
            preview = self.adapter.preview(base, [node])
            reverted = self.adapter.run(preview, subset)
            self.adapter.release(preview)
            after = float(np.mean(sample_errors(reverted, subset)))
            rows[node]["recovery"] = _r((base_error - after) / base_error if base_error > 0 else 0.0)
            measured += 1
        self.progress(f"int8: ranked {measured} nodes on the {count} worst samples")

        def order_key(row: dict[str, Any]) -> tuple[int, float]:
            if row["recovery"] is not None:
                return (0, -row["recovery"])
            return (1, -(row["local_error"] or 0.0))

        ranked = sorted(rows.values(), key=order_key)
        for position, row in enumerate(ranked, 1):
            row["rank"] = position
        return ranked

    # ---- stage 3: fallback ---------------------------------------------------------------------
    def fallback(
        self, base: Candidate, ranked: list[dict[str, Any]]
    ) -> tuple[Candidate, Trial, list[str], str | None]:
        names = [row["node"] for row in ranked]
        # at least one node when any share is allowed: a small model's quarter can round down to none
        share = math.floor(self.settings.max_revert * len(names) + 1e-9)
        limit = min(len(names), max(share, 1 if self.settings.max_revert > 0 else 0))
        verdicts: dict[int, Trial] = {}
        kept: dict[int, Candidate] = {}

        def check(k: int) -> Trial:
            if k not in verdicts:
                preview = self.adapter.preview(base, names[:k])
                verdicts[k] = self._evaluate(preview, "fallback")[0]
                if self.adapter.exact_preview:
                    self.adapter.park(preview)
                    kept[k] = preview
                else:
                    self.adapter.release(preview)
                log.info("fallback: top %d in float: %s", k, verdicts[k].score.summary())
            return verdicts[k]

        # doubling, then bisection between the last failure and the first success
        low, high, k = 0, None, 1
        while k <= limit and not self._out_of_time("the fallback"):
            self.progress(f"int8: trying {k} node(s) in float")
            if check(k).score.passed:
                high = k
                break
            low = k
            k = k * 2 if k < limit and k * 2 <= limit else (limit if k < limit else limit + 1)
        if high is not None:
            while high - low > 1 and not self._out_of_time("the fallback"):
                mid = (low + high) // 2
                if check(mid).score.passed:
                    high = mid
                else:
                    low = mid
        in_bounds = [n for n in verdicts if n <= limit]
        if high is not None:
            chosen = high
        elif in_bounds:
            chosen = min(in_bounds, key=lambda n: verdicts[n].score.budget)
        else:
            chosen = 0
        would_take = None
        if high is None:
            would_take = self._what_it_would_take(names, limit, check)
        for n, cand in kept.items():
            if n != chosen:
                self.adapter.release(cand)
        if chosen == 0:
            return base, self.trials[0], [], would_take
        if self.adapter.exact_preview:
            return kept[chosen], verdicts[chosen], names[:chosen], would_take
        # the real build, extended one node at a time if the preview's promise does not hold
        while True:
            exclude = names[:chosen]
            cand, trial, _ = self._build_and_score(base.recipe, exclude, "final")
            if trial.score.passed or chosen >= limit or self._out_of_time("the final build") or high is None:
                break
            self.adapter.release(cand)
            chosen += 1
        return cand, trial, names[:chosen], would_take

    def _what_it_would_take(self, names: list[str], limit: int, check: Callable[[int], Trial]) -> str:
        total = len(names)
        if total == 0:
            return "no node of this model is quantized: INT8 cannot change; try fp16"
        if self.clock.left() <= 0:
            return (
                f"the time budget ran out; raise it (--search-budget) or allow more nodes in float "
                f"(--max-revert, now {self.settings.max_revert:g})"
            )
        k = limit
        while k < total and self.clock.left() > 0:
            k = min(max(k * 2, k + 1), total)
            if check(k).score.passed:
                share = math.ceil(100 * k / total) / 100
                return (
                    f"the gate holds with at most {k} of {total} quantized nodes in float: rerun with "
                    f"--max-revert {share:g}, or choose fp16"
                )
        if k >= total:
            return (
                f"even with every quantized node in float it reaches {check(total).score.summary()}: "
                "the gate is out of INT8's reach on this model; loosen it or choose fp16"
            )
        return "the time budget ran out before finding how many nodes would need float; choose fp16"

    # ---- all -----------------------------------------------------------------------------------
    def run(self) -> Outcome:
        timings: dict[str, float] = {}
        mark = time.perf_counter()
        best, best_trial, best_outputs, default_score = self.recipes()
        timings["recipes_s"] = time.perf_counter() - mark
        nodes = self.adapter.quantized_nodes(best)
        sensitivity: list[dict[str, Any]] = []
        excluded: list[str] = []
        would_take = None
        before: tuple[Candidate, Score] | None = None
        refused = self.adapter.full_integer and not self.settings.allow_float_ops
        if (
            not best_trial.score.passed
            and self.settings.search
            and self.settings.fallback
            and nodes
            and refused
        ):
            would_take = (
                "keeping sensitive nodes in float, which leaves float ops in this full-integer artifact: "
                "rerun with --allow-float-ops if the device's runtime may run them (a delegate may not)"
            )
        elif not best_trial.score.passed and self.settings.search and self.settings.fallback and nodes:
            self.progress(f"int8: best recipe {best_trial.score.summary()}; ranking {len(nodes)} nodes")
            mark = time.perf_counter()
            sensitivity = self.rank(best, best_outputs, nodes)
            timings["ranking_s"] = time.perf_counter() - mark
            mark = time.perf_counter()
            final, final_trial, excluded, would_take = self.fallback(best, sensitivity)
            timings["fallback_s"] = time.perf_counter() - mark
            if final is not best and (
                final_trial.score.passed or _key(self.adapter, final_trial) < _key(self.adapter, best_trial)
            ):
                before = (best, best_trial.score)
                best, best_trial = final, final_trial
            else:
                if final is not best:
                    self.adapter.release(final)
                excluded = []
        elif nodes and self.settings.search:
            local = self.adapter.node_errors(
                best, self.data.subset(range(min(self.settings.ranking_samples, len(self.data))))
            )
            sensitivity = [
                {**self.adapter.describe(n), "local_error": _r(local.get(n)), "recovery": None}
                for n in sorted(nodes, key=lambda n: -local.get(n, 0.0))
            ]
            for position, row in enumerate(sensitivity, 1):
                row["rank"] = position
        if not best_trial.score.passed and would_take is None:
            if not self.settings.search:
                would_take = (
                    "search is off (--no-search); drop it to let edgekit search recipes and fall back"
                )
            elif not nodes:
                would_take = "no node of this model is quantized: INT8 cannot change; try fp16"
        return Outcome(
            candidate=best,
            score=best_trial.score,
            default_score=default_score,
            trials=self.trials,
            excluded=excluded,
            sensitivity=sensitivity,
            quantized_nodes=len(nodes),
            passed=best_trial.score.passed,
            notes=self.notes,
            would_take=would_take,
            seconds=self.clock.elapsed(),
            budget_exhausted=self.exhausted,
            before_fallback=before[0] if before else None,
            before_fallback_score=before[1] if before else None,
            timings={k: round(v, 2) for k, v in timings.items()},
        )


def _r(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.6g}")
