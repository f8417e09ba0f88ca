"""The BERT/MiniLM-shaped test encoder (tests/transformer_models.py: 3 layers, hidden 128, 4 heads, FFN
512, int64 input_ids / attention_mask / token_type_ids, dynamic batch and sequence) at fp32 / fp16 / int8
/ int4 on onnxruntime (x86-cpu), OpenVINO (intel-cpu), the TensorRT bundle's ONNX through onnxruntime
(x86-gpu: the Q/DQ model for int8, the block-DequantizeLinear model for int4) and TFLite (android-arm64,
the LiteRT host runner: int8 through ai-edge-quantizer with the int64 token inputs kept, int4 block-wise
weight-only on FULLY_CONNECTED), in one table.

    python benchmarks/bench_encoder.py [--outlier] [--backends onnxruntime,openvino,tensorrt,tflite]
                                       [--targets android-arm64,...] [--precisions fp32,fp16,int8,int8w,int4]
                                       [--json out.json]

Columns: the deployable model bytes; the MatMul/Gemm weight bytes as stored and their share of FP32
(weight-only rows: what edgekit.int4 recorded); the worst per-sample cosine of the embedding against
FP32 on 24 held-out tokenised "sentences" (sequence 32, real lengths varying, padding masked); p50 of
the host runner (onnxruntime or OpenVINO on this CPU) at batch 1, sequence 128; the layers kept above
INT4 by the search (by name). TFLite: MatMul KB are the FULLY_CONNECTED / BATCH_MATMUL weight buffers
as stored in the .tflite (packed INT4, block scales not counted); the model is static, exported and
timed at sequence 64 (see SEQ_STATIC), the same sentences padded. Every export goes through edgekit's
own export with the target's default gate, a 48-sample calibration set and the validation set.
"""

from __future__ import annotations

import argparse
import json
import statistics
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

import transformer_models as tm  # noqa: E402

from edgekit import api  # noqa: E402
from edgekit.backends import get_backend  # noqa: E402
from edgekit.backends.base import ExportOptions  # noqa: E402
from edgekit.int4.graph import weight_layers  # noqa: E402

TARGETS = {
    "onnxruntime": "x86-cpu",
    "openvino": "intel-cpu",
    "tensorrt": "x86-gpu",
    "tflite": "android-arm64",
}
SEQ_TIMED = 128
# backends whose artifacts have static shapes (TFLite): exported at [1, SEQ_STATIC] and fed the same
# sentences padded (masked) to SEQ_STATIC, so the cosine compares the same sentences; p50 is timed at
# that shape (the table says so). Not 128: with sequence == hidden (128) onnx2tf mis-converts the
# encoder - the FP32 TFLite model's worst cosine is 0.01 at [1, 128] (1.0000 at 32 / 64); the gate fails
# it honestly. Localised by exposing intermediate outputs: the embeddings match (1.0000), the layers
# drift (last LayerNorm 0.948) and the mean pooling's Mul(hidden [1, S, H], mask [1, S, 1]) is 0.18 with
# its mask input exact - the mask is broadcast along the wrong one of two equal axes.
STATIC = {"tflite"}
SEQ_STATIC = 64


def padded(samples: dict[str, np.ndarray], seq: int) -> dict[str, np.ndarray]:
    """Token samples [count, 1, s] padded with zeros (attention_mask 0: masked) to [count, 1, seq]."""
    out = {}
    for name, value in samples.items():
        pad = np.zeros((*value.shape[:-1], seq), value.dtype)
        pad[..., : value.shape[-1]] = value
        out[name] = pad
    return out


def worst_cosine(reference: np.ndarray, actual: np.ndarray) -> float:
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    act = actual.reshape(len(actual), -1).astype(np.float64)
    cos = np.sum(ref * act, axis=1) / np.maximum(
        np.linalg.norm(ref, axis=1) * np.linalg.norm(act, axis=1), 1e-12
    )
    return float(np.min(cos))


def run_all(runner: Any, samples: dict[str, np.ndarray]) -> np.ndarray:
    count = len(next(iter(samples.values())))
    outs = [runner.infer({k: v[i] for k, v in samples.items()})["embedding"] for i in range(count)]
    return np.concatenate(outs, axis=0)


