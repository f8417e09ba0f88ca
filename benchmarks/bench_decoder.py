"""The decoder with a KV cache at fp32 / int8-weights / int4 on onnxruntime and OpenVINO: one table.

The decoder of tests/decoder_models.py (lm_head fitted on the Zen of Python and stdlib docstrings),
exported by `edgekit export` (x86-cpu: onnxruntime MatMulNBits; intel-cpu: OpenVINO NNCF
compress_weights) with a calibration set from the training text and a validation set of UNSEEN
sequences (other stdlib modules' docstrings): next-token top-1 agreement and KL vs FP32 come from
the export's verdict on that set (the tokens gate), perplexity of the FP32 model on its next bytes is
printed once. Then `edgekit bench --device local` runs the agent's decode loop: prefill ms for the
prompt, decode ms/token with the cache at the context, greedy tokens/s, peak RSS. Last, one try of
the TFLite target, and the line it fails with.

    python benchmarks/bench_decoder.py [--prompt 64] [--context 256] [--iterations 50] [--layers 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
from decoder_models import (  # noqa: E402
    DecoderConfig,
    feeds,
    held_out_text,
    past_names,
    save_decoder,
    token_set,
    train_text,
)

from edgekit import api  # noqa: E402
from edgekit.backends.base import ExportOptions  # noqa: E402
from edgekit.errors import EdgekitError  # noqa: E402

MB = 1024 * 1024
ROWS = (
    ("x86-cpu", "fp32", {}),
    ("x86-cpu", "int8", {"weights_only": True}),
    ("x86-cpu", "int4", {}),
    ("intel-cpu", "fp32", {}),
    ("intel-cpu", "int8", {"weights_only": True}),
    ("intel-cpu", "int4", {}),
)


def write_set(path: Path, config: DecoderConfig, text: str, count: int, seed: int, length: int) -> Path:
    data = token_set(text, length, count, seed)
    arrays = {k: data[k] for k in ("input_ids", "attention_mask", "position_ids")}
    for layer in range(config.layers):
        for name in past_names(config, layer):
            arrays[name] = np.zeros((count, config.kv_heads, 0, config.head_dim), np.float32)
    np.savez(path, **arrays)
    return path


def fp32_perplexity(model: Path, config: DecoderConfig, length: int, count: int, seed: int) -> float:
    import onnxruntime as ort

    data = token_set(held_out_text(), length, count, seed)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], feeds(config, data["input_ids"]))[0].astype(np.float64)
    logits -= logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, data["next_tokens"][..., None], -1).mean()
    return float(np.exp(nll))


def weight_mb(manifest: dict) -> float:
    return manifest["size"]["artifact_bytes"] / MB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument(
        "--threads", type=int, default=1, help="Runtime threads (1: steadier on a shared host)."
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    config = DecoderConfig(layers=args.layers, hidden=args.hidden, heads=8, kv_heads=2, ffn=args.hidden * 3)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-decoder-") as tmp:
        root = Path(tmp)
        model = save_decoder(root / "decoder.onnx", config)
        calib = write_set(root / "calib.npz", config, train_text(), 32, seed=3, length=64)
        val = write_set(root / "val.npz", config, held_out_text(), 32, seed=4, length=64)
        ppl = fp32_perplexity(model, config, 64, 32, seed=4)
        for target, precision, extra in ROWS:
            row = {
                "target": target,
                "precision": precision + ("-weights" if extra.get("weights_only") else ""),
            }
            try:
                record = api.export(
                    api.ExportRequest(
                        model, target, precision, calib=calib, val=val, out_dir=root / "out" / row["precision"],
                        options=dataclasses.replace(ExportOptions(), **extra),
                    )
                )  # fmt: skip
            except EdgekitError as exc:
                rows.append({**row, "error": str(exc).splitlines()[0]})
                continue
            manifest = record.manifest
            task = manifest["fidelity"]["task"]["metrics"]
            results = root / f"{target}-{row['precision']}.jsonl"
            api.bench(
                api.BenchRequest(
                    [record.path], devices=["local"], iterations=args.iterations, warmup=5, results=results,
                    prompt=args.prompt, contexts=[args.context], threads=args.threads,
                )
            )  # fmt: skip
            bench = json.loads(results.read_text().splitlines()[-1])
            dec = bench.get("decode") or {}
            step = (dec.get("decode") or [{}])[-1].get("latency_ms", {})
            rows.append(
                {
                    **row,
                    "runtime": (bench.get("runtime") or {}).get("name"),
                    "artifact_mb": round(weight_mb(manifest), 3),
                    "top1_agreement": round(task["top1_agreement"], 2),
                    "kl": task["kl"],
                    "passed": manifest["fidelity"]["passed"],
                    "prefill_ms": dec.get("prefill_ms", {}).get("p50"),
                    "decode_ms": step.get("p50"),
                    "tokens_per_s": dec.get("tokens_per_s"),
                    "peak_mb": dec.get("peak_rss_mb"),
                    "error": bench.get("error"),
                }
            )
        tflite = tflite_try(model, config, args.context, root)
    if args.json:
        print(
            json.dumps(
                {"config": dataclasses.asdict(config), "fp32_perplexity": ppl, "rows": rows, "tflite": tflite}
            )
        )
        return
    print(
        f"decoder {config.layers} layers, hidden {config.hidden}, {config.heads} heads / {config.kv_heads} kv-heads, "
        f"vocab {config.vocab}; validation: 32 unseen sequences x 64 tokens (FP32 perplexity {ppl:.1f}); "
        f"bench: prompt {args.prompt}, decode at context {args.context}, {args.iterations} iterations, "
        f"{args.threads} thread(s), this host"
    )
    head = "target    | runtime     | precision     | size MB | top-1 agree % | KL vs FP32 | prefill ms | decode ms/tok | tokens/s | peak MB"
    print(head)
    for r in rows:
        if r.get("error") and "top1_agreement" not in r:
            print(f"{r['target']:<9} | {'':<11} | {r['precision']:<13} | export failed: {r['error']}")
            continue
        print(
            f"{r['target']:<9} | {r['runtime'] or '-':<11} | {r['precision']:<13} | {r['artifact_mb']:>7.3f} | "
            f"{r['top1_agreement']:>13.2f} | {r['kl']:>10.2e} | {fmt(r['prefill_ms'])} | {fmt(r['decode_ms'], 13)} | "
            f"{fmt(r['tokens_per_s'], 8, '.0f')} | {fmt(r['peak_mb'], 7, '.1f')}"
        )
    print(f"android-arm64 (TFLite) fp32: {tflite}")


def tflite_try(model: Path, config: DecoderConfig, context: int, root: Path) -> str:
    """One export to android-arm64 (TFLite via onnx2tf) at the decode step's static shapes (one new
    token, the cache at context - 1): 'exported', or the converter's error line and the ONNX node."""
    import re

    shapes = {"input_ids": [1, 1], "attention_mask": [1, context], "position_ids": [1, 1]}
    for layer in range(config.layers):
        for name in past_names(config, layer):
            shapes[name] = [1, config.kv_heads, context - 1, config.head_dim]
    try:
        api.export(
            api.ExportRequest(model, "android-arm64", "fp32", input_shapes=shapes, out_dir=root / "tflite")
        )
        return "exported"
    except Exception as exc:  # noqa: BLE001 - the line the converter fails with is the finding
        text = str(exc).strip()
        where = ""
        log = re.search(r"full log: (\S+?)\)", text)
        if log and Path(log.group(1)).is_file():
            lines = Path(log.group(1)).read_text(errors="replace").splitlines()
            node = next((ln for ln in lines if "Error occurred at ONNX operation" in ln), "")
            why = next(
                (ln.strip() for ln in lines if ln.startswith("Dimension") or "must be equal" in ln), ""
            )
            where = f" | {node.strip()} | {why[:300]}"
        return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}{where}"


def fmt(value: float | None, width: int = 10, spec: str = ".3f") -> str:
    return f"{value:>{width}{spec}}" if value is not None else f"{'-':>{width}}"


if __name__ == "__main__":
    main()
