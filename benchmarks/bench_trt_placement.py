"""TensorRT Q/DQ placement: onnxruntime's default placement vs edgekit's TensorRT-aware one.

For each model, one calibration pass (entropy, as `edgekit export --int8` does) gives the TensorRT
scales; two Q/DQ ONNX models are built from them:

- default: onnxruntime `quantize_static` in QDQ format with TensorRT's types (symmetric INT8
  activations with the same scales as overrides, per-channel symmetric INT8 weights) -- Q/DQ on the
  inputs and outputs of every op onnxruntime knows; what edgekit shipped before;
- tensorrt: `edgekit.backends.trt.calibration.quantize_for_tensorrt` -- Q/DQ only where TensorRT runs
  INT8.

and both are scored against the FP32 model through onnxruntime on a validation set
(`edgekit.fidelity.compare`, the target's default gates: cosine >= 0.99, accuracy drop <= 1 point).
Models: the demo (digits CNN, labelled), the varied test models of tests/models.py (random inputs), and
zoo ResNet-50 from tests/zoo.py (random weights; its final Softmax is cut so logits are compared).

    python benchmarks/bench_trt_placement.py [--zoo resnet50] [--no-zoo] [--calib-samples 16]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from edgekit import ingest, quant  # noqa: E402
from edgekit.backends.trt import calibration  # noqa: E402
from edgekit.backends.trt.qdq import qdq_counts  # noqa: E402
from edgekit.calib import CalibrationSet  # noqa: E402
from edgekit.fidelity import compare  # noqa: E402
from edgekit.resources import demo_paths  # noqa: E402
from edgekit.targets import Gates  # noqa: E402
from tests.models import VARIED, sample_set  # noqa: E402

GATES = Gates(min_cosine=0.99, max_accuracy_drop=1.0)


def ort_default_qdq(model: Path, out: Path, calib: CalibrationSet, scales: dict[str, float]) -> None:
    """onnxruntime's default QDQ placement with TensorRT's quantization types and the same scales."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    inits = {i.name for i in onnx.load(str(model), load_external_data=False).graph.initializer}
    overrides = {
        name: [{"scale": np.array(scale, dtype=np.float32), "zero_point": np.array(0, dtype=np.int8)}]
        for name, scale in scales.items()
        if name not in inits
    }
    with quant.quiet():
        quantize_static(
            str(model),
            str(out),
            quant.ort_reader(calib, limit=1),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "TensorQuantOverrides": overrides,
            },
        )


def outputs(path: Path, val: CalibrationSet) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    runs = [session.run(names, feed) for feed in val.feeds(1)]
    return {name: np.concatenate([r[k] for r in runs]) for k, name in enumerate(names)}


def cut_softmax(path: Path) -> None:
    """Make the input of a final Softmax the graph output (logits are what INT8 error shows in)."""
    model = onnx.load(str(path))
    graph = model.graph
    for node in list(graph.node):
        if node.op_type == "Softmax" and len(graph.output) == 1 and node.output[0] == graph.output[0].name:
            graph.node.remove(node)
            graph.output[0].name = node.input[0]  # Softmax keeps the shape
            onnx.save(model, str(path))
            return


def one(name: str, model: Path, calib_path: Path, val_path: Path, work: Path) -> list[dict[str, Any]]:
    prepared = ingest.prepare(model, ingest.PrepareOptions(min_opset=13, max_opset=17))
    fp32 = work / f"{name}.fp32.onnx"
    shutil.copyfile(prepared.path, fp32)
    cut_softmax(fp32)
    calib, val = CalibrationSet.load(calib_path), CalibrationSet.load(val_path)
    calib.validate(prepared.inputs)
    val.validate(prepared.inputs, "validation set")
    start = time.perf_counter()
    scales = calibration.calibrate(fp32, calib, "entropy")
    calib_s = time.perf_counter() - start
    reference = outputs(fp32, val)
    labels = val.labels if getattr(val, "labels", None) is not None else None
    rows = []
    for placement in ("default", "tensorrt"):
        out = work / f"{name}.{placement}.onnx"
        start = time.perf_counter()
        if placement == "default":
            ort_default_qdq(fp32, out, calib, scales)
        else:
            calibration.quantize_for_tensorrt(fp32, out, scales)
        build_s = time.perf_counter() - start
        report = compare(reference, outputs(out, val), labels, GATES)
        counts = qdq_counts(onnx.load(str(out), load_external_data=False))
        rows.append(
            {
                "model": name,
                "placement": placement,
                "Q": counts["QuantizeLinear"],
                "DQ": counts["DequantizeLinear"],
                "cosine": min(o.cosine for o in report.outputs),
                "drop": report.accuracy_drop,
                "passed": report.passed,
                "calib_s": calib_s,
                "build_s": build_s,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="resnet50", help="a tests/zoo.py model to add (default resnet50)")
    parser.add_argument("--no-zoo", action="store_true")
    parser.add_argument("--calib-samples", type=int, default=16)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-trt-placement-"))
    try:
        cases = []
        demo = demo_paths()
        cases.append(("demo", demo["model"], demo["calib"], demo["val"]))
        for key, (builder, fixed) in VARIED.items():
            model, _ = builder()
            path = work / f"{key}.onnx"
            onnx.save(model, str(path))
            for split, seed, count in (("calib", 1, args.calib_samples), ("val", 2, 12)):
                np.savez(work / f"{key}.{split}.npz", **sample_set(model, count, seed=seed, fixed=fixed))
            cases.append((key, path, work / f"{key}.calib.npz", work / f"{key}.val.npz"))
        if not args.no_zoo:
            from tests.zoo import zoo_model

            path = zoo_model(args.zoo, work / f"{args.zoo}.onnx")
            model = onnx.load(str(path))
            model.ir_version = max(model.ir_version, 4)  # until ingest handles IR < 4 itself (issue 9)
            onnx.save(model, str(path))
            rng = np.random.default_rng(1)
            inputs = ingest.io_info(model)[0]
            for split, count in (("calib", args.calib_samples), ("val", 8)):
                arrays = {
                    i.name: rng.standard_normal((count, *i.shape[1:])).astype(np.float32) for i in inputs
                }
                np.savez(work / f"{args.zoo}.{split}.npz", **arrays)
            cases.append((args.zoo, path, work / f"{args.zoo}.calib.npz", work / f"{args.zoo}.val.npz"))
        rows = []
        for case in cases:
            rows.extend(one(*case, work))
            print(f"done: {case[0]}", file=sys.stderr)
        header = f"{'model':<12} {'placement':<9} {'Q':>4} {'DQ':>4} {'cosine':>8} {'drop':>6} {'gate':>5} {'build_s':>8}"
        print(header)
        for r in rows:
            drop = "-" if r["drop"] is None else f"{r['drop']:.2f}"
            print(
                f"{r['model']:<12} {r['placement']:<9} {r['Q']:>4} {r['DQ']:>4} {r['cosine']:>8.5f} {drop:>6} "
                f"{'pass' if r['passed'] else 'FAIL':>5} {r['build_s']:>8.2f}"
            )
        print(
            "calibration (shared by both placements), s: "
            + ", ".join(f"{r['model']} {r['calib_s']:.1f}" for r in rows if r["placement"] == "default")
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
