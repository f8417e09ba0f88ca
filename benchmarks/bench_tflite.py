"""TFLite backend benchmark: conversion time per precision and host p50 latency of fp32 / fp16 / int8
(LiteRT Interpreter, XNNPACK, the same explicit thread count for all three).

    python benchmarks/bench_tflite.py [--threads N] [--iterations N] [--size 128]

Note: int8 vs float on x86 depends on the CPU. XNNPACK's int8 kernels are fast where the CPU has
VNNI (AVX512-VNNI / AVX-VNNI) and can be slower than float without it; LiteRT also runs fp16-weight
models in float32 on x86 (dequantized at load), so fp16 is not faster here. The deployment target of
these files is ARM (SDOT/I8MM), where int8 is the fast path. The script prints the host's VNNI flag.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekit.backends import get_backend  # noqa: E402
from edgekit.backends.base import ExportJob, ExportOptions  # noqa: E402
from edgekit.calib import CalibrationSet  # noqa: E402
from edgekit.ingest import PrepareOptions, prepare  # noqa: E402
from edgekit.targets import get as get_target  # noqa: E402


def bench_model(path: Path, size: int) -> Path:
    """A small MobileNet-like net: stride-2 convs and depthwise/pointwise pairs, 1x3xSxS -> 1x100."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x, cin = "input", 3
    for i, (cout, stride, depthwise) in enumerate(
        [
            (16, 2, False),
            (16, 1, True),
            (32, 1, False),
            (32, 2, True),
            (64, 1, False),
            (64, 2, True),
            (128, 1, False),
            (128, 2, True),
            (256, 1, False),
        ]
    ):
        groups = cin if depthwise else 1
        cout = cin if depthwise else cout
        w = rng.normal(0, np.sqrt(2.0 / (9 * cin / groups)), (cout, cin // groups, 3, 3)).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}"),
        ]
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"w{i}", f"b{i}"],
                [f"c{i}"],
                pads=[1, 1, 1, 1],
                strides=[stride, stride],
                group=groups,
            )
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        x, cin = f"r{i}", cout
    inits.append(numpy_helper.from_array(rng.normal(0, 0.05, (cin, 100)).astype(np.float32), "fc"))
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bench",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 100])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--target", default="android-arm64")
    args = parser.parse_args()
    # a private cache (prepared models and, next to them, onnx2tf outputs): the first conversion is cold
    cache = Path(tempfile.mkdtemp(prefix="edgekit-bench-cache-")) / "prepared"
    os.environ.setdefault("EDGEKIT_CACHE_DIR", str(cache))
    backend = get_backend("tflite")
    target = get_target(args.target)
    work = Path(tempfile.mkdtemp(prefix="edgekit-bench-tflite-"))
    model = bench_model(work / "bench.onnx", args.size)
    rng = np.random.default_rng(0)
    np.savez(work / "calib.npz", input=rng.random((32, 3, args.size, args.size), dtype=np.float32))
    prepared = prepare(model, PrepareOptions(static_shapes=True, name_pattern=backend.name_pattern))
    calib = CalibrationSet.load(work / "calib.npz")
    calib.validate(prepared.inputs)
    feed = {"input": rng.random((1, 3, args.size, args.size), dtype=np.float32)}
    print(
        f"model: MobileNet-like 1x3x{args.size}x{args.size}, target {target.name}, threads {args.threads}, "
        f"{args.iterations} iterations after {args.warmup} warm-up; host {os.cpu_count()} cores"
    )
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    print(f"x86 VNNI: {'yes' if 'vnni' in flags else 'no / not x86'}")
    print(
        f"{'precision':<10}{'variant':<22}{'convert s':>10}{'size KiB':>10}{'p50 ms':>9}{'mean ms':>9}  onnx2tf"
    )
    for precision in ("fp32", "fp16", "int8"):
        out = work / precision
        job = ExportJob(prepared, target, precision, out, calib, ExportOptions(threads=args.threads))
        start = time.perf_counter()
        result = backend.export(job)
        convert_s = time.perf_counter() - start
        manifest = {
            "entry": result.entry,
            "inputs": [s.to_json() for s in result.inputs],
            "outputs": [s.to_json() for s in result.outputs],
            "details": result.details,
        }
        with backend.open_runner(out, manifest, threads=args.threads) as runner:
            for _ in range(args.warmup):
                runner.infer(feed)
            times = []
            for _ in range(args.iterations):
                runner.infer(feed)
                times.append(runner.last_ms)
        size_kib = (out / result.entry).stat().st_size / 1024
        print(
            f"{precision:<10}{result.details['variant']:<22}{convert_s:>10.1f}{size_kib:>10.0f}"
            f"{statistics.median(times):>9.3f}{statistics.fmean(times):>9.3f}"
            f"  {'cached' if result.details['onnx2tf_cache']['hit'] else 'ran'}"
        )


if __name__ == "__main__":
    main()
