"""A user's own metric: `--metric module:function` (or a callable in the API), called as
`fn(reference: dict[str, ndarray], actual: dict[str, ndarray], labels: ndarray | None)`; it returns a
float (higher is better, gated by `min_metric`) or a Mapping with "score" and optionally "passed"."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edgekit.errors import BadInput

Metric = Callable[[dict[str, np.ndarray], dict[str, np.ndarray], "np.ndarray | None"], Any]


def load_metric(spec: str) -> Metric:
    """The function named by "module:function" (dotted attributes allowed after the colon)."""
    module_name, sep, attr = str(spec).partition(":")
    if not sep or not module_name or not attr:
        raise BadInput(f"--metric '{spec}' is not module:function (e.g. mymetrics:detection_score)")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise BadInput(
            f"--metric '{spec}': cannot import module '{module_name}' ({exc}); put it on "
            "PYTHONPATH or in the current directory"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed while importing
        raise BadInput(
            f"--metric '{spec}': importing '{module_name}' failed: {type(exc).__name__}: {exc}".replace(
                "\n", " "
            )
        ) from None
    for part in attr.split("."):
        if not hasattr(target, part):
            raise BadInput(f"--metric '{spec}': module '{module_name}' has no '{attr}'")
        target = getattr(target, part)
    if not callable(target):
        raise BadInput(f"--metric '{spec}': '{attr}' is not a function")
    return target


def metric_name(fn: Metric) -> str:
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}:{getattr(fn, '__qualname__', getattr(fn, '__name__', repr(fn)))}"


def call(
    fn: Metric,
    reference: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    labels: np.ndarray | None,
) -> tuple[float, bool | None]:
    """(score, the metric's own verdict or None)."""
    try:
        result = fn(dict(reference), dict(actual), labels)
    except Exception as exc:  # noqa: BLE001 - the user's code: say whose and what
        raise BadInput(
            f"metric {metric_name(fn)} failed: {type(exc).__name__}: {exc}".replace("\n", " ")
        ) from None
    passed = None
    if isinstance(result, Mapping):
        if "score" not in result:
            raise BadInput(
                f"metric {metric_name(fn)} returned a mapping without 'score' (keys: {', '.join(map(str, result))})"
            )
        passed = None if result.get("passed") is None else bool(result["passed"])
        result = result["score"]
    try:
        value = float(result)
    except (TypeError, ValueError):
        raise BadInput(f"metric {metric_name(fn)} returned {type(result).__name__}, not a number") from None
    return (value if math.isfinite(value) or not math.isnan(value) else float("nan")), passed
