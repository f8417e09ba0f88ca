"""Process lifecycle: a termination signal cleans up as Ctrl-C does, and child processes die with edgekit.

Signals. Python turns SIGINT into KeyboardInterrupt, so every `finally` / `with` block runs (temp
directories removed, converter subprocesses killed) and the CLI exits 130. SIGTERM (a CI timeout,
`kill PID`, `docker stop`) and SIGHUP (the terminal went away) would end the process at once, with no
cleanup at all. `install_signal_handlers()` (called once by `edgekit.cli.main`) makes them raise
`Terminated`, a `SystemExit` subclass: the stack unwinds exactly as for Ctrl-C (`except Exception` does
not catch it) and the process exits with the shell's convention for death by a signal, 128 + signal
number: **143 for SIGTERM**, 129 for SIGHUP (130 stays Ctrl-C's). A repeated signal during that cleanup
is ignored so that the cleanup finishes; SIGKILL remains the hard stop. A signal that is already
ignored when edgekit starts (`nohup`) stays ignored.

Children. `popen()` starts a child in its own process group (so that `stop()` kills it *and* whatever it
started, and a Ctrl-C in the terminal reaches edgekit, which then stops it), and on Linux with a
parent-death signal (`prctl(PR_SET_PDEATHSIG, SIGKILL)`, set by a tiny exec stub in the child before
it runs the real command): even when edgekit itself is SIGKILLed (or OOM-killed) the kernel kills the
child. Before, an onnx2tf converter orphaned this way held 18 GB for a quarter of an hour. (The kernel
sends it when the *thread* that started the child ends: start children from a thread that waits for
them, as `child()` does.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# the signals that mean "stop now, cleanly" besides SIGINT (which Python already handles)
TERMINATING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))

# Runs in the child before the real command: ask the kernel to SIGKILL us when the parent dies, then
# check that the parent did not die before that (we would have been reparented), then exec the command
# (the parent-death signal survives execve of anything but set-user-ID / file-capability binaries).
_PDEATHSIG_STUB = """\
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG, SIGKILL
    sys.stderr.write("edgekit: prctl(PR_SET_PDEATHSIG) failed; the child may outlive edgekit\\n")
if os.getppid() != int(sys.argv[1]):
    os._exit(70)
os.execvp(sys.argv[2], sys.argv[2:])
"""


class Terminated(SystemExit):
    """Raised in the main thread by SIGTERM / SIGHUP: unwinds like KeyboardInterrupt, exits 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"terminated by {signal.Signals(self.signum).name}"


_terminating = False


def _on_signal(signum: int, _frame: object) -> None:
    global _terminating
    if _terminating:
        return  # already unwinding: let the cleanup finish (SIGKILL is the hard stop)
    _terminating = True
    # os.write, not print: a signal handler may interrupt a print on the same stream
    os.write(2, f"edgekit: terminated by {signal.Signals(signum).name}; cleaning up\n".encode())
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """Make SIGTERM / SIGHUP unwind like Ctrl-C (see the module docstring). Main thread only; idempotent."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in TERMINATING:
        current = signal.getsignal(signum)
        if current is signal.SIG_IGN:
            continue  # e.g. nohup: the user asked for it to be ignored
        if current is signal.SIG_DFL or current is _on_signal:
            signal.signal(signum, _on_signal)


def child_argv(argv: Sequence[str]) -> list[str]:
    """`argv` wrapped so that the child dies with this process (Linux: parent-death signal)."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-I", "-c", _PDEATHSIG_STUB, str(os.getpid()), *argv]


def checked_child_argv(argv: Sequence[str]) -> list[str]:
    """`child_argv`, raising FileNotFoundError (as Popen would) for a program that is not there: the
    exec stub would only report it from inside the child. For asyncio's create_subprocess_exec too."""
    if not argv:
        raise ValueError("empty argv")
    missing = not Path(argv[0]).is_file() if os.sep in argv[0] else shutil.which(argv[0]) is None
    if missing:
        raise FileNotFoundError(2, f"No such file or directory: '{argv[0]}'", argv[0])
    return child_argv(argv)


def popen(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start `argv` as a child that dies with edgekit: its own process group (see `stop`) and a
    parent-death signal. Keyword arguments go to `subprocess.Popen` (start_new_session is forced)."""
    wrapped = checked_child_argv(argv)
    kwargs["start_new_session"] = True
    return subprocess.Popen(wrapped, **kwargs)


def stop(proc: subprocess.Popen[Any]) -> int:
    """Kill the child's whole process group (the child if still running, and anything it started
    that outlived it), reap the child and return its exit status."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    returncode = proc.wait()
    # the group may outlive its leader (a grandchild): its id cannot be reused while it has members
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return returncode


@contextlib.contextmanager
def child(argv: Sequence[str], **kwargs: Any) -> Iterator[subprocess.Popen[Any]]:
    """`popen` as a context manager: on leaving the block, however it is left (an exception, Ctrl-C,
    `Terminated`), the child's process group is killed and the child reaped."""
    proc = popen(argv, **kwargs)
    try:
        yield proc
    finally:
        stop(proc)


def die_with_parent(parent: int) -> None:
    """In a Python worker edgekit started without exec (multiprocessing spawn, where `child_argv`'s stub
    cannot run first): the kernel SIGKILLs this process when `parent` dies (Linux; the parent-death
    signal), and if `parent` is already gone, exit now (status 70)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(70)


def alive(pid: int) -> bool:
    """Whether process `pid` exists (also when it is another user's): e.g. whether the owner of a
    leftover temp folder named with its pid may still be writing it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
