"""`inspect --context` estimate vs measured peak memory of a decoder's generation loop (onnxruntime).

The decoder of tests/decoder_models.py at a mid size (4 layers, hidden 512, 8 heads, 2 kv-heads,
ffn 1408: 11 M parameters), FP32 and INT4 (`edgekit export --int4` for x86-cpu: MatMulNBits, RTN), at each context length: a fresh
process imports onnxruntime, notes its RSS, loads the model, prefills a prompt of N - 8 tokens and
decodes 8 more with the cache fed back (the cache reaches N); measured = peak RSS (VmHWM) growth over
the RSS before loading. The estimate is `edgekit inspect MODEL --context N --batch B`'s onnxruntime
total. Prints estimate, measured (median of --repeat processes) and their ratio.

    python benchmarks/bench_decoder_memory.py [--context 1024 2048] [--batch 1] [--repeat 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import onnx  # noqa: E402
from decoder_models import DecoderConfig, decoder  # noqa: E402

from edgekit import analysis  # noqa: E402
from edgekit.split.measure import STATUS_HELPER  # noqa: E402

MB = 1024 * 1024
MID = DecoderConfig(layers=4, hidden=512, heads=8, kv_heads=2, ffn=1408)
DECODE_STEPS = 8

CHILD = (
    STATUS_HELPER
    + r"""
import onnxruntime as ort
path, batch, context, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
base = status("VmRSS")
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
pasts = [i for i in session.get_inputs() if i.name not in ("input_ids", "attention_mask", "position_ids")]
prompt = context - steps
feeds = {"input_ids": np.ones((batch, prompt), np.int64), "attention_mask": np.ones((batch, prompt), np.int64),
         "position_ids": np.tile(np.arange(prompt, dtype=np.int64), (batch, 1))}
for i in pasts:
    feeds[i.name] = np.zeros((batch, i.shape[1], 0, i.shape[3]), np.float32)
out = session.run(None, feeds)
for t in range(prompt, context):
    feeds = {"input_ids": np.ones((batch, 1), np.int64), "attention_mask": np.ones((batch, t + 1), np.int64),
             "position_ids": np.full((batch, 1), t, np.int64)}
    feeds.update({i.name: out[1 + k] for k, i in enumerate(pasts)})
    out = session.run(None, feeds)
print(json.dumps({"growth": status("VmHWM") - base}))
"""
)


def int4_artifact(model: Path, out: Path) -> Path:
    """`edgekit export MODEL --target x86-cpu --int4` (RTN, no calibration set: every MatMul INT4)."""
    from edgekit import api

    record = api.export(api.ExportRequest(model, "x86-cpu", "int4", out_dir=out))
    return record.path / record.manifest["entry"]


def measure(path: Path, batch: int, context: int, repeat: int) -> float:
    values = []
    for _ in range(repeat):
        args = [sys.executable, "-c", CHILD, str(path), str(batch), str(context), str(DECODE_STEPS)]
        done = subprocess.run(args, capture_output=True, text=True, check=True, timeout=600)
        values.append(json.loads(done.stdout.strip().splitlines()[-1])["growth"] / MB)
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = decoder(MID, fit=False)
        paths = {"fp32": Path(tmp) / "decoder.fp32.onnx", "int4": Path(tmp) / "decoder.int4.onnx"}
        onnx.save(fp32, str(paths["fp32"]))
        paths["int4"] = int4_artifact(paths["fp32"], Path(tmp) / "out")
        for precision, path in paths.items():
            for context in args.context:
                report = analysis.analyze(paths["fp32"], context=context, batch=args.batch)
                estimate = report.runtime_memory_bytes["onnxruntime"][precision] / MB
                measured = measure(path, args.batch, context, args.repeat)
                part = report.context["parts"][precision]
                rows.append(
                    {
                        "precision": precision,
                        "context": context,
                        "batch": args.batch,
                        "weights_mb": round(part["weights"] / MB, 1),
                        "kv_cache_mb": round(part["kv_cache"] / MB, 1),
                        "prefill_mb": round(part["prefill_activations"] / MB, 1),
                        "estimate_mb": round(estimate, 1),
                        "measured_mb": round(measured, 1),
                        "ratio": round(estimate / measured, 2),
                    }
                )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"decoder {MID}, onnxruntime CPU, prefill N-{DECODE_STEPS} + {DECODE_STEPS} decode steps")
    header = (
        "precision",
        "context",
        "batch",
        "weights MB",
        "KV MB",
        "prefill MB",
        "estimate MB",
        "measured MB",
        "est/meas",
    )
    print(" | ".join(header))
    for r in rows:
        print(
            f"{r['precision']:>9} | {r['context']:>7} | {r['batch']:>5} | {r['weights_mb']:>10} | {r['kv_cache_mb']:>5} | "
            f"{r['prefill_mb']:>10} | {r['estimate_mb']:>11} | {r['measured_mb']:>11} | {r['ratio']:>8}"
        )
    print(f"worst ratio: {min(r['ratio'] for r in rows)} .. {max(r['ratio'] for r in rows)}")


if __name__ == "__main__":
    main()
