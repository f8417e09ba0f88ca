"""One timing path: the demo's p50 against `edgekit bench --device local` on the same artifact, printed in
one run (`python benchmarks/bench_local_timing.py [--target x86-cpu] [--precision fp32]`).

The demo times an artifact with `runner.bench_local` (the runner, the local transport and the device
agent); `edgekit bench --device local` is the CLI over the same runner. Both are run `--rounds` times,
alternating, on one exported artifact of the bundled digits CNN. Printed: every round's p50, each
path's run-to-run spread ((max - min) / median of its rounds) and the ratio of the two medians, which
should sit inside that spread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekit import api, runner  # noqa: E402
from edgekit.resources import demo_paths  # noqa: E402


def cli_p50(artifact: Path, iterations: int, warmup: int, threads: int | None, results: Path) -> float:
    argv = [sys.executable, "-m", "edgekit", "bench", str(artifact), "--device", "local"]
    argv += ["--iterations", str(iterations), "--warmup", str(warmup), "-o", str(results), "--json"]
    if threads:
        argv += ["--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(argv, capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    (record,) = json.loads(done.stdout)
    return float(record["latency_ms"]["p50"])


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="x86-cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)  # what the demo uses
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    paths = demo_paths()
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-timing-") as tmp:
        os.environ["EDGEKIT_CACHE_DIR"] = str(Path(tmp) / "cache")
        outcome = api.export(
            api.ExportRequest(
                model=paths["model"],
                target=args.target,
                precision=args.precision,
                calib=paths["calib"],
                out_dir=Path(tmp) / "out",
            )
        )
        demo_path: list[float] = []
        bench_cli: list[float] = []
        for index in range(args.rounds):
            record = runner.bench_local(
                outcome.path, iterations=args.iterations, warmup=args.warmup, threads=args.threads
            )
            demo_path.append(float(record["latency_ms"]["p50"]))
            results = Path(tmp) / f"cli-{index}.jsonl"
            bench_cli.append(cli_p50(outcome.path, args.iterations, args.warmup, args.threads, results))
    print(
        f"digits CNN, {args.target} {args.precision}, {args.iterations} timed runs after {args.warmup} warm-up, "
        f"{args.threads} thread(s), {args.rounds} alternating rounds"
    )
    print(f"{'path':28} {'p50 ms per round':>36} {'spread':>8}")
    for label, values in (
        ("demo (runner.bench_local)", demo_path),
        ("edgekit bench --device local", bench_cli),
    ):
        rounds = " ".join(f"{v:8.4f}" for v in values)
        print(f"{label:28} {rounds:>36} {spread(values):8.1%}")
    ratio = statistics.median(demo_path) / statistics.median(bench_cli)
    print(f"median p50 ratio demo / bench: {ratio:.3f}")


if __name__ == "__main__":
    main()