def p50_ms(runner: Any, seq: int = SEQ_TIMED, iterations: int = 30) -> float:
    feed = {k: v[0] for k, v in tm.token_samples(1, seq, seed=9).items()}
    for _ in range(3):
        runner.infer(feed)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        runner.infer(feed)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def tflite_weights(artifact: Path, manifest: dict[str, Any]) -> int:
    """Bytes of the constant weight operands (input 1) of FULLY_CONNECTED / BATCH_MATMUL in the .tflite
    file as stored (packed INT4, INT8 or float), the TFLite counterpart of edgekit.int4's MatMul bytes."""
    from ai_edge_litert import schema_py_generated as schema  # type: ignore[import-untyped]
    from ai_edge_litert.tools import flatbuffer_utils  # type: ignore[import-untyped]

    path = artifact / manifest["entry"] if artifact.is_dir() else artifact
    tfl = flatbuffer_utils.convert_bytearray_to_object(bytearray(path.read_bytes()))
    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    total, seen = 0, set()
    for graph in tfl.subgraphs:
        dequantized = {}
        for op in graph.operators:
            code = tfl.operatorCodes[op.opcodeIndex]
            if codes.get(max(code.builtinCode, code.deprecatedBuiltinCode)) == "DEQUANTIZE":
                dequantized[op.outputs[0]] = op.inputs[0]
        for op in graph.operators:
            code = tfl.operatorCodes[op.opcodeIndex]
            kind = codes.get(max(code.builtinCode, code.deprecatedBuiltinCode))
            if kind not in ("FULLY_CONNECTED", "BATCH_MATMUL") or len(op.inputs) < 2:
                continue
            index = op.inputs[1]
            while index in dequantized:  # FP16 / block-INT4 weights reach the op through a DEQUANTIZE
                index = dequantized[index]
            tensor = graph.tensors[index]
            buffer = tfl.buffers[tensor.buffer] if tensor.buffer < len(tfl.buffers) else None
            if buffer is None or tensor.buffer in seen:
                continue
            # inline data, or (ai-edge-quantizer's files) an offset/size past the flatbuffer
            stored = len(buffer.data) if buffer.data is not None else int(getattr(buffer, "size", 0) or 0)
            if stored:
                seen.add(tensor.buffer)
                total += stored
    return total


