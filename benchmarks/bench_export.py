"""The foundation's figures in one run: for the demo model, export time per precision and p50 latency
FP32 vs FP16 vs INT8 on onnxruntime (ratios), then inspect's memory estimate against measured
onnxruntime process memory for realistic models (benchmarks/bench_memory.py).

    python benchmarks/bench_export.py [--iterations N] [--threads N] [--skip-memory]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekit import api  # noqa: E402
from edgekit.resources import demo_paths  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--target", default="x86-cpu")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    paths = demo_paths()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:
        os.environ["EDGEKIT_CACHE_DIR"] = str(Path(tmp) / "cache")  # cold ingest for every precision
        for precision in ("fp32", "fp16", "int8"):
            os.environ["EDGEKIT_CACHE_DIR"] = str(Path(tmp) / f"cache-{precision}")
            request = api.ExportRequest(
                model=paths["model"],
                target=args.target,
                precision=precision,
                calib=paths["calib"],
                val=paths["val"],
                out_dir=Path(tmp) / "out",
            )
            started = time.perf_counter()
            outcome = api.export(request)
            export_s = time.perf_counter() - started
            bench = api.bench_local(
                outcome.path, iterations=args.iterations, warmup=200, threads=args.threads
            )
            rows.append(
                {
                    "precision": precision,
                    "export_s": export_s,
                    "p50_ms": bench["latency_ms"]["p50"],
                    "p90_ms": bench["latency_ms"]["p90"],
                    "accuracy": outcome.fidelity.accuracy_artifact,
                    "kb": outcome.manifest["size"]["artifact_bytes"] / 1e3,
                }
            )
    fp32 = rows[0]
    print(
        f"demo model (digits CNN) on onnxruntime, target {args.target}, {args.threads} thread(s), "
        f"{args.iterations} timed runs each; export includes ingest, calibration and verify on 540 samples"
    )
    print(
        f"{'precision':9} {'export s':>9} {'size kB':>8} {'acc %':>6} {'p50 ms':>8} {'p90 ms':>8} {'p50/FP32':>9}"
    )
    for row in rows:
        print(
            f"{row['precision']:9} {row['export_s']:9.2f} {row['kb']:8.1f} {row['accuracy']:6.2f} "
            f"{row['p50_ms']:8.4f} {row['p90_ms']:8.4f} {row['p50_ms'] / fp32['p50_ms']:9.2f}"
        )
    int8 = rows[-1]
    print(
        f"INT8/FP32 p50 latency ratio: {int8['p50_ms'] / fp32['p50_ms']:.2f} "
        "(the demo CNN is 13k parameters on 8x8 inputs: Q/DQ overhead, not arithmetic, dominates)"
    )
    if not args.skip_memory:
        print()
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_memory.py")], check=False)


if __name__ == "__main__":
    main()
