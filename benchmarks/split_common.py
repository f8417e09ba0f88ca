"""What the split benchmarks share: the models they split by name, and `edgekit` run as a command
line the way a user runs it (JSON output parsed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import onnx

from tests import analysis_models

ROOT = Path(__file__).resolve().parents[1]


def split_models(dbnet_res: int = 640) -> dict[str, Callable[[], onnx.ModelProto]]:
    """Model builders by name (tests/analysis_models.py); the DBNet input resolution is the caller's."""
    return {
        "resnet18": lambda: analysis_models.resnetish(224, widths=(64, 128, 256, 512))[0],
        "dbnet": lambda: analysis_models.dbnet(dbnet_res)[0],
        "mobilenetv2": lambda: analysis_models.mobilenetv2()[0],
        "transformer": lambda: analysis_models.transformer(256, 512, 6, 8, 2048)[0],
    }


def edgekit(*args: object, cwd: Path, expect: int = 0) -> tuple[dict | list | None, str]:
    """Run `python -m edgekit ARGS --json` in `cwd`; exits naming the command unless it exits `expect`.
    Returns (the parsed JSON or None when it printed nothing, stderr)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "edgekit", *map(str, args), "--json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != expect:
        raise SystemExit(
            f"edgekit {' '.join(map(str, args))} exited {proc.returncode}, expected {expect}: "
            f"{proc.stderr.strip()[-800:]}"
        )
    return (json.loads(proc.stdout) if proc.stdout.strip() else None), proc.stderr
