"""`edgekit split --max-shard-mb`: do the shards fit, estimated AND measured? The way a user checks it.

Each step is an `edgekit` command line on a real architecture (tests/zoo.py's ResNet-50 by default):

  1. `edgekit split MODEL --max-shard-mb M`            (planned memory = estimate x (1 + margin), then
                                                        each shard measured here and re-planned)
  2. `edgekit export SPLIT_DIR --target x86-cpu --fp32`
  3. `edgekit bench PIPELINE_DIR --device local ...`   (one stage server per shard, each its own process:
                                                        peak RSS minus the RSS before the model loaded)
  4. `edgekit split MODEL --max-shard-mb <tiny>`        (must exit 2 naming the smallest feasible budget)

and prints per shard: weights, the estimate, the memory split measured (what it planned with), the
runtime memory the pipeline bench measured, and the
ratios measured/budget (must be <= 1) and estimate/measured (as benchmarks/bench_memory.py prints
it); then the worst of each.

    python benchmarks/bench_shard_memory.py [--model zoo-resnet50|resnet18|dbnet|...] [--max-shard-mb M]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402

from benchmarks.split_common import edgekit, split_models  # noqa: E402
from tests import zoo  # noqa: E402

MODELS = split_models(dbnet_res=640)


def num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def write_model(name: str, directory: Path) -> Path:
    if name.startswith("zoo-"):
        return zoo.zoo_model(name[4:], directory / f"{name}.onnx")
    path = directory / f"{name}.onnx"
    onnx.save(MODELS[name](), str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="zoo-resnet50", help=f"zoo-NAME ({', '.join(zoo.ZOO)}) or {', '.join(MODELS)}"
    )
    parser.add_argument("--max-shard-mb", type=float, default=120.0)
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="edgekit-shard-memory-") as tmp:
        work = Path(tmp)
        model = write_model(args.model, work)
        split_dir = work / "model.split"
        plan, _ = edgekit(
            "split", model, "--max-shard-mb", args.max_shard_mb, "-o", split_dir, "--no-profile", cwd=work
        )
        assert isinstance(plan, dict)
        shards = plan["shards"]
        margin = plan["plan"]["memory_margin"]
        exported, _ = edgekit(
            "export", split_dir, "--target", "x86-cpu", "--fp32", "-o", work / "out", cwd=work
        )
        assert isinstance(exported, dict)
        devices = [arg for _ in shards for arg in ("--device", "local")]
        runs, _ = edgekit(
            "bench", exported["path"], *devices, "--iterations", args.iterations, "--warmup", 1,
            "-o", work / "results.jsonl", cwd=work,
        )  # fmt: skip
        assert isinstance(runs, list)
        stages = runs[0]["stages"]
        _, err = edgekit(
            "split", model, "--max-shard-mb", 1, "-o", work / "tiny.split", "--no-profile", cwd=work, expect=2
        )

    budget = args.max_shard_mb
    print(
        f"{args.model}: `edgekit split --max-shard-mb {budget:g}` -> {len(shards)} shards "
        f"(planned: estimate x {1 + margin:g}, then each shard measured at split time); exported fp32 "
        f"x86-cpu, benched as a pipeline of local stage processes ({args.iterations} samples)"
    )
    head = f"{'shard':>5} {'nodes':>6} {'weights MiB':>12} {'estimate MiB':>13} {'split-measured':>15} {'bench-measured':>15} {'meas/budget':>12} {'est/meas':>9}"
    print(head)
    worst_budget, worst_est = 0.0, []
    for shard, stage in zip(shards, stages, strict=True):
        measured = stage.get("runtime_memory_mb")
        ratio_b = measured / budget if measured is not None else float("nan")
        ratio_e = shard["memory_estimate_mb"] / measured if measured else float("nan")
        worst_budget = max(worst_budget, ratio_b)
        worst_est.append(ratio_e)
        print(
            f"{shard['index']:>5} {shard['node_count']:>6} {shard['weight_bytes'] / 2**20:>12.1f} "
            f"{shard['memory_estimate_mb']:>13.1f} {num(shard.get('memory_measured_mb')):>15} "
            f"{num(measured):>15} {ratio_b:>12.2f} {ratio_e:>9.2f}"
        )
    fits = all(s["memory_mb"] <= budget for s in shards) and worst_budget <= 1.0
    print(
        f"every shard fits {budget:g} MB: {'yes' if fits else 'NO'} (worst measured/budget {worst_budget:.2f}; "
        f"estimate/measured {min(worst_est):.2f}..{max(worst_est):.2f})"
    )
    print(f"impossible budget (1 MB): exit 2, {err.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
