"""`edgekit demo`: which targets it runs, what it times here (the backend's answer) and how rows read."""

from __future__ import annotations

import pytest

from edgekit import demo
from edgekit.backends import implemented
from edgekit.errors import BadInput


def test_demo_targets_in_registry_order_and_named_ones() -> None:
    chosen = demo.demo_targets()
    order = implemented()
    keys = [(order.index(p.backend), p.name) for p in chosen]
    assert keys == sorted(keys) and chosen[0].backend == "onnxruntime"
    assert [p.name for p in demo.demo_targets(["intel-gpu", "x86-cpu"])] == ["intel-gpu", "x86-cpu"]
    with pytest.raises(BadInput, match="Did you mean 'x86-cpu'"):
        demo.demo_targets(["x86-cpux"])


def test_rows_say_where_to_time_what_is_not_timed_here() -> None:
    rows = [
        {
            "target": "x86-cpu",
            "precision": "int8",
            "bytes": 30_000,
            "compression_ratio": 3.9,
            "accuracy": 98.5,
            "drop": -0.2,
            "cosine": 0.99931,
            "p50_ms": 0.0421,
            "status": "ok",
        },
        {
            "target": "intel-gpu",
            "precision": "fp16",
            "effective_precision": "fp16",
            "p50_ms": None,
            "status": "ok",
        },
        {"target": "jetson-nano", "precision": "fp32", "status": "export failed", "error": "no calib"},
    ]
    text = demo.markdown(rows)
    assert "| digits | x86-cpu | int8 | 30.0 kB | 3.90x | 98.50 | -0.20 | - | 0.9993 | 0.042 | ok |" in text
    assert "| digits | intel-gpu | fp16 | - | - | - | - | - | - | on device | ok |" in text
    assert "| digits | jetson-nano | fp32 | - | - | - | - | - | - | - | export failed: no calib |" in text


def test_detector_rows_carry_the_task_verdict() -> None:
    row = {
        "model": "detector",
        "target": "x86-cpu",
        "precision": "int8",
        "bytes": 120_000,
        "compression_ratio": 3.6,
        "task": "F1 0.99 [0.97, 1.00] on 24 samples",
        "cosine": 0.99991,
        "p50_ms": 9.5,
        "status": "ok",
    }
    text = demo.markdown([row])
    assert (
        "| detector | x86-cpu | int8 | 0.12 MB | 3.60x | - | - | F1 0.99 [0.97, 1.00] on 24 samples |" in text
    )
    models = {m["name"]: m for m in demo.demo_models()}
    assert models["detector"]["input_shapes"] == {"images": [1, 3, 640, 640]}
    assert all(p.exists() for m in models.values() for p in m["paths"].values())
