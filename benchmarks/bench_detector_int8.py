"""The demo detector's default `--int8` on every INT8 backend, judged by its detections on images the
export never saw: one table (issue 15's acceptance).

    python benchmarks/bench_detector_int8.py [--targets x86-cpu,arm64-cpu,...] [--json out.json]

For each target two exports of calibration/shapes/shapes_det.onnx at 640x640 (`--calib` only, so the
validation images stay unseen by the search): the pre-fix number (`--no-search`: the single all-INT8
default recipe) and edgekit's default `--int8` (recipe search, head-aware recipes, fallback). Each is then
verified on calibration/shapes/val.npz (24 scenes, none used for calibration or selection) with
`edgekit verify`: detection F1 / recall / precision of the artifact's detections against FP32's
(decode, NMS at IoU 0.45, score >= 0.25, same class and IoU >= 0.5), and what the export kept in float.
TensorRT targets are scored as their host runner verifies them: the Q/DQ ONNX through onnxruntime with
reference Q/DQ semantics (no TensorRT here).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekit import api  # noqa: E402
from edgekit.backends import get_backend  # noqa: E402
from edgekit.backends.base import ExportOptions  # noqa: E402
from edgekit.errors import EdgekitError  # noqa: E402
from edgekit.int8 import search_record  # noqa: E402
from edgekit.resources import DETECTOR_INPUT_SHAPE, detector_paths  # noqa: E402
from edgekit.targets import get as get_target  # noqa: E402

TARGETS = ("x86-cpu", "arm64-cpu", "intel-cpu", "jetson-orin-nano", "android-arm64")


def kept_in_float(manifest: dict[str, Any]) -> str:
    """What the INT8 artifact keeps in float, in a few words: the head recipe, reverted nodes, float
    outputs, or the whole activations (TFLite dynamic range)."""
    record = search_record(manifest) or {}
    parts: list[str] = []
    if manifest.get("backend") == "tensorrt":  # the placement quantizes weighted layers' inputs only
        parts.append("TensorRT placement: Q/DQ only before Conv/MatMul, the decode runs in float")
    head = record.get("head") or {}
    if head.get("kept_in_float"):
        parts.append(f"head {head.get('recipe')} ({len(head['kept_in_float'])} nodes)")
    recipe = record.get("recipe") or {}
    if recipe.get("outputs") == "float":
        parts.append("outputs")
    if recipe.get("scope") == "compute":
        parts.append("non-Conv/MatMul ops")
    if recipe.get("activations") == "float":
        parts.append("all activations")
    reverted = record.get("reverted") or []
    if reverted:
        parts.append(f"{len(reverted)} sensitive nodes")
    for warning in manifest.get("warnings") or []:
        if "float" in warning and "output" in warning:
            parts.append("float outputs")
            break
    return ", ".join(parts) or "nothing"


def one(target: str, search: bool, tmp: Path) -> dict[str, Any]:
    paths = detector_paths()
    started = time.perf_counter()
    outcome = api.export(
        api.ExportRequest(
            model=paths["model"],
            target=target,
            precision="int8",
            calib=paths["calib"],
            input_shapes=DETECTOR_INPUT_SHAPE,
            out_dir=tmp / ("edgekit" if search else "default"),
            options=ExportOptions(search=search),
        )
    )
    export_s = time.perf_counter() - started
    report = api.verify(api.VerifyRequest(str(outcome.path), str(paths["val"])))
    fidelity = getattr(report, "fidelity", report)
    task = fidelity.task or {}
    metrics = task.get("metrics") or {}
    record = search_record(outcome.manifest) or {}
    return {
        "target": target,
        "mode": "default --int8" if search else "pre-fix (--no-search)",
        "passed": fidelity.passed,
        "f1": metrics.get("f1"),
        "recall": metrics.get("recall"),
        "precision": metrics.get("precision"),
        "interval": (task.get("intervals") or {}).get("f1"),
        "matched": metrics.get("matched"),
        "reference_detections": metrics.get("reference_detections"),
        "slices": {s["label"]: round(s["cosine"], 4) for s in fidelity.slices or [] if s.get("label")},
        "kept_in_float": kept_in_float(outcome.manifest),
        "recipe": record.get("recipe"),
        "runtime": fidelity.runtime,
        "failures": fidelity.failures,
        "export_s": round(export_s, 1),
    }


def _f(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| target | pre-fix F1 (all-INT8 default) | default --int8 F1 [95% CI] | recall | precision | "
        "gate | kept in float | export s |"
    )
    lines = [head, "|" + "---|" * 8]
    by_target: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_target.setdefault(r["target"], {})["fixed" if r["mode"].startswith("default") else "pre"] = r
    for target, pair in by_target.items():
        pre, fixed = pair.get("pre", {}), pair.get("fixed", {})
        if "error" in fixed:
            lines.append(f"| {target} | {_f(pre.get('f1'))} | error: {fixed['error'][:90]} | | | | | |")
            continue
        interval = fixed.get("interval")
        ci = f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""
        pre_text = f"error: {pre['error'][:40]}" if "error" in pre else _f(pre.get("f1"))
        if pre and "error" not in pre:
            pre_text += " (pass)" if pre.get("passed") else " (FAIL)"
        lines.append(
            f"| {target} | {pre_text} | {_f(fixed.get('f1'))}{ci} | {_f(fixed.get('recall'))} | "
            f"{_f(fixed.get('precision'))} | {'pass' if fixed.get('passed') else 'FAIL'} | "
            f"{fixed.get('kept_in_float')} | {_f(fixed.get('export_s'), '.0f')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--json", type=Path, help="write every row here")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-det-int8-") as tmp_dir:
        for target in args.targets.split(","):
            if not get_backend(get_target(target).backend).available():
                rows.append({"target": target, "mode": "default --int8", "error": "backend not installed"})
                continue
            for search in (False, True):
                try:
                    rows.append(one(target, search, Path(tmp_dir) / target))
                except EdgekitError as exc:
                    mode = "default --int8" if search else "pre-fix (--no-search)"
                    rows.append({"target": target, "mode": mode, "error": str(exc)})
                print(json.dumps(rows[-1], default=str), flush=True)
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
