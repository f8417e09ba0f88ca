"""Issue 19: on Python 3.10 `asyncio.wait_for` raises `asyncio.TimeoutError`, which is not the builtin
`TimeoutError` there. edgekit declares requires-python >= 3.10, so the local transport and the pipeline
relay are run on a 3.10 interpreter when this machine has one (pyenv's): a device timeout must be a
"timeout" TransportError / an Unreachable naming the stage, not an uncaught error (exit 4)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LOCAL = """
import asyncio
from edgekit.transport.local import LocalTransport
from edgekit.transport.base import TransportError
try:
    asyncio.run(LocalTransport().run(["sleep", "5"], timeout=0.3))
except TransportError as exc:
    print("OK", exc.kind)
"""

RELAY = """
import asyncio, sys, types
sys.modules.setdefault("numpy", types.ModuleType("numpy"))  # the relay's framing needs no numpy here
import importlib.util
from edgekit.errors import Unreachable
# the module alone: the edgekit.split package imports onnx, which this bare 3.10 need not have
spec = importlib.util.spec_from_file_location("relay", "edgekit/split/stage_client.py")
relay = sys.modules["relay"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(relay)

class Never:
    async def readexactly(self, n):
        await asyncio.sleep(60)

stage = types.SimpleNamespace(
    process=types.SimpleNamespace(stdout=Never(), stderr_tail=lambda: ""),
    device=types.SimpleNamespace(name="board"), index=0,
)
try:
    asyncio.run(relay._read_frame(stage, 0.3))
except Unreachable as exc:
    print("OK", "did not answer" in str(exc))
"""


def _python310() -> str | None:
    for candidate in ("python3.10", os.path.expanduser("~/.pyenv/versions/3.10.13/bin/python3.10")):
        found = shutil.which(candidate)
        if found:
            probe = subprocess.run([found, "-c", "import sys; print(sys.version_info[:2])"],
                                   capture_output=True, text=True, env={**os.environ, "PYENV_VERSION": "3.10.13"})  # fmt: skip
            if probe.returncode == 0 and "(3, 10)" in probe.stdout:
                return found
    return None


@pytest.mark.parametrize(
    "script,expected", [(LOCAL, "OK timeout"), (RELAY, "OK True")], ids=["local", "relay"]
)
def test_device_timeouts_are_caught_on_python_310(script: str, expected: str) -> None:
    python = _python310()
    if python is None:
        pytest.skip("no Python 3.10 on this machine")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYENV_VERSION": "3.10.13"}
    proc = subprocess.run(
        [python, "-c", script], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
    )
    assert proc.stdout.strip() == expected, proc.stdout + proc.stderr
