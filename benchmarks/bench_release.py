"""`edgekit release` and its cache in one run: the bundled digits CNN for every target installed here
(every precision each offers), verified and benchmarked on the local device through the agent.

Three releases with a private, empty cache: the first builds everything; the second, with nothing
changed, must rebuild nothing; the third, after a new calibration set, must rebuild only what
calibrates (INT8). Prints each run's wall time (the `edgekit release` command, as a user runs it),
what each rebuilt, and the ratios.

    python benchmarks/bench_release.py [--jobs N] [--iterations N] [--targets a,b,...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekit.demo import demo_targets  # noqa: E402
from edgekit.resources import demo_paths  # noqa: E402


def write_project(root: Path, targets: list[str], jobs: int, iterations: int) -> Path:
    paths = demo_paths()
    for key in ("model", "calib", "val"):
        shutil.copyfile(paths[key], root / paths[key].name)
    blocks = "\n".join(f'[[target]]\nname = "{t}"\nprecisions = "all"\n' for t in targets)
    (root / "devices.toml").write_text(
        f'[devices.local]\ntransport = "local"\ntarget = "x86-cpu"\nworkdir = {json.dumps(str(root / "device"))}\n'
    )
    config = root / "edgekit.toml"
    config.write_text(
        f'[release]\nname = "digits"\nversion = "1.0.0"\njobs = {jobs}\n\n'
        f'[[model]]\npath = "{paths["model"].name}"\ncalib = "{paths["calib"].name}"\nval = "{paths["val"].name}"\n\n'
        f'{blocks}\n[bench]\ndevices = ["local"]\niterations = {iterations}\n'
    )
    return config


def release(config: Path, env: dict[str, str]) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "edgekit", "release", "--config", str(config), "--allow-failures", "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        sys.exit(f"edgekit release failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return wall, json.loads(proc.stdout)


def rebuilt(outcome: dict) -> list[str]:
    return sorted(a["name"] for a in outcome["release"]["artifacts"] if a["cache"]["export"] == "miss")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--targets", help="comma-separated (default: every installed target)")
    parser.add_argument("--keep", type=Path, help="keep the project (dist, cache) in this folder")
    args = parser.parse_args()
    targets = args.targets.split(",") if args.targets else [p.name for p in demo_targets()]
    root = Path(tempfile.mkdtemp(prefix="edgekit-bench-release-")) if args.keep is None else args.keep
    root.mkdir(parents=True, exist_ok=True)
    config = write_project(root, targets, args.jobs, args.iterations)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGEKIT_CACHE_DIR": str(root / "cache")}
    print(f"targets: {', '.join(targets)}  (project in {root})")
    runs = []
    for label in ("first build", "nothing changed", "new calibration set"):
        if label == "new calibration set":
            import numpy as np

            with np.load(root / demo_paths()["calib"].name) as data:
                arrays = {k: data[k][: max(1, len(data[k]) // 2)] for k in data.files}
            np.savez(root / demo_paths()["calib"].name, **arrays)
        wall, outcome = release(config, env)
        artifacts = outcome["release"]["artifacts"]
        runs.append((label, wall, outcome))
        print(
            f"{label:20} {wall:7.1f} s   rebuilt {len(rebuilt(outcome)):2d} of {len(artifacts)} artifacts, "
            f"benchmarks run {sum(v == 'miss' for a in artifacts for v in a['cache']['bench'].values())}"
        )
    first, second, third = (r[1] for r in runs)
    print(f"\nnothing changed / first build      = {second / first:.3f}")
    print(f"new calibration set / first build  = {third / first:.3f}")
    int8 = sorted(a["name"] for a in runs[2][2]["release"]["artifacts"] if a["precision"] == "int8")
    print(f"rebuilt after the new calibration set: {', '.join(rebuilt(runs[2][2])) or 'nothing'}")
    print(f"INT8 artifacts:                        {', '.join(int8)}")
    print(f"only INT8 rebuilt: {rebuilt(runs[2][2]) == int8}")
    final = runs[2][2]
    print(f"release: {final['path']}  gates passed: {final['passed']}")
    for failure in final["failures"]:
        print(f"  gate: {failure}")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
