"""The one transport interface: upload, run, download (TVM's remote session shape).

A transport reaches one device. Everything the runner does on a device goes through four primitives
(`_put`, `_get`, `run`, `close`) plus `connect`; the shared logic (workdir resolution, checksums,
skip-if-present uploads, removal) is written once here on top of them and of the device's own Python,
so a new transport (adb, serial, ...) is one more file implementing the primitives, plus its answers
to the inventory's questions: which devices.toml keys it takes (`config_keys`, `settings_from_config`),
how its address and credentials read (`address`, `credentials`), how it is built for a device
(`for_device`) and whether it has host keys to trust (`trust`).

Remote commands are ONLY ever built from an argv list, each argument quoted with `shlex.quote`
(`quote_argv`); nothing user-supplied is pasted into a shell string.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from edgekit.digest import file_sha256 as sha256_file
from edgekit.errors import BadInput, Unreachable

log = logging.getLogger(__name__)

# Python snippets run with the device's interpreter (3.6+); arguments come through sys.argv only.
_PY_WORKDIR = (
    "import json,os,sys\n"
    "p=os.path.abspath(os.path.expanduser(sys.argv[1]))\n"
    "os.makedirs(p,exist_ok=True)\n"
    "sys.stdout.write(json.dumps(p))\n"
)
_PY_SHA256 = (
    "import hashlib,json,os,sys\n"
    "out={}\n"
    "for p in sys.argv[1:]:\n"
    "    if not os.path.isfile(p):\n"
    "        out[p]=None\n"
    "        continue\n"
    "    h=hashlib.sha256()\n"
    "    with open(p,'rb') as f:\n"
    "        for b in iter(lambda:f.read(1<<20),b''):\n"
    "            h.update(b)\n"
    "    out[p]=h.hexdigest()\n"
    "sys.stdout.write(json.dumps(out))\n"
)
_PY_MKDIR = "import os,sys\nfor p in sys.argv[1:]:\n    os.makedirs(p,exist_ok=True)\n"
_PY_RENAME = "import os,sys\nos.replace(sys.argv[1],sys.argv[2])\n"
_PY_REMOVE = (
    "import os,shutil,sys\n"
    "for p in sys.argv[1:]:\n"
    "    if os.path.isdir(p) and not os.path.islink(p):\n"
    "        shutil.rmtree(p,ignore_errors=True)\n"
    "    elif os.path.lexists(p):\n"
    "        os.unlink(p)\n"
)
_PY_WRITE_STDIN = (
    "import shutil,sys\nwith open(sys.argv[1],'wb') as f:\n    shutil.copyfileobj(sys.stdin.buffer,f)\n"
)


class TransportError(Unreachable):
    """A device-side failure with a kind the runner reports.

    kind: unreachable | auth | host_key | lost | timeout | remote
    """

    def __init__(self, message: str, kind: str = "remote") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class DeviceConfig:
    """One [devices.NAME] table being read, for a transport's `settings_from_config`: its keys, and
    where each is (`at(key)`: "devices.toml:12") so that every error names file, line and key."""

    name: str
    spec: Mapping[str, Any]
    where: str  # the [devices.NAME] header's location
    at: Callable[[str], str]  # a key's location (the header's when the key is absent)
    ssh_config: str | Path = "~/.ssh/config"

    def fail(self, key: str | None, message: str) -> BadInput:
        return BadInput(f"{self.at(key) if key else self.where}: [devices.{self.name}] {message}")


def quote_argv(argv: list[str]) -> str:
    """The one place a remote command line is made: every argument shell-quoted."""
    if not argv:
        raise ValueError("empty argv")
    return " ".join(shlex.quote(str(arg)) for arg in argv)


class StreamProcess:
    """A device process with open pipes (the pipeline bench streams tensors through one per stage).
    `stdin`: write(bytes), await drain(), write_eof(); `stdout`: await readexactly(n); `stderr_tail()`
    what it printed on stderr so far (for errors)."""

    def __init__(self, stdin: Any, stdout: Any, wait: Any, kill: Any, stderr_tail: Any) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self._wait = wait
        self._kill = kill
        self.stderr_tail = stderr_tail

    async def wait(self) -> int | None:
        return await self._wait()

    def kill(self) -> None:
        try:
            self._kill()
        except Exception:  # noqa: BLE001 - already gone
            pass


class Endpoint(Protocol):
    """A device as a transport takes it (edgekit.inventory's Device is one, built from devices.toml):
    its name, transport kind, Python, work directory, connect timeout and the transport's own settings."""

    name: str
    transport: str
    python: str
    workdir: str
    connect_timeout: float
    settings: dict[str, Any]


class Transport(ABC):
    """One device. Use as `async with transport:` or call connect()/close()."""

    kind = "abstract"
    # devices.toml keys of this transport (name -> accepted type); the generic ones are the inventory's
    config_keys: ClassVar[dict[str, type | tuple[type, ...]]] = {}
    implied_by: ClassVar[str | None] = None  # a key that selects this transport when none is named

    # -- the inventory's questions -----------------------------------------------------------------

    @classmethod
    def default_workdir(cls) -> str:
        return "~/.cache/edgekit"

    @classmethod
    def default_target(cls) -> str | None:
        """The target profile of a device that names none (None: devices.toml must name it)."""
        return None

    @classmethod
    def settings_from_config(cls, config: DeviceConfig) -> dict[str, Any]:
        """This transport's settings of a device, validated and resolved from its devices.toml table
        (keys already type-checked against `config_keys`); errors through `config.fail`."""
        return {}

    @classmethod
    def address(cls, settings: Mapping[str, Any]) -> str:
        """How the device is reached, for tables and result records."""
        return cls.kind

    @classmethod
    def credentials(cls, settings: Mapping[str, Any]) -> str:
        """What authenticates us ("-" when nothing does)."""
        return "-"

    @classmethod
    @abstractmethod
    def for_device(cls, device: Endpoint) -> Transport:
        """A transport for an inventory device."""

    @classmethod
    async def trust(cls, device: Endpoint, confirm: Callable[[str], bool] | None = None) -> dict[str, Any]:
        """Record the device's host key as trusted (`edgekit devices trust`); only SSH has host keys."""
        raise BadInput(
            f"device '{device.name}' uses transport '{device.transport}'; only SSH devices have host keys"
        )

    def __init__(self, name: str, python: str = "python3", workdir: str = "~/.cache/edgekit") -> None:
        self.name = name
        self.python_argv = shlex.split(python) or ["python3"]
        self.workdir_spec = workdir
        self.workdir = ""  # absolute on the device, known after connect()

    # -- primitives a transport implements -------------------------------------------------------

    @abstractmethod
    async def connect(self) -> None:
        """Open the connection and resolve `self.workdir` (call `await self._resolve_workdir()`)."""

    @abstractmethod
    async def run(
        self, argv: list[str], timeout: float | None = None, stdin: bytes | None = None
    ) -> tuple[int, str, str]:
        """Run argv on the device; (exit code, stdout, stderr). Raises TransportError on timeout/loss."""

    @abstractmethod
    async def _put(self, local: Path, remote: str) -> None:
        """Copy one local file to an absolute remote path (parent exists)."""

    @abstractmethod
    async def _get(self, remote: str, local: Path) -> None:
        """Copy one remote file to a local path."""

    @abstractmethod
    async def close(self) -> None: ...

    async def open_process(self, argv: list[str]) -> StreamProcess:
        """Start argv on the device with its stdin/stdout kept open for streaming."""
        raise TransportError(
            f"{self.name}: the {self.kind} transport cannot stream to a device process", "remote"
        )

    def agent_argv(self, agent: str, job: str) -> list[str]:
        """How to start the agent on this device (SSH adds a watchdog that exits on channel close)."""
        return [*self.python_argv, agent, job]

    # -- shared logic ------------------------------------------------------------------------------

    async def __aenter__(self) -> Transport:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def python(self, code: str, *args: str, timeout: float = 120.0, stdin: bytes | None = None) -> str:
        rc, out, err = await self.run([*self.python_argv, "-c", code, *args], timeout=timeout, stdin=stdin)
        if rc != 0:
            last = (err.strip().splitlines() or ["no output"])[-1]
            if rc == 127 or "not found" in last:
                raise TransportError(
                    f"{self.name}: Python '{' '.join(self.python_argv)}' is not runnable on the device "
                    f"({last}); set `python = ...` for this device in devices.toml",
                    "remote",
                )
            raise TransportError(f"{self.name}: device-side helper failed (exit {rc}): {last}", "remote")
        return out

    async def _resolve_workdir(self) -> None:
        # JSON, not .strip(): a workdir may legitimately end in whitespace.
        self.workdir = json.loads(await self.python(_PY_WORKDIR, self.workdir_spec))
        if not self.workdir.startswith("/"):
            raise TransportError(f"{self.name}: could not resolve workdir {self.workdir_spec!r}", "remote")

    def path(self, *parts: str) -> str:
        """An absolute device path under the workdir (posix)."""
        return "/".join([self.workdir.rstrip("/"), *parts])

    async def mkdirs(self, *remote: str) -> None:
        await self.python(_PY_MKDIR, *remote)

    async def sha256(self, *remote: str) -> dict[str, str | None]:
        return json.loads(await self.python(_PY_SHA256, *remote))

    async def remove(self, *remote: str) -> None:
        """Delete device files or folders (inside the workdir only)."""
        safe = [p for p in remote if p.startswith(self.workdir.rstrip("/") + "/")]
        if safe:
            await self.python(_PY_REMOVE, *safe)

    async def upload(self, local: str | Path, remote: str, sha256: str | None = None) -> bool:
        """Put `local` at `remote` unless the same sha256 is already there; verify after copying.

        Returns True when bytes were sent, False when skipped. The copy lands in a temp name first and
        is renamed into place only after its checksum matched, so a cut transfer never looks complete.
        """
        local = Path(local)
        want = sha256 or sha256_file(local)
        if (await self.sha256(remote)).get(remote) == want:
            log.debug("%s: %s already present (sha256 %s)", self.name, remote, want[:12])
            return False
        parent = remote.rsplit("/", 1)[0]
        await self.mkdirs(parent)
        part = f"{remote}.part-{uuid.uuid4().hex[:8]}"
        try:
            await self._put(local, part)
            got = (await self.sha256(part)).get(part)
            if got != want:
                raise TransportError(
                    f"{self.name}: upload of {local.name} corrupted (sha256 {got} != {want}); retry", "remote"
                )
            await self.python(_PY_RENAME, part, remote)
        except BaseException:
            await asyncio.shield(self._quiet_remove(part))
            raise
        return True

    async def ensure_agent(self) -> str:
        """Put edgekit's device agent in the workdir (content-addressed, so re-sent only when changed)."""
        agent = Path(__file__).resolve().parent.parent / "agent.py"
        digest = sha256_file(agent)
        remote = self.path(f"agent-{digest[:12]}.py")
        await self.upload(agent, remote, digest)
        return remote

    async def _quiet_remove(self, *remote: str) -> None:
        try:
            await self.remove(*remote)
        except Exception:  # noqa: BLE001 - cleanup is best effort
            log.debug("%s: could not remove %s", self.name, remote)

    async def download(self, remote: str, local: str | Path) -> None:
        """Fetch a device file; written atomically (temp file, then rename)."""
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{os.getpid()}.part")
        try:
            await self._get(remote, tmp)
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)

    async def _put_via_stdin(self, local: Path, remote: str) -> None:
        """Upload through the device's Python reading stdin: for devices without SFTP."""
        await self.python(_PY_WRITE_STDIN, remote, stdin=local.read_bytes(), timeout=3600)
