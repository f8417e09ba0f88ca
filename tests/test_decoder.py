"""Issue 18: decoders with a KV cache — the test model, recognition, memory at a context length,
the next-token gate and the generation benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from decoder_models import (
    DecoderConfig,
    decoder,
    feeds,
    held_out_text,
    save_decoder,
    token_set,
)

CONFIG = DecoderConfig()


def _session(model):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def decoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_decoder(tmp_path_factory.mktemp("decoder") / "tiny_decoder.onnx", CONFIG)


@pytest.fixture(scope="module")
def hostile_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_decoder(tmp_path_factory.mktemp("decoder") / "hostile_decoder.onnx", CONFIG, hostile=True)


# ---- the model ---------------------------------------------------------------------------------------
def test_decoder_cache_matches_full_prefill_and_predicts_text() -> None:
    model = decoder(CONFIG)
    session = _session(model)
    data = token_set(held_out_text(), 32, 16, seed=1)
    ids = data["input_ids"]
    full = session.run(None, feeds(CONFIG, ids))
    assert full[0].shape == (16, 32, CONFIG.vocab)
    assert full[1].shape == (16, CONFIG.kv_heads, 32, CONFIG.head_dim)
    # a fitted lm_head: the next byte of unseen stdlib text is top-1 far more often than chance (1/95)
    assert (full[0].argmax(-1) == data["next_tokens"]).mean() > 0.15

    names = [o.name for o in session.get_outputs()]
    out = session.run(None, feeds(CONFIG, ids[:2, :20]))
    steps = [out[0]]
    for t in range(20, 32):
        past = {n.replace("present", "past_key_values"): v for n, v in zip(names[1:], out[1:], strict=True)}
        out = session.run(None, feeds(CONFIG, ids[:2, t : t + 1], past))
        steps.append(out[0])
    np.testing.assert_allclose(np.concatenate(steps, 1), full[0][:2], atol=1e-4)


def test_hostile_decoder_computes_the_same_function() -> None:
    data = token_set(held_out_text(), 16, 4, seed=2)
    plain = _session(decoder(CONFIG)).run(["logits"], feeds(CONFIG, data["input_ids"]))[0]
    hostile = _session(decoder(CONFIG, hostile=True)).run(["logits"], feeds(CONFIG, data["input_ids"]))[0]
    np.testing.assert_allclose(plain, hostile, atol=1e-3)


# ---- recognition and memory at a context length --------------------------------------------------------
def test_recognize_decoder_layout_and_the_older_past_names() -> None:
    import dataclasses

    from edgekit.analysis import recognize

    layout = recognize(decoder(CONFIG, fit=False))
    assert layout is not None
    assert (layout.layers, layout.heads, layout.kv_heads, layout.head_dim) == (2, 4, 2, 32)
    assert (layout.vocab, layout.hidden, layout.cache_dtype, layout.past_prefix) == (
        256,
        128,
        "float",
        "past_key_values",
    )
    assert layout.kv_bytes_per_token() == 2 * 2 * 2 * 32 * 4
    assert layout.roles["input_ids"].startswith("token ids")
    assert layout.roles["past_key_values.1.value"].startswith("KV cache in: layer 1 value")
    assert layout.roles["present.0.key"].startswith("KV cache out: layer 0 key")

    old = recognize(decoder(dataclasses.replace(CONFIG, past_prefix="past", layers=3), fit=False))
    assert old is not None and old.past_prefix == "past" and old.layers == 3


def test_recognize_says_no_for_a_model_without_a_cache(tmp_path: Path, run_cli) -> None:
    import onnx
    from onnx import TensorProto, helper

    from edgekit.analysis import recognize

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert recognize(model) is None
    onnx.save(model, tmp_path / "relu.onnx")
    code, _, err = run_cli("inspect", tmp_path / "relu.onnx", "--context", "64")
    assert code == 2 and "--context needs a decoder with a KV cache" in err


def test_inspect_context_states_the_terms_and_the_formula(decoder_path: Path, run_cli) -> None:
    import json

    code, out, _ = run_cli("inspect", decoder_path, "--context", "256", "--batch", "2", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["decoder"]["layers"] == 2 and report["decoder"]["kv_heads"] == 2
    ctx = report["context"]
    assert ctx["context"] == 256 and ctx["batch"] == 2
    parts = ctx["parts"]
    assert parts["fp32"]["kv_cache"] == 2 * 256 * (2 * 2 * 2 * 32 * 4)
    assert parts["fp16"]["kv_cache"] == parts["fp32"]["kv_cache"] // 2
    assert parts["int4"]["weights"] < parts["int8"]["weights"] < parts["fp32"]["weights"]
    # attention scores dominate a long prefill: 2 x B x heads x N x N x 4 bytes
    assert parts["fp32"]["prefill_attention_scores"] == 2 * 2 * 4 * 256 * 256 * 4
    # the estimates the fit table uses are the context's
    assert (
        report["runtime_memory_bytes"]["onnxruntime"]["fp32"]
        == ctx["runtime_memory_bytes"]["onnxruntime"]["fp32"]
    )
    code, out, _ = run_cli("inspect", "--help")
    assert "KV cache = B x N x layers x 2" in " ".join(out.split())
    code, out, _ = run_cli("inspect", decoder_path, "--context", "128")
    assert code == 0 and "memory at context 128" in out
    assert "token ids [batch, sequence]" in out and "KV cache in: layer 0 key" in out  # [..] is not markup


# ---- the next-token gate ------------------------------------------------------------------------------
def write_token_set(
    path: Path, text: str, count: int, seed: int, length: int = 32, next_tokens: bool = False
) -> Path:
    """An npz set of prefill windows with the empty cache inputs ([N, kv_heads, 0, head_dim]); with
    `next_tokens`, `labels` [N, T] holds the byte after each position (perplexity)."""
    from decoder_models import past_names

    data = token_set(text, length, count, seed)
    arrays = {k: data[k] for k in ("input_ids", "attention_mask", "position_ids")}
    for layer in range(CONFIG.layers):
        for name in past_names(CONFIG, layer):
            arrays[name] = np.zeros((count, CONFIG.kv_heads, 0, CONFIG.head_dim), np.float32)
    if next_tokens:
        arrays["labels"] = data["next_tokens"]
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def token_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from decoder_models import train_text

    root = tmp_path_factory.mktemp("token_sets")
    return {
        "calib": write_token_set(root / "calib.npz", train_text(), 32, seed=3),
        "val": write_token_set(root / "val.npz", held_out_text(), 32, seed=4, next_tokens=True),
    }


def test_int4_gate_on_next_tokens_keeps_the_hostile_lm_head_at_int8(
    hostile_path: Path, token_sets: dict[str, Path], tmp_path: Path
) -> None:
    from edgekit import api
    from edgekit.backends.base import ExportOptions

    def export(search: bool) -> api.ExportRecord:
        return api.export(
            api.ExportRequest(
                hostile_path,
                "x86-cpu",
                "int4",
                calib=token_sets["calib"],
                val=token_sets["val"],
                out_dir=tmp_path / ("search" if search else "all-int4"),
                options=ExportOptions(search=search),
            )
        )

    everything = export(search=False)
    fid = everything.manifest["fidelity"]
    assert everything.manifest["task"]["kind"] == "tokens"
    assert fid["task"]["kind"] == "tokens" and not fid["passed"]
    assert any("top-1 agreement" in f for f in fid["failures"])

    kept = export(search=True)
    fid = kept.manifest["fidelity"]
    assert fid["passed"], fid["failures"]
    assert fid["task"]["metrics"]["top1_agreement"] >= 90.0
    metrics, worst = fid["task"]["metrics"], everything.manifest["fidelity"]["task"]["metrics"]
    assert metrics["kl"] < worst["kl"]
    # the set holds the next tokens: both models' perplexity on them (FP32's is the same in both)
    assert metrics["perplexity_reference"] == pytest.approx(worst["perplexity_reference"])
    assert metrics["perplexity_reference"] < 256 and metrics["perplexity"] < worst["perplexity"]
    above = kept.manifest["details"]["weight_only"]["kept_above_int4"]
    assert [row["node"] for row in above] == ["/lm_head/MatMul"] and above[0]["precision"] == "int8"


# ---- the generation benchmark ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fp32_artifact(decoder_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgekit import api

    out = tmp_path_factory.mktemp("decoder_artifacts")
    return api.export(api.ExportRequest(decoder_path, "x86-cpu", "fp32", out_dir=out)).path


def _decode_record(records_path: Path) -> dict:
    import json

    (record,) = [json.loads(line) for line in records_path.read_text().splitlines() if line.strip()]
    assert record["status"] == "ok", record["error"]
    return record


def _check_decode(record: dict, prompt: int, contexts: list[int]) -> None:
    dec = record["decode"]
    assert dec["prompt_tokens"] == prompt and dec["batch"] == 1
    assert [row["context"] for row in dec["decode"]] == contexts
    assert dec["prefill_ms"]["p50"] > 0 and dec["ttft_ms"] > 0 and dec["tokens_per_s"] > 0
    assert all(row["latency_ms"]["p50"] > 0 for row in dec["decode"])
    assert dec["generated_tokens"] == contexts[-1] - 1 - prompt
    assert dec["peak_rss_mb"] > 0 and record["peak_rss_mb"] == dec["peak_rss_mb"]
    assert record["settings"]["input_source"].startswith("decode loop (prompt")


def test_bench_runs_the_decode_loop_on_the_host(fp32_artifact: Path, tmp_path: Path, run_cli) -> None:
    results = tmp_path / "results.jsonl"
    code, out, err = run_cli(
        "bench", fp32_artifact, "--device", "local", "--iterations", "5", "--warmup", "1",
        "--prompt", "16", "--context", "24", "--context", "48", "-o", results,
    )  # fmt: skip
    assert code == 0, err
    _check_decode(_decode_record(results), 16, [24, 48])
    assert "generation (decoders with a KV cache)" in out

    # the report shows decode latency against context length (text, markdown, JSON)
    code, out, err = run_cli("report", results, "-o", tmp_path / "report.md")
    assert code == 0, err
    text = (tmp_path / "report.md").read_text()
    assert "## Generation: decode latency against context length" in text
    assert text.count("| tiny_decoder.x86-cpu.fp32 | local | 16 |") == 2
    code, out, err = run_cli("report", results, "-o", tmp_path / "report.json")
    import json

    generation = json.loads((tmp_path / "report.json").read_text())["generation"]
    assert [row["context"] for row in generation] == [24, 48] and all(r["decode_ms"] > 0 for r in generation)


@pytest.mark.ssh
def test_bench_device_runs_the_decode_loop_over_ssh(fp32_artifact: Path, tmp_path: Path, run_cli) -> None:
    from tests.sshd import ssh_boards

    results = tmp_path / "results.jsonl"
    with ssh_boards(tmp_path, count=1) as devices:
        code, _, err = run_cli(
            "bench", fp32_artifact, "--devices", devices, "--device", "board-0", "--iterations", "5",
            "--warmup", "1", "--prompt", "16", "--context", "24", "--context", "48", "-o", results,
        )  # fmt: skip
    assert code == 0, err
    record = _decode_record(results)
    assert record["device"]["transport"] == "ssh"
    _check_decode(record, 16, [24, 48])
