"""What the INT8 search (edgekit.int8.engine) and a backend exchange: the `Adapter` seam a backend's
INT8 path implements, the `Candidate` it builds, the search's `Settings`, and its results (`Trial` per
scored candidate, `Outcome` of the whole search)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edgekit.int8.recipes import Recipe, Space
from edgekit.int8.scoring import Outputs, Score, ScoringSet


class Candidate:
    """A built INT8 model: whatever the adapter needs to run it (a path, a compiled model)."""

    def __init__(self, recipe: Recipe, exclude: Sequence[str], handle: Any, preview: bool = False) -> None:
        self.recipe = recipe
        self.exclude = tuple(exclude)
        self.handle = handle
        self.preview = preview


class Adapter(ABC):
    """What the engine asks of a backend's INT8 path."""

    name: str = ""
    exact_preview: bool = False  # preview() builds exactly what build() would: no rebuild at the end
    # a full-integer artifact (e.g. Android int8 I/O): nodes kept in float break that promise, so
    # fallback needs the user's consent (Settings.allow_float_ops, --allow-float-ops)
    full_integer: bool = False

    @abstractmethod
    def space(self) -> Space:
        """The recipes this target allows, default first."""

    @abstractmethod
    def build(self, recipe: Recipe, exclude: Sequence[str] = ()) -> Candidate:
        """The real INT8 model for a recipe with `exclude` (node names) kept in float."""

    @abstractmethod
    def run(self, candidate: Candidate, data: ScoringSet) -> Outputs:
        """Outputs on every sample, stacked on axis 0, as `verify` would compute them."""

    @abstractmethod
    def quantized_nodes(self, candidate: Candidate) -> list[str]:
        """Names of the nodes that run in INT8 in `candidate` (what fallback may keep in float)."""

    def preview(self, base: Candidate, exclude: Sequence[str]) -> Candidate:
        """A cheap stand-in for build(base.recipe, exclude); default: the real build."""
        return self.build(base.recipe, exclude)

    def node_errors(self, candidate: Candidate, data: ScoringSet) -> dict[str, float]:
        """One-pass error each quantized node adds (orders the measurements); default: none."""
        return {}

    def float_share(self, recipe: Recipe) -> int:
        """0 for recipes that quantize everything they can; more for those that keep ops in float."""
        return 0

    def describe(self, node: str) -> dict[str, Any]:
        """The node by its original ONNX name(s) and op type, for records."""
        return {"node": node}

    def release(self, candidate: Candidate) -> None:  # noqa: B027 - optional hook
        """Free a candidate that was not kept."""

    def park(self, candidate: Candidate) -> None:  # noqa: B027 - optional hook
        """Free what running a candidate held (a session) while keeping the candidate itself."""


@dataclass
class Settings:
    search: bool = True  # False: the default recipe only (--no-search)
    fallback: bool = True
    max_revert: float = 0.25  # at most this share of the quantized nodes kept in float
    time_budget_s: float = 600.0
    ranking_samples: int = 32
    allow_float_ops: bool = False  # full-integer targets: fallback may leave float ops
    # a passing recipe using at most this share of the gate's error budget ends the recipe search
    settle_budget: float = 0.5


@dataclass
class Trial:
    stage: str  # recipe | rank | fallback | final
    recipe: Recipe
    excluded: int
    score: Score
    seconds: float
    preview: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "recipe": self.recipe.to_json(),
            "excluded": self.excluded,
            "preview": self.preview,
            "seconds": round(self.seconds, 3),
            **self.score.to_json(),
        }


@dataclass
class Outcome:
    candidate: Candidate
    score: Score
    default_score: Score
    trials: list[Trial]
    excluded: list[str]
    sensitivity: list[dict[str, Any]]
    quantized_nodes: int
    passed: bool
    notes: list[str] = field(default_factory=list)
    would_take: str | None = None
    seconds: float = 0.0
    budget_exhausted: bool = False
    before_fallback: Candidate | None = None  # the best recipe without fallback, kept to cost it
    before_fallback_score: Score | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    def summary(self) -> str:
        verdict = "passes" if self.passed else "FAILS"
        text = f"{verdict} the gate: {self.score.summary()}"
        if self.excluded:
            text += f", {len(self.excluded)} of {self.quantized_nodes} quantized nodes kept in float"
        if not self.passed and self.would_take:
            text += f"; {self.would_take}"
        return text
