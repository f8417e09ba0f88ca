"""adb transport: Android phones and boards reached with the `adb` command-line tool.

Every device action is an `adb -s SERIAL ...` subprocess started from an argv list (never a host shell):
`shell -T -- CMD` runs a command, `push` / `pull` copy files over adb's sync protocol (no shell involved,
so odd file names are safe there). `adb shell` joins its arguments with spaces into ONE command line for
the device's shell, exactly like ssh, so the command is always built with `quote_argv` (each argument
`shlex.quote`d) and passed as a single argument.

Needs adb's shell protocol v2 (Android 7+): without it adb cannot return the remote exit status nor keep
stderr apart from stdout; such a device is refused at connect with that reason.

The device's Python must be runnable by adb's `shell` user (e.g. a Python unpacked under
/data/local/tmp, or a rooted device). Termux's python lives in the Termux app's private directory,
which the `shell` user cannot enter; for Termux, run its sshd and use the SSH transport instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit import lifecycle
from edgekit.errors import EdgekitError, MissingDependency
from edgekit.transport.base import DeviceConfig, Transport, TransportError, quote_argv

if TYPE_CHECKING:
    from edgekit.transport.base import Endpoint

log = logging.getLogger(__name__)

DEFAULT_ADB_WORKDIR = "/data/local/tmp/edgekit"
INSTALL_HINT = (
    "install Android platform-tools (Debian/Ubuntu: `apt install android-tools-adb`; or "
    "https://developer.android.com/tools/releases/platform-tools) and put `adb` on PATH"
)
# What the adb client prints when the device (not the command) is the problem.
_LOST = re.compile(
    r"^(adb: )?error: (device .*(not found|offline)|no devices|closed|protocol fault|"
    r"device still (authorizing|connecting))",
    re.MULTILINE,
)


class AdbNotFound(TransportError, MissingDependency):
    """The host has no `adb` executable (exit 3, like a missing pip extra)."""

    def __init__(self, adb: str, device: str) -> None:
        self.kind = "unreachable"
        self.module = adb
        self.extra = ""
        EdgekitError.__init__(
            self, f"{device}: '{adb}' (Android Debug Bridge) is not installed on this machine; {INSTALL_HINT}"
        )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


class AdbTransport(Transport):
    kind = "adb"
    config_keys = {"serial": str}  # as `adb devices` lists it
    implied_by = "serial"

    @classmethod
    def default_workdir(cls) -> str:
        return DEFAULT_ADB_WORKDIR  # writable by adb's `shell` user

    @classmethod
    def settings_from_config(cls, config: DeviceConfig) -> dict[str, Any]:
        serial = str(config.spec.get("serial", "")).strip()
        if not serial:
            raise config.fail(
                None,
                "transport 'adb' needs serial = \"...\" (the first column of `adb devices`, e.g. "
                '"R58M123ABC" or "192.168.1.50:5555")',
            )
        return {"serial": serial}

    @classmethod
    def address(cls, settings: Mapping[str, Any]) -> str:
        return f"adb {settings['serial']}"

    @classmethod
    def for_device(cls, device: Endpoint) -> AdbTransport:
        return cls(
            device.name,
            serial=device.settings["serial"],
            python=device.python,
            workdir=device.workdir,
            connect_timeout=device.connect_timeout,
        )

    def __init__(
        self,
        name: str,
        serial: str,
        python: str = "python3",
        workdir: str = DEFAULT_ADB_WORKDIR,
        connect_timeout: float = 15.0,
        adb: str = "adb",
    ) -> None:
        super().__init__(name, python, workdir)
        if not serial:
            raise ValueError("adb transport needs a serial")
        self.serial = serial
        self.connect_timeout = connect_timeout
        self.adb = adb
        self._adb_path: str | None = None

    # -- the adb client ----------------------------------------------------------------------------

    def _exe(self) -> str:
        if self._adb_path is None:
            found = shutil.which(self.adb)
            if found is None:
                raise AdbNotFound(self.adb, self.name)
            self._adb_path = found
        return self._adb_path

    async def _adb(
        self, *args: str, timeout: float | None = None, stdin: bytes | None = None, keep_stdin: bool = False
    ) -> tuple[int, bytes, bytes]:
        """Run `adb -s SERIAL ARGS...`; (exit code, stdout, stderr). Kills the client on timeout/cancel.

        keep_stdin: hold the child's stdin open (never written) until it exits, so a device command started
        with the agent's --stdin-watchdog sees EOF - and exits - when the client dies.
        """
        argv = [self._exe(), "-s", self.serial, *args]
        want_pipe = stdin is not None or keep_stdin
        try:
            proc = await asyncio.create_subprocess_exec(
                *lifecycle.child_argv(argv),  # the adb client dies with edgekit, even when it is SIGKILLed
                stdin=asyncio.subprocess.PIPE if want_pipe else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # Ctrl-C on the terminal reaches edgekit, which then cleans up
            )
        except FileNotFoundError as exc:
            raise AdbNotFound(self.adb, self.name) from exc
        assert proc.stdout is not None and proc.stderr is not None

        async def feed() -> None:
            if proc.stdin is None or stdin is None:
                return
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(stdin)
                await proc.stdin.drain()
            proc.stdin.close()

        try:
            _, out, err, rc = await asyncio.wait_for(
                asyncio.gather(feed(), proc.stdout.read(), proc.stderr.read(), proc.wait()), timeout
            )
        except (TimeoutError, asyncio.TimeoutError, asyncio.CancelledError) as exc:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            if proc.stdin is not None:
                proc.stdin.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise TransportError(f"{self.name}: command timed out after {timeout:.0f} s", "timeout") from None
        finally:
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.close()
        return rc, out, err

    def _device_error(self, text: str, during: str) -> TransportError | None:
        """A TransportError when adb's message says the DEVICE is the problem, else None."""
        where = f"adb device {self.serial!r}"
        low = text.lower()
        if "unauthorized" in low:
            return TransportError(
                f"{self.name}: {where} is unauthorized: unlock the phone and accept the 'Allow USB "
                "debugging?' prompt (tick 'Always allow'), then check `adb devices`",
                "auth",
            )
        if "no permissions" in low or "insufficient permissions" in low:
            return TransportError(
                f"{self.name}: no permission to open {where} over USB: add a udev rule for it (or join the "
                "plugdev group), replug, then check `adb devices`",
                "auth",
            )
        if "offline" in low:
            return TransportError(
                f"{self.name}: {where} is offline: replug it or run `adb reconnect`, then check "
                "`adb devices`",
                "unreachable" if during == "connect" else "lost",
            )
        if ("not found" in low and "device" in low) or "no devices" in low:
            if during == "connect":
                return TransportError(
                    f"{self.name}: {where} not found: plug it in with USB debugging on (or `adb connect "
                    "HOST:PORT` for Wi-Fi), check the serial against `adb devices`",
                    "unreachable",
                )
            return TransportError(f"{self.name}: {where} disappeared mid-run ({_last_line(text)})", "lost")
        if "cannot connect to daemon" in low or "failed to start daemon" in low:
            return TransportError(
                f"{self.name}: the adb server could not start ({_last_line(text)}); try `adb kill-server`",
                "unreachable",
            )
        return None

    # -- the transport primitives --------------------------------------------------------------------

    async def connect(self) -> None:
        try:
            rc, out, err = await self._adb("get-state", timeout=self.connect_timeout)
        except TransportError as exc:
            if exc.kind != "timeout":
                raise
            raise TransportError(
                f"{self.name}: adb device {self.serial!r} did not answer within {self.connect_timeout:.0f} s; "
                "check `adb devices`",
                "unreachable",
            ) from None
        text = (out + err).decode("utf-8", "replace")
        state = out.decode("utf-8", "replace").strip()
        if rc != 0 or state != "device":
            error = self._device_error(text, "connect")
            raise error or TransportError(
                f"{self.name}: adb device {self.serial!r} is not ready ({_last_line(text) or state or rc}); "
                "check `adb devices`",
                "unreachable",
            )
        rc, out, err = await self._adb("features", timeout=self.connect_timeout)
        features = out.decode("utf-8", "replace").replace(",", "\n").split()
        if rc != 0 or "shell_v2" not in features:
            raise TransportError(
                f"{self.name}: adb device {self.serial!r} lacks the shell protocol v2 (Android 7+ and a "
                "current platform-tools needed): without it exit codes and errors cannot be read",
                "remote",
            )
        await self._resolve_workdir()

    async def run(
        self, argv: list[str], timeout: float | None = None, stdin: bytes | None = None
    ) -> tuple[int, str, str]:
        """Run quoted argv in the device's shell (no pty). stdin stays open while it runs (unless data is
        given), so the agent's --stdin-watchdog ends it when adb goes away (timeout, Ctrl-C, unplug)."""
        rc, out, err = await self._adb(
            "shell", "-T", "--", quote_argv(argv), timeout=timeout, stdin=stdin, keep_stdin=stdin is None
        )
        err_text = err.decode("utf-8", "replace")
        if rc != 0 and _LOST.search(err_text):
            raise self._device_error(err_text, "run") or TransportError(
                f"{self.name}: adb lost the device mid-run ({_last_line(err_text)})", "lost"
            )
        return rc, out.decode("utf-8", "replace"), err_text

    async def _put(self, local: Path, remote: str) -> None:
        rc, out, err = await self._adb("push", str(local.resolve()), remote, timeout=3600)
        if rc != 0:
            text = (err + out).decode("utf-8", "replace")
            raise self._device_error(text, "run") or TransportError(
                f"{self.name}: adb push to {remote} failed: {_last_line(text)}", "remote"
            )

    async def _get(self, remote: str, local: Path) -> None:
        rc, out, err = await self._adb("pull", remote, str(local.resolve()), timeout=3600)
        if rc != 0:
            text = (err + out).decode("utf-8", "replace")
            if "no such file" in text.lower():
                raise TransportError(f"{self.name}: {remote} not found on the device", "remote")
            raise self._device_error(text, "run") or TransportError(
                f"{self.name}: adb pull of {remote} failed: {_last_line(text)}", "remote"
            )

    def agent_argv(self, agent: str, job: str) -> list[str]:
        return [*self.python_argv, agent, "--stdin-watchdog", job]

    async def close(self) -> None:
        return None  # each call is its own adb client; the adb server stays for other tools
