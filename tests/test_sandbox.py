"""edgekit.sandbox: the offline, private subprocess converters run in (real subprocesses, no onnx2tf)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgekit.sandbox import Sandbox, last_error_line, offline_env, sweep_stale
from tests.proc_util import alive, wait_for


@pytest.fixture
def tmpdir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Sandboxes of this test go to a private TMPDIR, so sweeps and leftovers are this test's own."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    return root


def test_call_runs_in_a_private_dir_and_is_removed(tmpdir_env: Path) -> None:
    with Sandbox("test run") as box:
        (box.dir / "a.txt").write_text("hello")
        run = box.call("shutil:copyfile", {"src": "a.txt", "dst": "b.txt"}, box.dir / "log.txt", timeout=60)
        assert run.ok and run.returncode == 0 and not run.timed_out
        assert (box.dir / "b.txt").read_text() == "hello", "the sandbox dir is the child's cwd"
        log = (box.dir / "log.txt").read_text()
        assert "EDGEKIT: shutil" in log and "finished" in log
        assert run.network == {"isolation": run.isolation, "attempts": []}
        where = box.dir
    assert not where.exists()
    assert list(tmpdir_env.iterdir()) == []


def test_network_is_refused_recorded_and_reported(tmpdir_env: Path) -> None:
    with Sandbox("test conversion") as box:
        log_path = box.dir / "log.txt"
        run = box.call("urllib.request:urlopen", {"url": "https://github.com/", "timeout": 5}, log_path, 60)
        assert not run.ok and run.returncode == 1
        assert run.network_attempts, "the attempt must be recorded"
        assert "disabled during edgekit's test conversion" in last_error_line(log_path)


def test_network_guard_is_inherited_by_python_grandchildren(tmp_path: Path) -> None:
    env, record = offline_env(tmp_path, "test")
    code = "import socket; socket.create_connection(('192.0.2.1', 80), timeout=5)"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-c', {code!r}]))",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "disabled during edgekit's test" in proc.stderr
    assert "192.0.2.1" in record.read_text()


def test_timeout_kills_the_command_and_everything_it_started(tmpdir_env: Path) -> None:
    script = (
        "import subprocess, time; p = subprocess.Popen(['sleep', '300']); print('grandchild', p.pid, flush=True);"
        " time.sleep(300)"
    )
    with Sandbox() as box:
        log_path = box.dir / "log.txt"
        run = box.run([sys.executable, "-c", script], log_path, timeout=3)
        assert run.timed_out and not run.ok and run.signal_name == "SIGKILL"
        assert run.seconds < 60
        grandchild = int(log_path.read_text().split("grandchild ")[1].split()[0])
    assert wait_for(lambda: not alive(grandchild), 10), "the grandchild must be killed with the command"


def test_a_grandchild_left_running_is_killed_when_the_command_ends(tmpdir_env: Path) -> None:
    with Sandbox() as box:
        pid_file = box.dir / "pid"
        run = box.run(["sh", "-c", f"sleep 300 & echo $! > {pid_file}"], box.dir / "log.txt", timeout=60)
        assert run.ok
        grandchild = int(pid_file.read_text())
        assert wait_for(lambda: not alive(grandchild), 10), "a background grandchild outlived the run"


INTERRUPTED_DRIVER = """
import json, signal, sys
from pathlib import Path
from edgekit.sandbox import Sandbox

def interrupt(*_):
    raise KeyboardInterrupt

pid_file = Path(sys.argv[1])
# the child records its pid, then signals its parent (this driver), whose handler raises KeyboardInterrupt
script = (
    f"import os, signal, time; open({str(pid_file)!r}, 'w').write(str(os.getpid()));"
    " os.kill(os.getppid(), signal.SIGUSR1); time.sleep(300)"
)
signal.signal(signal.SIGUSR1, interrupt)
box = Sandbox()
try:
    with box:
        where = box.dir
        box.run([sys.executable, "-c", script], where / "log.txt", timeout=120)
except KeyboardInterrupt:
    print(json.dumps({"interrupted": True, "dir": str(where)}))
"""


def test_interrupt_kills_the_child_and_removes_the_dir(tmpdir_env: Path, tmp_path: Path) -> None:
    """KeyboardInterrupt (SIGTERM's `Terminated` unwinds the same way) while the command runs. In a
    fresh interpreter: pytest's own signal handlers (pytest-timeout's SIGALRM) stay out of it."""
    pid_file = tmp_path / "child.pid"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_DRIVER, str(pid_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["interrupted"] and not Path(outcome["dir"]).exists()
    assert not alive(int(pid_file.read_text())), "the child must be killed on the way out"


def test_sandboxes_of_killed_owners_are_swept(tmpdir_env: Path) -> None:
    """A SIGKILLed edgekit cannot clean up: the next sandbox removes its directory, never a live one."""
    code = textwrap.dedent(
        """
        import time
        from edgekit.sandbox import Sandbox
        box = Sandbox().__enter__()
        print(box.dir, flush=True)
        time.sleep(300)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        dead_dir = Path(owner.stdout.readline().strip())
        assert dead_dir.is_dir()
        with Sandbox() as live:
            assert sweep_stale(tmpdir_env) == [], "the owner still runs: its sandbox is kept"
            owner.kill()
            owner.wait()
            assert sweep_stale(tmpdir_env) == [dead_dir]
            assert live.dir.is_dir() and not dead_dir.exists()
    finally:
        owner.kill()
        owner.wait()


def test_call_wants_module_colon_function(tmpdir_env: Path) -> None:
    with Sandbox() as box, pytest.raises(ValueError, match="module:function"):
        box.call("onnx2tf.convert", {}, box.dir / "log.txt")
    with pytest.raises(RuntimeError, match="context manager"):
        _ = Sandbox().dir


def test_last_error_line_picks_the_last_error_line(tmp_path: Path) -> None:
    log = tmp_path / "convert.log"
    log.write_text(
        "INFO: lots of output\n\x1b[31mERROR:\x1b[0m The trace log is below.\nTraceback (most recent call "
        "last):\n  File x\nValueError: Dimensions must be equal, but are 3 and 4\n\n"
    )
    assert last_error_line(log) == "ValueError: Dimensions must be equal, but are 3 and 4"
    assert last_error_line(tmp_path / "missing.log") == ""
