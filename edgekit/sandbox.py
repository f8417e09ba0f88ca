"""An offline, private subprocess for third-party converters (onnx2tf today; any converter tomorrow).

Converters are run out of edgekit's process so that their import cost, global state, console noise and
crashes stay out of it, and offline so that an export is reproducible and never fetches anything:

- a private working directory (the converter's cwd; some read fixed file names from it), removed when
  the `Sandbox` block ends, however it ends; one left behind by a killed edgekit is removed by the
  next sandbox (a lock held for the directory's lifetime tells live from dead);
- no network: a `sitecustomize` socket guard on the child's PYTHONPATH refuses and records every
  internet connection and name lookup, proxies point at a closed local port, and - when edgekit runs
  as root and `unshare` works here - the child gets its own empty network namespace (`unshare -n`);
- the child's stdout and stderr go to a log file; `last_error_line` gives the one line a user sees;
- a timeout, and the child (with everything it starts) dies with edgekit: see `edgekit.lifecycle`.

    with Sandbox("TFLite conversion") as box:
        np.save(box.dir / "input.npy", data)
        run = box.call("onnx2tf:convert", {"input_onnx_file_path": ...}, log_path, timeout=1800)
        if run.returncode != 0: ... last_error_line(log_path) ...
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from edgekit import lifecycle

log = logging.getLogger(__name__)

PREFIX = "edgekit-sandbox-"
LOCK_NAME = ".edgekit-sandbox.lock"
GUARD_LOG_ENV = "EDGEKIT_NET_GUARD_LOG"
PURPOSE_ENV = "EDGEKIT_SANDBOX_PURPOSE"
CLOSED_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens there

# ---- the network guard loaded into the child (and every Python process it starts) ---------------
GUARD_SOURCE = '''\
"""edgekit: refuse and record internet access in this process (edgekit's sandbox runs offline)."""
import os as _os
import socket as _socket

_LOG = _os.environ.get("EDGEKIT_NET_GUARD_LOG", "")
_WHAT = _os.environ.get("EDGEKIT_SANDBOX_PURPOSE", "sandboxed run")
_NET = (_socket.AF_INET, _socket.AF_INET6)


def _record(what):
    if _LOG:
        with open(_LOG, "a") as handle:
            handle.write(str(what) + "\\n")


def _refuse(what):
    _record(what)
    return OSError(101, "network access is disabled during edgekit's " + _WHAT + ": " + str(what))


_connect = _socket.socket.connect
_connect_ex = _socket.socket.connect_ex


def _guarded_connect(self, address):
    if self.family in _NET:
        raise _refuse(("connect", address))
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    if self.family in _NET:
        raise _refuse(("connect", address))
    return _connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    _record(("getaddrinfo", host))
    raise _socket.gaierror(-3, "name lookup is disabled during edgekit's " + _WHAT + ": " + str(host))


_socket.socket.connect = _guarded_connect
_socket.socket.connect_ex = _guarded_connect_ex
_socket.getaddrinfo = _guarded_getaddrinfo
'''

# ---- `Sandbox.call`'s driver: import "module:attr", call it with JSON arguments ------------------
CALL_DRIVER = """\
import importlib, json, sys, time
spec = json.load(open(sys.argv[1]))
start = time.time()
module_name, _, attr = spec["target"].partition(":")
func = module = importlib.import_module(module_name)
version = getattr(module, "__version__", "")
print("EDGEKIT:", module_name, version, "imported in %.1fs" % (time.time() - start), flush=True)
for part in attr.split("."):
    func = getattr(func, part)
func(*spec["args"], **spec["kwargs"])
print("EDGEKIT:", spec["target"], "finished in %.1fs" % (time.time() - start), flush=True)
"""


@dataclass
class SandboxRun:
    """How one sandboxed command ended."""

    returncode: int  # negative: killed by that signal (subprocess's convention)
    seconds: float
    timed_out: bool
    isolation: str  # how the network was cut, for the record
    network_attempts: list[str] = field(default_factory=list)  # what the guard refused

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def signal_name(self) -> str | None:
        """The signal that killed the command (e.g. SIGKILL: the kernel's OOM killer), if one did."""
        if self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"

    @property
    def network(self) -> dict[str, Any]:
        return {"isolation": self.isolation, "attempts": list(self.network_attempts)}


@functools.cache
def netns_prefix() -> tuple[str, ...]:
    """`unshare -n` when we are root and it works here (containers may forbid it); else nothing."""
    unshare = shutil.which("unshare")
    if not unshare or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return ()
    try:
        probe = subprocess.run([unshare, "-n", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return (unshare, "-n") if probe.returncode == 0 else ()


def offline_env(directory: Path, purpose: str = "sandboxed run") -> tuple[dict[str, str], Path]:
    """Environment for an offline Python subprocess: the socket guard on PYTHONPATH, proxies pointing
    at a closed port, hub libraries told to stay offline. Returns (env, path of the guard's record)."""
    guard_dir = directory / "netguard"
    guard_dir.mkdir(exist_ok=True)
    (guard_dir / "sitecustomize.py").write_text(GUARD_SOURCE)
    record = directory / "network_attempts.log"
    record.write_text("")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(guard_dir), env.get("PYTHONPATH", "")) if p)
    env[GUARD_LOG_ENV] = str(record)
    env[PURPOSE_ENV] = purpose
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env[key] = CLOSED_PROXY
    for key in ("NO_PROXY", "no_proxy"):
        env.pop(key, None)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "PYTHONNOUSERSITE": "1",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
    )
    return env, record


class Sandbox:
    """A private working directory for offline subprocess runs (see the module docstring).

    `purpose` names the run in the guard's refusals ("network access is disabled during edgekit's
    <purpose>"); `env` adds or overrides environment variables of every run in this sandbox."""

    def __init__(self, purpose: str = "sandboxed run", env: Mapping[str, str] | None = None) -> None:
        self.purpose = purpose
        self.extra_env = dict(env or {})
        self._dir: Path | None = None
        self._lock: IO[bytes] | None = None

    @property
    def dir(self) -> Path:
        if self._dir is None:
            raise RuntimeError("the sandbox is not open: use it as a context manager")
        return self._dir

    def __enter__(self) -> Sandbox:
        sweep_stale()
        self._dir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        # held while the directory is in use: a sweep that can take it knows the owner is gone. Taken
        # under another name and renamed, so a sweep never finds the lock file before it is held.
        self._lock = open(self._dir / f"{LOCK_NAME}.new", "wb")  # noqa: SIM115 - held until __exit__
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        os.rename(self._dir / f"{LOCK_NAME}.new", self._dir / LOCK_NAME)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
        self._dir, self._lock = None, None

    def run(
        self, argv: Sequence[str], log_path: Path, timeout: float | None = None, header: str = ""
    ) -> SandboxRun:
        """Run `argv` offline with the sandbox as cwd; stdout+stderr to `log_path` (after `header`
        and the command line). Never raises for the command's own failure: see the returned record."""
        env, record = offline_env(self.dir, self.purpose)
        env.update(self.extra_env)
        prefix = netns_prefix()
        command = [*prefix, *argv]
        isolation = ("unshare -n + " if prefix else "") + "socket guard + closed proxy"
        started = time.perf_counter()
        with open(log_path, "w") as handle:
            handle.write(f"# edgekit: {' '.join(command)}\n# cwd: {self.dir}\n{header}")
            handle.flush()
            with lifecycle.child(
                command,
                cwd=self.dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
            ) as proc:
                timed_out = False
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    timed_out = True
            returncode = proc.returncode  # reaped by lifecycle.child's exit
        attempts = [line for line in record.read_text().splitlines() if line.strip()]
        if attempts:
            log.warning("%s tried to reach the network (refused): %s", self.purpose, attempts[0])
        return SandboxRun(returncode, time.perf_counter() - started, timed_out, isolation, attempts)

    def call(
        self,
        target: str,
        kwargs: Mapping[str, Any],
        log_path: Path,
        timeout: float | None = None,
        args: Sequence[Any] = (),
    ) -> SandboxRun:
        """Import `target` ("module:function") in a fresh offline interpreter and call it with these
        JSON-serialisable arguments; an exception there is a traceback in the log and exit status 1."""
        if ":" not in target:
            raise ValueError(f"sandbox target must be 'module:function', not {target!r}")
        spec = {"target": target, "args": list(args), "kwargs": dict(kwargs)}
        (self.dir / "call.json").write_text(json.dumps(spec, indent=1))
        (self.dir / "call_driver.py").write_text(CALL_DRIVER)
        header = f"# call: {target} {json.dumps(spec['kwargs'])}\n"
        return self.run(
            [sys.executable, str(self.dir / "call_driver.py"), str(self.dir / "call.json")],
            log_path,
            timeout,
            header,
        )


def sweep_stale(root: Path | None = None) -> list[Path]:
    """Remove sandboxes whose owner is gone (SIGKILL, OOM killer): their lock can be taken."""
    removed = []
    for directory in Path(root or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        lock_path = directory / LOCK_NAME
        try:
            with open(lock_path, "rb") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(directory, ignore_errors=True)
                removed.append(directory)
        except OSError:
            continue  # held (alive), not ours to judge, or gone meanwhile
    if removed:
        log.info("removed %d sandbox(es) left by killed edgekit processes", len(removed))
    return removed


# ---- failure reporting ------------------------------------------------------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ERROR_LINE = re.compile(r"^(ERROR:|[A-Za-z_.]*(Error|Exception)\b:?)")
_NOISE = ("Traceback", "During handling", "The above exception", "^^^")


def last_error_line(log_path: Path, limit: int = 300) -> str:
    """The last meaningful error line of a sandboxed run's log (colour codes and traceback frames
    dropped): an `ERROR:` line or an exception line, else a warning, else the last line."""
    try:
        lines = [_ANSI.sub("", line).strip() for line in log_path.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line and not line.startswith(_NOISE)]
    for line in reversed(lines):
        if _ERROR_LINE.match(line) or "output failed" in line:
            return line[:limit]
    for line in reversed(lines):
        if "WARNING:" in line or "error" in line.lower():
            return line[:limit]
    return lines[-1][:limit] if lines else ""


def keep_log(log_path: Path, name: str, kind: str = "sandbox") -> Path:
    """Copy a failed run's log out of a directory about to be discarded; returns where it is."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(name).stem)
    kept = Path(tempfile.gettempdir()) / f"edgekit-{kind}-{stem}-{int(time.time())}.log"
    with contextlib.suppress(OSError):
        shutil.copyfile(log_path, kept)
        return kept
    return log_path
