"""Issue 19, "what edgekit starts, it ends": the local agent's processes, the shard-memory measurement
subprocess and adb client processes die with edgekit even when it is SIGKILLed (parent-death signal,
edgekit.lifecycle), as the sandbox's and the release pool's do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.proc_util import alive, wait_for

SLEEPER = "#!/bin/sh\necho $$ > {pidfile}\nexec sleep 120\n"

HELPERS = {
    "local": """
import asyncio, sys
from edgekit.transport.local import LocalTransport
asyncio.run(LocalTransport().run([sys.argv[1]], timeout=300))
""",
    "local-stream": """
import asyncio, sys
from edgekit.transport.local import LocalTransport
async def main():
    proc = await LocalTransport().open_process([sys.argv[1]])
    await asyncio.sleep(300)
asyncio.run(main())
""",
    "adb": """
import asyncio, sys
from edgekit.transport.adb import AdbTransport
asyncio.run(AdbTransport("phone", "SERIAL", adb=sys.argv[1])._adb("shell", "true", timeout=300))
""",
    "shard-memory": """
import sys
import onnx
from edgekit.split import measure
from edgekit.split import partition_graph as graph
from tests import models
path = sys.argv[2] + "/m.onnx"
onnx.save(models.resnet_ish(size=16, width=4, blocks=1), path)
g = graph.load(path)
measure._CHILD = "import os; os.execv(%r, [%r])" % (sys.argv[1], sys.argv[1])
measure.shard_memory_mb(g, [(0, len(g))])
""",
}


@pytest.mark.parametrize("spawner", list(HELPERS))
def test_children_die_when_edgekit_is_sigkilled(spawner: str, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    sleeper = tmp_path / "sleeper"
    sleeper.write_text(SLEEPER.format(pidfile=pidfile))
    sleeper.chmod(0o755)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", HELPERS[spawner], str(sleeper), str(tmp_path)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_for(lambda: pidfile.is_file() and pidfile.read_text().strip(), 60), proc.stderr
        child = int(pidfile.read_text())
        assert alive(child)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    try:
        assert wait_for(lambda: not alive(child), 10), f"{spawner}: the child outlived its SIGKILLed parent"
    finally:
        if alive(child):
            import os
            import signal

            os.kill(child, signal.SIGKILL)
