"""edgekit.lifecycle: SIGTERM unwinds like Ctrl-C, children die with their parent (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgekit import lifecycle
from tests.proc_util import alive, wait_for

ROOT = Path(__file__).resolve().parents[1]

# a stand-in for edgekit: install the handlers, start a child, wait in a try/finally that records cleanup
PROGRAM = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    from edgekit import lifecycle
    done = Path(sys.argv[1])
    if sys.argv[2] == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as nohup / a supervisor may leave it
    lifecycle.install_signal_handlers()
    try:
        with lifecycle.child(["sleep", "300"]) as proc:
            print(proc.pid, flush=True)
            time.sleep(120)
    finally:
        time.sleep(float(sys.argv[3]))  # a slow cleanup, to send a second signal into
        done.write_text("cleaned up")
    """
)


def _start(tmp_path: Path, mode: str = "", cleanup_s: float = 0.0) -> tuple[subprocess.Popen[str], int, Path]:
    done = tmp_path / "done"
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, str(done), mode or "-", str(cleanup_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    return proc, child, done


def test_sigterm_unwinds_like_ctrl_c_and_exits_143(tmp_path: Path) -> None:
    proc, child, done = _start(tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert done.read_text() == "cleaned up", "finally blocks must run"
    assert "terminated by SIGTERM" in err and "Traceback" not in err
    assert not alive(child), "the child is killed on the way out"


def test_a_second_sigterm_does_not_cut_the_cleanup_short(tmp_path: Path) -> None:
    proc, _, done = _start(tmp_path, cleanup_s=2.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None
    assert "terminated by SIGTERM" in proc.stderr.readline()  # now in the 2 s cleanup
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143 and done.read_text() == "cleaned up"


def test_an_ignored_sigterm_stays_ignored(tmp_path: Path) -> None:
    proc, child, done = _start(tmp_path, mode="ignore")
    try:
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.5)
        assert alive(child)
    finally:
        proc.kill()
        proc.communicate(timeout=60)


def test_children_die_when_the_parent_is_sigkilled(tmp_path: Path) -> None:
    """No cleanup code can run after SIGKILL (or the OOM killer): the parent-death signal does it."""
    proc, child, _ = _start(tmp_path)
    assert alive(child)
    proc.kill()
    proc.communicate(timeout=60)
    assert wait_for(lambda: not alive(child), 10), "the child outlived its SIGKILLed parent"


def test_popen_reports_a_missing_program_like_subprocess() -> None:
    with pytest.raises(FileNotFoundError):
        lifecycle.popen(["no-such-program-edgekit"])


def test_terminated_is_a_systemexit_with_the_shell_code() -> None:
    exc = lifecycle.Terminated(signal.SIGTERM)
    assert isinstance(exc, SystemExit) and not isinstance(exc, Exception)
    assert exc.code == 143 and str(exc) == "terminated by SIGTERM"
