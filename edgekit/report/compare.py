"""`--baseline`: the same model, target, precision and device in an older run, judged statistically
for latency (see `edgekit.report.stats`) and by tolerances for fidelity."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgekit.report.model import FAILED_STATES, Row
from edgekit.report.stats import LatencyVerdict, compare_latency


@dataclass
class Thresholds:
    """When a difference counts as a regression (CLI flags and the release's [bench] table)."""

    max_slowdown_pct: float = 10.0  # effect floor for the median's change
    confidence: float = 0.95
    max_accuracy_loss: float = 0.5  # percentage points of task accuracy
    max_cosine_loss: float = 0.002  # drop of the lowest output cosine

    def to_json(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass
class Comparison:
    key: tuple[str, str, str, str]
    baseline: Row | None
    new: Row | None
    latency: LatencyVerdict | None = None
    regressions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # what differs besides the device's own variation

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    @property
    def label(self) -> str:
        model, target, precision, device = self.key
        return f"{model} {target} {precision} @ {device}"

    def to_json(self) -> dict[str, Any]:
        model, target, precision, device = self.key
        return {
            "model": model,
            "target": target,
            "precision": precision,
            "device": device,
            "baseline_state": self.baseline.state if self.baseline else None,
            "new_state": self.new.state if self.new else None,
            "latency": self.latency.to_json() if self.latency else None,
            "regressions": self.regressions,
            "notes": self.notes,
            "changed": self.changed,
            "regression": self.regressed,
        }


def _fidelity(base: Row, new: Row, limits: Thresholds, out: Comparison) -> None:
    if base.accuracy is not None and new.accuracy is not None:
        loss = base.accuracy - new.accuracy
        if loss > limits.max_accuracy_loss:
            out.regressions.append(
                f"accuracy {base.accuracy:.2f}% -> {new.accuracy:.2f}% "
                f"(-{loss:.2f} points > {limits.max_accuracy_loss})"
            )
    if base.cosine is not None and new.cosine is not None:
        loss = base.cosine - new.cosine
        if loss > limits.max_cosine_loss:
            out.regressions.append(
                f"cosine {base.cosine:.5f} -> {new.cosine:.5f} (-{loss:.5f} > {limits.max_cosine_loss})"
            )


def compare_rows(base: Row | None, new: Row | None, limits: Thresholds) -> Comparison:
    key = (new or base).key  # type: ignore[union-attr]
    out = Comparison(key, base, new)
    if new is None:
        out.notes.append("in the baseline only (not run this time)")
        return out
    if base is None:
        out.notes.append("new (not in the baseline)")
        return out
    if new.state in FAILED_STATES and base.state not in FAILED_STATES:
        reason = f": {new.reason}" if new.reason else ""
        out.regressions.append(f"{base.state} -> {new.state}{reason}")
        return out
    if base.state in FAILED_STATES and new.state not in FAILED_STATES:
        out.notes.append(f"fixed: {base.state} -> {new.state}")
    _fidelity(base, new, limits, out)
    out.changed = what_changed(base, new)
    if base.latency_clusters and new.latency_clusters:
        noise = {f"baseline {k}": v for k, v in base.noise().items()}
        noise.update({f"new {k}": v for k, v in new.noise().items()})
        out.latency = compare_latency(
            base.latency_clusters, new.latency_clusters, limits.max_slowdown_pct, noise, limits.confidence
        )
        v = out.latency
        if v.verdict in ("slower", "faster") and not out.changed:
            _same_conditions_shift(base, new, v, out)
        elif v.regression:
            out.regressions.append(
                f"p50 {v.baseline_p50:.4g} -> {v.new_p50:.4g} ms (+{v.change_pct:.1f}%, "
                f"{v.confidence:.0%} CI {v.ci_pct[0]:+.1f}..{v.ci_pct[1]:+.1f}% > floor {v.floor_pct:.1f}%)"
            )
    elif base.p50 is not None and new.p50 is not None:
        out.notes.append("no per-iteration samples on one side: latency not judged")
    if out.changed:
        out.notes.append("changed: " + "; ".join(out.changed))
    return out


def _same_conditions_shift(base: Row, new: Row, v: LatencyVerdict, out: Comparison) -> None:
    """A latency shift with the artifact, runtime, settings and device software unchanged. Noise is
    decided by repeated sessions, not by that identity: with several sessions on each side the two-level
    bootstrap carries their run-to-run spread, so an interval beyond the floor is the device itself
    (thermal throttling, a firmware or power-mode change). With one session on a side, run-to-run noise
    is unknown and nothing is called."""
    sessions = len(base.latency_clusters), len(new.latency_clusters)
    same = "with the same artifact, runtime, settings and device software"
    if min(sessions) < 2:
        out.notes.append(
            f"p50 {v.change_pct:+.1f}% {same}, but one session on a side: its run-to-run noise is unknown; "
            "repeat the bench (--repeats 3 or more) to tell a device-side change from noise"
        )
        return
    evidence = (
        f"baseline {sessions[0]} sessions, new {sessions[1]} sessions; p50 {v.baseline_p50:.4g} -> "
        f"{v.new_p50:.4g} ms ({v.change_pct:+.1f}%, {v.confidence:.0%} CI {v.ci_pct[0]:+.1f}..{v.ci_pct[1]:+.1f}% "
        f"beyond the floor {v.floor_pct:.1f}% from {v.floor_from})"
    )
    if v.verdict == "slower":
        out.regressions.append(
            f"device-side regression {same}: the device itself became slower (thermal throttling, a "
            f"firmware or power-mode change); evidence: {evidence}"
        )
    else:
        out.notes.append(f"the device became faster {same}; evidence: {evidence}")


def what_changed(base: Row, new: Row) -> list[str]:
    """The differences that can move a latency: the artifact itself, then the run's conditions."""
    out = []
    if base.sha256 != new.sha256 or not base.sha256:
        out.append(
            "artifact" + (f" {base.sha256[:12]} -> {new.sha256[:12]}" if base.sha256 and new.sha256 else "")
        )
    for key, old in base.conditions.items():
        value = new.conditions.get(key)
        if old != value and not (old is None or value is None):
            if isinstance(old, dict) and isinstance(value, dict):
                diff = [
                    f"{k} {old.get(k)} -> {value.get(k)}"
                    for k in sorted(set(old) | set(value))
                    if old.get(k) != value.get(k)
                ]
                out.append(f"{key}: " + ", ".join(diff))
            else:
                out.append(f"{key} {old} -> {value}")
    return out


def compare(baseline: list[Row], new: list[Row], limits: Thresholds) -> list[Comparison]:
    old = {r.key: r for r in baseline}
    cur = {r.key: r for r in new}
    keys = list(cur) + [k for k in old if k not in cur]
    return [compare_rows(old.get(k), cur.get(k), limits) for k in keys]
