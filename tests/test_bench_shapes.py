"""Shapes are stated, never guessed (issue 17): bench times each stated shape set, records carry the
shapes, token inputs get valid values, and an unstated dynamic dimension is an error naming it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import transformer_models as tm

from edgekit import agent
from edgekit.errors import BadInput
from edgekit.runner.shapes import input_ranges, parse_shape_sets, resolve


def _artifact(tmp_path: Path, run_cli) -> Path:
    model = tm.save(tm.encoder(layers=2), tmp_path, "encoder")
    code, out, err = run_cli(
        "export", model, "--target", "x86-cpu", "--fp32", "-o", tmp_path / "out", "--json"
    )
    assert code == 0, err
    return Path(json.loads(out)["artifact"])


def test_bench_times_two_sequence_lengths_with_valid_token_inputs(tmp_path: Path, run_cli) -> None:
    artifact = _artifact(tmp_path, run_cli)
    results = tmp_path / "results.jsonl"
    code, _, err = run_cli(
        "bench",
        artifact,
        "--device",
        "local",
        "--iterations",
        "5",
        "--warmup",
        "1",
        "--input-shape",
        "input_ids:1,16",
        "--input-shape",
        "input_ids:1,128",
        "-o",
        results,
    )
    assert code == 0, err
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert [r["shapes"]["input_ids"] for r in records] == [[1, 16], [1, 128]]
    # inputs not named follow the symbolic dims of the named one
    assert [r["shapes"]["attention_mask"] for r in records] == [[1, 16], [1, 128]]
    source = records[0]["settings"]["input_source"]
    assert f"input_ids ids [0, {tm.VOCAB})" in source and "attention_mask all 1" in source
    assert "token_type_ids 0" in source  # a 2-row table: random [-128, 127] would index out of range


def test_an_unstated_dynamic_dimension_is_an_error_naming_it(tmp_path: Path, run_cli) -> None:
    artifact = _artifact(tmp_path, run_cli)
    code, _, err = run_cli("bench", artifact, "--device", "local", "-o", tmp_path / "r.jsonl")
    assert code == 2
    assert "'input_ids' dimension 1 ('sequence') is dynamic" in err


def test_token_ranges_come_from_the_model() -> None:
    ranges = input_ranges(tm.encoder(layers=1, vocab=321))
    assert ranges == {
        "input_ids": {"kind": "ids", "high": 321},
        "attention_mask": {"kind": "ones"},
        "token_type_ids": {"kind": "zeros"},
    }


def test_agent_feeds_ids_in_range_masks_of_one_and_never_negatives() -> None:
    rng = np.random.RandomState(0)
    ranges = {"ids": {"kind": "ids", "high": 50}, "mask": {"kind": "ones"}}
    ids = agent.random_input(np, rng, {"name": "ids", "shape": [1, 64], "dtype": "int64"}, ranges)
    mask = agent.random_input(np, rng, {"name": "mask", "shape": [1, 64], "dtype": "int64"}, ranges)
    other = agent.random_input(np, rng, {"name": "other", "shape": [2, 3], "dtype": "int32"}, ranges)
    assert ids.min() >= 0 and ids.max() < 50 and (mask == 1).all() and (other == 0).all()
    with pytest.raises(agent.AgentError, match="dimension 1"):
        agent.random_input(np, rng, {"name": "ids", "shape": ["batch", "sequence"], "dtype": "int64"}, ranges)


def test_shape_sets_and_resolution() -> None:
    sets = parse_shape_sets(["input_ids:1,16", "input_ids:1,128", "pixel:1,3,8,8"])
    assert sets == [
        {"input_ids": [1, 16], "pixel": [1, 3, 8, 8]},
        {"input_ids": [1, 128], "pixel": [1, 3, 8, 8]},
    ]
    specs = [{"name": "a", "shape": ["batch", "seq"]}, {"name": "b", "shape": ["batch", "seq", 4]}]
    assert resolve(specs, {"a": [2, 7]}) == {"a": [2, 7], "b": [2, 7, 4]}
    with pytest.raises(BadInput, match="'seq'"):
        resolve(specs, {})
