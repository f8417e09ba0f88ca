"""A planned two-device pipeline, end to end, the way a user runs it: predicted vs measured.

Two real sshd "devices" on loopback (tests/sshd.py; both on this machine, so their stages share its
CPUs), then, each step an `edgekit` command line:

  1. export MODEL for x86-cpu and `edgekit bench` it on both devices (whole-model speed per device)
  2. `edgekit split MODEL --devices board-0,board-1 --objective O --results results.jsonl`
  3. `edgekit export SPLIT_DIR --target x86-cpu`
  4. `edgekit bench PIPELINE_DIR` (planned devices; its records go to the same results.jsonl)
  5. (--rounds 2, default) steps 2-4 again: the plan now reads the measured shard times and the
     effective link through the host relay from step 4's records

and prints, per round, the plan's predicted end-to-end latency, throughput, stage and hop times next to
what the pipeline bench measured.

    python benchmarks/bench_pipeline.py [--model resnet18|dbnet|mobilenetv2|transformer]
                                        [--objective throughput|latency] [--samples N]
                                        [--link-mbps X] [--link-latency-ms Y] [--rounds N]
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
from tests.sshd import ssh_boards  # noqa: E402

MODELS = split_models(dbnet_res=320)


def report(plan: dict, measured: dict, objective: str) -> None:
    print(
        f"plan ({objective}): {len(plan['shards'])} shard(s) on {', '.join(map(str, plan['plan']['devices']))}"
    )
    for shard, stage in zip(plan["shards"], measured["stages"], strict=True):
        print(
            f"  shard {shard['index']} nodes {shard['nodes']} on {stage['device']}: predicted {shard['predicted_ms']:.2f} ms, "
            f"measured compute p50 {stage['compute_ms']['p50']:.2f} ms (+ relay {stage['relay_ms']['p50']:.2f} ms), "
            f"runtime memory {stage['runtime_memory_mb']:.1f} MB (estimate {stage['memory_estimate_mb']:.1f})"
        )
    for hop in measured["hops"]:
        print(
            f"  hop {hop['from']}->{hop['to']}: {hop['bytes'] / 1024:.0f} KiB, predicted {hop['predicted_ms']:.2f} ms, measured {hop['measured_ms']:.2f} ms"
        )
    pred = plan["predicted"]
    lat, fps = measured["latency_ms"]["p50"], measured["throughput_fps"]
    print(
        f"  end-to-end latency: predicted {pred['latency_ms']:.2f} ms, measured p50 {lat:.2f} ms "
        f"(predicted/measured {pred['latency_ms'] / lat:.2f})"
    )
    print(
        f"  pipelined throughput: predicted {pred['throughput_fps']:.1f}/s, measured {fps:.1f}/s "
        f"(predicted/measured {pred['throughput_fps'] / fps:.2f})"
    )
    fid = measured.get("fidelity") or {}
    if fid:
        print(
            f"  end-to-end fidelity vs the unsplit FP32 model: passed={fid['passed']}, min cosine "
            f"{min(o['cosine'] for o in fid['outputs']):.6f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(MODELS), default="resnet18")
    parser.add_argument("--objective", choices=["throughput", "latency"], default="throughput")
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--link-mbps", type=float, default=2000.0)
    parser.add_argument("--link-latency-ms", type=float, default=0.5)
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="plan, export and bench again with the earlier pipeline's records",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgekit-pipeline-") as tmp_name:
        tmp = Path(tmp_name)
        # edgekit runs in tmp: it reads tmp/devices.toml
        with ssh_boards(tmp, 2, link_mbps=args.link_mbps, link_latency_ms=args.link_latency_ms):
            model = tmp / f"{args.model}.onnx"
            onnx.save(MODELS[args.model](), str(model))

            whole, _ = edgekit("export", model, "--target", "x86-cpu", "--fp32", "-o", tmp / "out", cwd=tmp)
            assert isinstance(whole, dict)
            bench, _ = edgekit(
                "bench", whole["artifact"], "--device", "board-0", "--device", "board-1",
                "--iterations", args.samples, "-o", tmp / "results.jsonl", cwd=tmp,
            )  # fmt: skip
            assert isinstance(bench, list)
            rounds = []
            for round_no in range(1, args.rounds + 1):
                # round 2 on: the plan also reads the earlier pipeline bench (measured shard times,
                # the effective link through the host relay) from the same results.jsonl
                plan, _ = edgekit(
                    "split", model, "--devices", "board-0,board-1", "--objective", args.objective,
                    "--results", tmp / "results.jsonl", "-o", tmp / f"split{round_no}", cwd=tmp,
                )  # fmt: skip
                exported, _ = edgekit(
                    "export", tmp / f"split{round_no}", "--target", "x86-cpu", "--fp32",
                    "-o", tmp / f"out{round_no}", cwd=tmp,
                )  # fmt: skip
                assert isinstance(plan, dict) and isinstance(exported, dict)
                runs, _ = edgekit(
                    "bench", exported["path"], "--iterations", args.samples, "-o", tmp / "results.jsonl", cwd=tmp
                )  # fmt: skip
                assert isinstance(runs, list)
                rounds.append((plan, runs[0]))
    for record in bench:
        print(f"whole model on {record['device']['name']}: p50 {record['latency_ms']['p50']:.2f} ms")
    for round_no, (plan, measured) in enumerate(rounds, 1):
        source = "devices.toml links, whole-model speed" if round_no == 1 else "+ the earlier pipeline bench"
        print(f"round {round_no} ({source}):")
        report(plan, measured, args.objective)
    print(
        "relay: host (each hop downloads a stage's outputs here and uploads them to the next); both devices share this machine's CPUs"
    )


if __name__ == "__main__":
    main()
