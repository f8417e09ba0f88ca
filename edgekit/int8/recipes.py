"""Recipes: one point in a backend's INT8 configuration space, and the space itself.

A backend describes its space as ordered dimensions; the first value of each is the single recipe
`--no-search` uses (today's behaviour). The search moves one dimension at a time from the best
recipe so far (coordinate search), so the cost grows with the sum of the dimensions' sizes, not
their product.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Dimension:
    name: str
    values: tuple[Any, ...]  # first = the default recipe's value
    why: str = ""  # one line for the manifest: why this knob is searched


@dataclass(frozen=True)
class Recipe:
    knobs: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, knobs: Mapping[str, Any]) -> Recipe:
        return cls(tuple(knobs.items()))

    def get(self, name: str, default: Any = None) -> Any:
        return dict(self.knobs).get(name, default)

    def with_(self, name: str, value: Any) -> Recipe:
        knobs = dict(self.knobs)
        knobs[name] = value
        return Recipe.of(knobs)

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.knobs)

    def to_json(self) -> dict[str, Any]:
        return dict(self.knobs)


@dataclass(frozen=True)
class Space:
    dimensions: tuple[Dimension, ...]

    def default(self) -> Recipe:
        return Recipe.of({d.name: d.values[0] for d in self.dimensions})

    def neighbours(self, recipe: Recipe, dimension: Dimension) -> Iterator[Recipe]:
        for value in dimension.values:
            if value != recipe.get(dimension.name):
                yield recipe.with_(dimension.name, value)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"name": d.name, "values": list(d.values), "why": d.why} for d in self.dimensions]


def ordered(default: Any, values: Sequence[Any]) -> tuple[Any, ...]:
    """`values` with `default` first (added when missing), without duplicates."""
    out = [default]
    out.extend(v for v in values if v != default)
    return tuple(dict.fromkeys(out))