def one(model: Path, calib: Path, val: Path, backend: str, precision: str, out: Path) -> dict[str, Any]:
    target = TARGETS[backend]
    weights_only = precision == "int8w"
    options = ExportOptions(weights_only=weights_only, search_budget_s=300.0)
    request = api.ExportRequest(
        model=model,
        target=target,
        precision="int8" if weights_only else precision,
        calib=calib,
        val=val,
        out_dir=out / precision,
        options=options,
        input_shapes={name: [1, SEQ_STATIC] for name in np.load(val).files} if backend in STATIC else {},
    )
    started = time.perf_counter()
    record = api.export(request)
    manifest = record.manifest
    artifact = Path(record.path)
    samples = dict(np.load(val))
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    count = len(samples["input_ids"])
    reference = np.concatenate(
        [sess.run(["embedding"], {k: v[i] for k, v in samples.items()})[0] for i in range(count)]
    )
    with get_backend(manifest["backend"]).open_runner(artifact, manifest) as runner:
        actual = run_all(runner, samples)
        seq = SEQ_STATIC if backend in STATIC else SEQ_TIMED
        p50 = p50_ms(runner, seq)
    details = manifest.get("details") or {}
    weights = details.get("weight_only") or {}
    kept = weights.get("kept_above_int4") or []
    matmul_bytes = (weights.get("weight_bytes") or {}).get("stored")
    matmul_ratio = (weights.get("weight_bytes") or {}).get("ratio")
    if backend == "tflite":
        record_q = details.get("selective_quantization") or {}
        if record_q.get("reverted_to") == "int8":
            kept = [
                {"node": ", ".join(r["source_nodes"]) or r["tflite_tensor"], "precision": "int8"}
                for r in record_q.get("reverted") or []
            ]
        matmul_bytes = tflite_weights(artifact, manifest)
        fp32_matmul = sum(layer.fp32_bytes for layer in weight_layers(onnx.load(str(model))))
        matmul_ratio = matmul_bytes / fp32_matmul if fp32_matmul else None
    return {
        "backend": backend,
        "target": target,
        "precision": precision,
        "entry": manifest["entry"],
        "model_bytes": manifest["size"]["artifact_bytes"],
        "matmul_bytes": matmul_bytes,
        "matmul_ratio": matmul_ratio,
        "worst_cosine": worst_cosine(reference, actual),
        "gate": "pass" if (record.fidelity is None or record.fidelity.passed) else "FAIL",
        "p50_ms": p50,
        "p50_seq": seq,
        "inputs": {spec["name"]: spec.get("dtype") for spec in manifest.get("inputs") or []},
        "kept_above_int4": [f"{k['node']} ({k['precision']})" for k in kept] if precision == "int4" else None,
        "export_s": round(time.perf_counter() - started, 1),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = [
        "backend (target)",
        "precision",
        "model KB",
        "MatMul KB (x FP32)",
        "worst cos",
        "gate",
        "p50 ms",
        "kept above INT4",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['backend']} ({r['target']}) | {r['precision']} | error: {r['error']} |")
            continue
        matmul = f"{r['matmul_bytes'] / 1024:.0f} ({r['matmul_ratio']:.3f})" if r["matmul_bytes"] else "-"
        kept = (
            ", ".join(r["kept_above_int4"])
            if r["kept_above_int4"]
            else ("none" if r["kept_above_int4"] == [] else "-")
        )
        seq = f" (seq {r['p50_seq']})" if r["p50_seq"] != SEQ_TIMED else ""
        lines.append(
            f"| {r['backend']} ({r['target']}) | {r['precision']} | {r['model_bytes'] / 1024:.0f} | {matmul} | "
            f"{r['worst_cosine']:.4f} | {r['gate']} | {r['p50_ms']:.2f}{seq} | {kept} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outlier", action="store_true", help="the variant with an outlier channel")
    parser.add_argument("--backends", default="onnxruntime,openvino,tensorrt,tflite")
    parser.add_argument(
        "--targets",
        help="restrict to these targets instead (comma-separated, e.g. android-arm64): "
        + ", ".join(f"{t} ({b})" for b, t in TARGETS.items()),
    )
    parser.add_argument("--precisions", default="fp32,fp16,int8,int4")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    by_target = {t: b for b, t in TARGETS.items()}
    if args.targets:
        unknown = [t for t in args.targets.split(",") if t not in by_target]
        if unknown:
            parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(by_target)}")
        backends = [by_target[t] for t in args.targets.split(",")]
    else:
        backends = args.backends.split(",")
    with tempfile.TemporaryDirectory(prefix="edgekit-encoder-") as tmp_name:
        tmp = Path(tmp_name)
        model = tm.save(tm.encoder(outlier=args.outlier), tmp, "encoder")
        calib = tm.save_samples(tm.token_samples(48, 32, seed=1), tmp, "calib")
        val = tm.save_samples(tm.token_samples(24, 32, seed=2), tmp, "val")
        sets = {False: (calib, val)}
        if any(b in STATIC for b in backends):
            sets[True] = (
                tm.save_samples(padded(tm.token_samples(48, 32, seed=1), SEQ_STATIC), tmp, "calib_padded"),
                tm.save_samples(padded(tm.token_samples(24, 32, seed=2), SEQ_STATIC), tmp, "val_padded"),
            )
        fp32_matmul = sum(layer.fp32_bytes for layer in weight_layers(tm.encoder()))
        print(
            f"encoder{' (outlier variant)' if args.outlier else ''}: {model.stat().st_size / 1024:.0f} KB FP32, "
            f"MatMul weights {fp32_matmul / 1024:.0f} KB",
            flush=True,
        )
        rows = []
        for backend in backends:
            for precision in args.precisions.split(","):
                try:
                    calib_b, val_b = sets[backend in STATIC]
                    rows.append(one(model, calib_b, val_b, backend, precision, tmp / backend))
                except Exception as exc:  # noqa: BLE001 - each row in its own try, as the table says
                    rows.append(
                        {
                            "backend": backend,
                            "target": TARGETS[backend],
                            "precision": precision,
                            "error": (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160],
                        }
                    )
                print(f"  {backend} {precision}: done", file=sys.stderr, flush=True)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
