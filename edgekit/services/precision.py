"""`--precision auto`: export every precision the target offers, keep the fastest that passes the gate.

Each precision is exported (INT8 with its search) and verified on the validation set (or, without one,
on the calibration set: FP32/FP16 do not calibrate, and INT8 scores on its own held-out part). Those
that run on this machine with the target's own runtime are timed here, interleaved in rounds so that
a busy machine slows every candidate alike, with the agent's timing loop. The winner is written as
`<model>.<target>.<precision>/`, its manifest listing every alternative with its fidelity and p50; the
others are not kept. When INT8 passes but is slower than a float precision, the record says so.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgekit.errors import BadInput, EdgekitError
from edgekit.int8 import search_record

log = logging.getLogger(__name__)

ROUNDS = 3
ITERATIONS_PER_ROUND = 50
WARMUP = 10
MIN_ROUND_S = 0.3
TIE = 0.05  # p50s this close count as equally fast


def export_auto(req: Any, progress: Callable[[str], None], export_one: Callable[..., Any]) -> Any:
    """`export` for `precision="auto"` (req: an ExportRequest); returns the winner's ExportOutcome.
    `export_one(request, progress)` exports one precision: the export service passes its own `export`,
    so this module needs nothing above it."""
    from edgekit import targets as target_profiles
    from edgekit.fsio import replace_dir, write_json_atomic
    from edgekit.manifest import MANIFEST

    target = target_profiles.get(req.target, req.targets_dirs)
    if req.val is None and req.calib is None:
        raise BadInput(
            "--precision auto needs --val SET (or at least --calib SET) to check each precision's gate"
        )
    out_root = Path(req.out_dir).expanduser()
    out_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tmp-auto-", dir=out_root))
    try:
        rows: list[dict[str, Any]] = []
        outcomes: dict[str, Any] = {}
        for precision in target.precisions:
            progress(f"auto: exporting {precision}")
            sub = replace(req, precision=precision, out_dir=work, val=req.val or req.calib)
            if precision == "int8":
                sub = replace(sub, val=req.val)  # INT8 never verifies on its own calibration samples
            row: dict[str, Any] = {"precision": precision}
            rows.append(row)
            try:
                outcome = export_one(sub, progress)
            except EdgekitError as exc:
                row.update(status="export failed", error=str(exc))
                continue
            outcomes[precision] = outcome
            row.update(_fidelity_row(outcome))
        timed = _time_here(target, outcomes, rows, progress)
        passing = [r for r in rows if r.get("passed") is True]
        if not passing:
            chosen_row = None
        elif timed and any(r.get("p50_ms") for r in passing):
            fastest = min(r["p50_ms"] for r in passing if r.get("p50_ms"))
            # within TIE of the fastest is within a shared machine's noise: the smaller artifact wins
            tied = [r for r in passing if r.get("p50_ms") and r["p50_ms"] <= fastest * (1 + TIE)]
            chosen_row = min(tied, key=lambda r: r.get("bytes") or 0)
        else:  # nothing runs here: the smallest passing artifact (INT8 < FP16 < FP32 in bytes)
            chosen_row = min(passing, key=lambda r: r.get("bytes") or 0)
        if chosen_row is None:
            best = max(
                (r for r in rows if r["precision"] in outcomes),
                key=lambda r: r.get("cosine") or -1.0,
                default=None,
            )
            if best is None:
                raise BadInput("--precision auto: no precision could be exported: " + _errors(rows))
            chosen_row = best
        proxy = target_profiles.host_proxy(target) if timed else None
        choice = _choice_record(chosen_row, rows, timed, proxy=proxy)
        outcome = outcomes[chosen_row["precision"]]
        manifest = dict(outcome.manifest)
        manifest["precision_choice"] = choice
        write_json_atomic(outcome.path / MANIFEST, manifest)
        final = out_root / outcome.path.name
        replace_dir(outcome.path, final)
        return type(outcome)(final, manifest, outcome.fidelity)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fidelity_row(outcome: Any) -> dict[str, Any]:
    report = outcome.fidelity
    manifest = outcome.manifest
    search = search_record(manifest) or {}
    # nothing measured (no verification, no search record, e.g. --dynamic) is never a pass
    passed = report.passed if report is not None else search.get("passed")
    return {
        "status": "not measured" if passed is None else "ok" if passed else "gate failed",
        "passed": passed,
        "effective_precision": manifest.get("effective_precision"),
        "cosine": min((o.cosine for o in report.outputs), default=None) if report else None,
        "accuracy_drop": report.accuracy_drop if report else None,
        "failures": list(report.failures) if report else [],
        "bytes": manifest["size"]["artifact_bytes"],
        "int8_nodes_in_float": len(search.get("reverted", [])) if search else None,
    }


def _time_here(
    target: Any, outcomes: dict[str, Any], rows: list[dict[str, Any]], progress: Callable[[str], None]
) -> bool:
    """p50 of every precision that runs here with the target's runtime, through the one timing path
    (`runner.bench_local`: the local device agent's loop, as `edgekit bench --device local`), in
    interleaved rounds: a precision's p50 is the median of its rounds' p50s."""
    import statistics

    from edgekit import runner
    from edgekit import targets as target_profiles
    from edgekit.backends import get_backend

    here = {p: o for p, o in outcomes.items() if get_backend(target.backend).times_here(target, o.manifest)}
    if not here:
        for row in rows:
            row["p50_ms"] = None
        return False
    progress(f"auto: timing {', '.join(here)} here ({ROUNDS} interleaved rounds)")
    rounds: dict[str, list[float]] = {p: [] for p in here}
    runtime: dict[str, str] = {}
    for _ in range(ROUNDS):
        for precision, outcome in here.items():
            try:
                record = runner.bench_local(
                    outcome.path, iterations=ITERATIONS_PER_ROUND, warmup=WARMUP, min_duration_s=MIN_ROUND_S
                )
            except EdgekitError as exc:
                log.warning("timing %s failed: %s", precision, exc)
                continue
            rounds[precision].append(float(record["latency_ms"]["p50"]))
            info = record.get("runtime") or {}
            runtime[precision] = " ".join(str(v) for v in (info.get("name"), info.get("version")) if v)
    for row in rows:
        precision = row["precision"]
        if rounds.get(precision):
            row["p50_ms"] = round(statistics.median(rounds[precision]), 4)
            row["timed_as"] = f"{runtime.get(precision) or target.backend} on this host"
            proxy = target_profiles.host_proxy(target)
            if proxy:
                row["timed_as"] += " (host proxy)"
                row["host_proxy"] = proxy
        else:
            row["p50_ms"] = None
    return any(rounds.values())


def _choice_record(
    chosen: dict[str, Any], rows: list[dict[str, Any]], timed: bool, proxy: str | None = None
) -> dict[str, Any]:
    """`proxy`: why this host's timings are not the target's (another architecture), when they are not."""
    why: list[str] = []
    if not chosen.get("passed"):
        why.append(f"no precision passes the gate; {chosen['precision']} comes closest")
    elif timed and chosen.get("p50_ms"):
        why.append(
            f"{chosen['precision']} is the fastest precision that passes the gate on this host "
            f"(p50 within {TIE:.0%} counts as a tie, then the smaller artifact wins)"
        )
    else:
        why.append(
            f"{chosen['precision']} is the smallest precision that passes the gate; none of them runs here "
            "with the target's runtime, so none was timed (bench them on the device: `edgekit bench --device`)"
        )
    int8 = next((r for r in rows if r["precision"] == "int8"), None)
    floats = [r for r in rows if r["precision"] != "int8" and r.get("passed") and r.get("p50_ms")]
    if int8 and int8.get("passed") and int8.get("p50_ms") and floats:
        fastest = min(floats, key=lambda r: r["p50_ms"])
        if int8["p50_ms"] > fastest["p50_ms"]:
            why.append(
                f"INT8 passes the gate but is {int8['p50_ms'] / fastest['p50_ms']:.2f}x slower than "
                f"{fastest['precision'].upper()} here ({int8['p50_ms']:.3f} vs {fastest['p50_ms']:.3f} ms p50): "
                "this runtime's INT8 kernels do not pay off for this model on this CPU"
            )
    if proxy and timed:
        why.append(f"chosen on a {proxy}")
    return {"chosen": chosen["precision"], "why": why, "alternatives": rows, "host_proxy": proxy}


def _errors(rows: list[dict[str, Any]]) -> str:
    return "; ".join(f"{r['precision']}: {r.get('error', r.get('status'))}" for r in rows)
