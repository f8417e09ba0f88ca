"""inspect's runtime-memory estimate vs measured onnxruntime process-memory growth.

For each realistic model built in code (tests/analysis_models.py), run onnxruntime (CPU EP, default
session options) in a fresh subprocess and measure RSS after session creation + one run minus RSS
after `import onnxruntime` and input allocation. Prints inspect's fp32 estimate, the rule of thumb
(params x 4 B x 1.2), and each one's ratio to the measurement, plus inspect's own wall time.

    python benchmarks/bench_memory.py [--only NAME ...] [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402

from edgekit import analysis  # noqa: E402
from tests.analysis_models import REALISTIC  # noqa: E402

MB = 1024 * 1024

CHILD = r"""
import json, sys
import numpy as np
import onnxruntime as ort

def status(key):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0

path, shapes = sys.argv[1], json.loads(sys.argv[2])
feeds = {name: np.random.default_rng(0).random(shape, dtype=np.float32) for name, shape in shapes.items()}
base = status("VmRSS")
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
loaded = status("VmRSS")
session.run(None, feeds)
ran = status("VmRSS")
print(json.dumps({"base": base, "loaded": loaded, "ran": ran, "hwm": status("VmHWM")}))
"""


def measure(path: Path, shapes: dict[str, list[int]], repeat: int = 1) -> dict[str, float]:
    """Process-memory growth in bytes (median of `repeat` fresh processes)."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), json.dumps(shapes)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    runs.sort(key=lambda r: r["ran"] - r["base"])
    mid = runs[len(runs) // 2]
    return {
        "growth": mid["ran"] - mid["base"],
        "after_load": mid["loaded"] - mid["base"],
        "hwm_growth": mid["hwm"] - mid["base"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="model names to run")
    parser.add_argument("--repeat", type=int, default=1, help="fresh processes per model (median)")
    parser.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    args = parser.parse_args()
    names = args.only or list(REALISTIC)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            model, _ = REALISTIC[name]()
            path = Path(tmp) / f"{name}.onnx"
            onnx.save(model, str(path))
            del model
            start = time.perf_counter()
            report = analysis.analyze(path)
            inspect_s = time.perf_counter() - start
            measured = measure(path, report.analysis_shapes, args.repeat)
            estimate = report.memory_estimate_bytes["fp32"]
            thumb = report.params * 4 * 1.2
            records.append(
                {
                    "model": name,
                    "params_m": report.params / 1e6,
                    "weights_mb": report.weight_bytes["fp32"] / MB,
                    "peak_act_mb": report.peak_activation_bytes_by_precision["fp32"] / MB,
                    "gmacs": report.total_macs / 1e9,
                    "estimate_mb": estimate / MB,
                    "measured_mb": measured["growth"] / MB,
                    "after_load_mb": measured["after_load"] / MB,
                    "hwm_mb": measured["hwm_growth"] / MB,
                    "ratio": estimate / measured["growth"],
                    "thumb_mb": thumb / MB,
                    "thumb_ratio": thumb / measured["growth"],
                    "inspect_s": inspect_s,
                }
            )
            path.unlink()
    if args.json:
        print(json.dumps(records, indent=1))
        return
    print(analysis.ESTIMATE_FORMULA)
    print()
    head = (
        f"{'model':24} {'params M':>8} {'weights MB':>10} {'peak act MB':>11} {'GMACs':>7} "
        f"{'estimate MB':>11} {'measured MB':>11} {'ratio':>6} {'peak RSS MB':>11} "
        f"{'thumb MB':>9} {'thumb ratio':>11} "
        f"{'inspect s':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in records:
        print(
            f"{r['model']:24} {r['params_m']:8.2f} {r['weights_mb']:10.1f} {r['peak_act_mb']:11.1f} "
            f"{r['gmacs']:7.2f} {r['estimate_mb']:11.1f} {r['measured_mb']:11.1f} {r['ratio']:6.2f} "
            f"{r['hwm_mb']:11.1f} "
            f"{r['thumb_mb']:9.1f} {r['thumb_ratio']:11.2f} {r['inspect_s']:9.2f}"
        )
    worst = max(abs(r["ratio"] - 1) for r in records)
    print("\nmeasured = RSS after session creation + one run - RSS after import and input allocation;")
    print("peak RSS = VmHWM growth over the same baseline. mobilenetish/decoderish were held out of the fit.")
    print(f"worst estimate error: {100 * worst:.0f}% (aim: within 25%)")


if __name__ == "__main__":
    main()
