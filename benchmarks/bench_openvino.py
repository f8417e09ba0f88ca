"""OpenVINO on this CPU: p50 latency of edgekit's FP32 IR (f32 hint), FP16 IR and INT8 IR for a
ResNet-ish conv net at 224x224, plus the same INT8 model quantized by a plain by-hand
`nncf.quantize(ov_model, nncf.Dataset(...))` call with default arguments, to show that edgekit's
artifact is no slower.

    python benchmarks/bench_openvino.py [--threads N] [--iterations N] [--size 224]

All models run with the same thread count, iteration count and input; measurements are interleaved
in rounds so that noise from other processes on a shared machine hits every model alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekit import ingest, targets  # noqa: E402
from edgekit.backends.base import ExportJob, ExportOptions  # noqa: E402
from edgekit.backends.ov import OpenVinoBackend, compile_ir, execution_summary  # noqa: E402
from edgekit.calib import CalibrationSet  # noqa: E402
from tests.models import resnet_ish, save  # noqa: E402


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--iterations", type=int, default=300, help="timed runs per model")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=30, help="interleaving rounds")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--width", type=int, default=64, help="channels of the first stage")
    parser.add_argument("--calib-samples", type=int, default=32)
    parser.add_argument("--keep", action="store_true", help="keep the exported files")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-openvino-"))
    try:
        run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    import nncf
    import onnxruntime as ort
    import openvino as ov

    os.environ.setdefault(ingest.CACHE_ENV, str(work / "cache"))
    src = save(resnet_ish(size=args.size, width=args.width), work / "resnet_ish.onnx")
    rng = np.random.default_rng(0)
    samples = rng.standard_normal((args.calib_samples, 3, args.size, args.size)).astype(np.float32)
    np.savez(work / "calib.npz", input=samples)

    backend = OpenVinoBackend()
    prepared = ingest.prepare(src, ingest.PrepareOptions(min_opset=backend.min_opset))
    calib = CalibrationSet.load(work / "calib.npz")
    calib.validate(prepared.inputs)
    target = targets.get("intel-cpu")
    xml: dict[str, Path] = {}
    export_s: dict[str, float] = {}
    for precision in ("fp32", "fp16", "int8"):
        out = work / precision
        start = time.perf_counter()
        job = ExportJob(prepared, target, precision, out, calib, ExportOptions(threads=args.threads))
        result = backend.export(job)
        export_s[precision] = time.perf_counter() - start
        xml[precision] = out / result.entry

    # the by-hand reference: convert the user's ONNX, default nncf.quantize, default save_model
    start = time.perf_counter()
    by_hand = nncf.quantize(ov.convert_model(str(src)), nncf.Dataset([s[None] for s in samples]))
    export_s["hand"] = time.perf_counter() - start
    xml["hand"] = work / "hand" / "model.xml"
    ov.save_model(by_hand, str(xml["hand"]))

    rows = {
        "fp32": ("edgekit FP32 IR (f32 hint)", "fp32"),
        "fp16": ("edgekit FP16 IR", "fp16"),
        "int8": ("edgekit INT8 IR (NNCF)", "int8"),
        "hand": ("by-hand nncf.quantize INT8", "int8"),
    }
    compiled = {
        key: compile_ir(xml[key], "CPU", precision, args.threads) for key, (_, precision) in rows.items()
    }
    # for contrast: the FP32 IR at the runtime's default precision (bf16 on CPUs with AVX-512 BF16 / AMX)
    rows["fp32_default"] = ("FP32 IR, no hint (default)", "fp32")
    xml["fp32_default"] = xml["fp32"]
    compiled["fp32_default"] = ov.Core().compile_model(
        str(xml["fp32"]), "CPU", {"INFERENCE_NUM_THREADS": args.threads}
    )
    requests = {key: model.create_infer_request() for key, model in compiled.items()}
    x = samples[:1]
    reference = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    cosines = {key: _cosine(np.array(req.infer({"input": x})[0]), reference) for key, req in requests.items()}

    for req in requests.values():
        for _ in range(args.warmup):
            req.infer({"input": x})
    times: dict[str, list[float]] = {key: [] for key in rows}
    per_round = max(1, args.iterations // args.rounds)
    for _ in range(args.rounds):
        for key, req in requests.items():
            for _ in range(per_round):
                start = time.perf_counter()
                req.infer({"input": x})
                times[key].append((time.perf_counter() - start) * 1000.0)

    p50 = {key: float(np.percentile(values, 50)) for key, values in times.items()}
    print(
        f"OpenVINO {ov.__version__.split('-')[0]}, NNCF {nncf.__version__}; ResNet-ish (10 convs), "
        f"input 1x3x{args.size}x{args.size}; CPU threads={args.threads}, "
        f"{per_round * args.rounds} timed runs each ({args.rounds} interleaved rounds), warmup {args.warmup}"
    )
    print(
        f"{'artifact':<30} {'exec precision':<15} {'p50 ms':>8} {'p90 ms':>8} {'min ms':>8} "
        f"{'MB':>6} {'FQ':>4} {'cos vs ONNX':>12}"
    )
    for key, (label, _) in rows.items():
        summary = execution_summary(compiled[key])
        size_mb = (xml[key].with_suffix(".bin").stat().st_size) / 1e6
        fake_quantize = sum(
            op.get_type_name() == "FakeQuantize" for op in ov.Core().read_model(str(xml[key])).get_ops()
        )
        print(
            f"{label:<30} {summary.get('inference_precision', '?'):<15} {p50[key]:>8.2f} "
            f"{float(np.percentile(times[key], 90)):>8.2f} {min(times[key]):>8.2f} "
            f"{size_mb:>6.2f} {fake_quantize:>4} {cosines[key]:>12.5f}"
        )
    print(f"INT8 / FP32 p50 ratio (edgekit):        {p50['int8'] / p50['fp32']:.3f}")
    print(f"edgekit INT8 / by-hand INT8 p50 ratio:  {p50['int8'] / p50['hand']:.3f}  (<= 1 means no slower)")
    print(
        "export seconds: "
        + ", ".join(f"{k}={v:.1f}" for k, v in export_s.items())
        + f"; CPU: {_cpu_name()}"
        + (f"; files in {work}" if args.keep else "")
    )


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
