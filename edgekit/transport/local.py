"""The local machine as a device: subprocesses and file copies, same interface as SSH."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit import lifecycle
from edgekit.transport.base import StreamProcess, Transport, TransportError

if TYPE_CHECKING:
    from edgekit.transport.base import Endpoint

CACHE_ENV = "EDGEKIT_CACHE_DIR"


class LocalTransport(Transport):
    kind = "local"

    @classmethod
    def default_workdir(cls) -> str:
        """edgekit's cache directory (EDGEKIT_CACHE_DIR, else ~/.cache/edgekit), like its other caches."""
        return os.environ.get(CACHE_ENV) or "~/.cache/edgekit"

    @classmethod
    def default_target(cls) -> str:
        """This machine's CPU profile."""
        return "arm64-cpu" if platform.machine().lower() in ("aarch64", "arm64") else "x86-cpu"

    @classmethod
    def address(cls, settings: Mapping[str, Any]) -> str:
        return "localhost"

    @classmethod
    def for_device(cls, device: Endpoint) -> LocalTransport:
        python = device.python if device.python != "python3" else None  # default: this interpreter
        return cls(device.name, python=python, workdir=device.workdir)

    def __init__(
        self, name: str = "local", python: str | None = None, workdir: str = "~/.cache/edgekit"
    ) -> None:
        super().__init__(name, python or sys.executable, workdir)

    async def connect(self) -> None:
        await self._resolve_workdir()

    async def run(
        self, argv: list[str], timeout: float | None = None, stdin: bytes | None = None
    ) -> tuple[int, str, str]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *lifecycle.checked_child_argv(argv),  # dies with edgekit, even when it is SIGKILLed
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            return 127, "", f"{argv[0]}: not found ({exc})"
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        # asyncio.TimeoutError is not TimeoutError before Python 3.11 (requires-python >= 3.10)
        except (TimeoutError, asyncio.TimeoutError, asyncio.CancelledError) as exc:  # noqa: UP041
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise TransportError(f"{self.name}: command timed out after {timeout:.0f} s", "timeout") from None
        return proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    async def open_process(self, argv: list[str]) -> StreamProcess:
        proc = await asyncio.create_subprocess_exec(
            *lifecycle.checked_child_argv(argv),  # the local agent dies with edgekit (lifecycle)
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        tail = bytearray()

        async def drain_stderr() -> None:
            assert proc.stderr is not None
            while chunk := await proc.stderr.read(65536):
                tail.extend(chunk)
                del tail[:-8192]

        reader = asyncio.ensure_future(drain_stderr())

        async def wait() -> int | None:
            code = await proc.wait()
            await reader
            return code

        return StreamProcess(
            proc.stdin, proc.stdout, wait, proc.kill, lambda: tail.decode("utf-8", "replace")
        )

    async def _put(self, local: Path, remote: str) -> None:
        await asyncio.to_thread(shutil.copyfile, local, remote)

    async def _get(self, remote: str, local: Path) -> None:
        try:
            await asyncio.to_thread(shutil.copyfile, remote, local)
        except FileNotFoundError as exc:
            raise TransportError(f"{self.name}: {remote} not found", "remote") from exc

    async def close(self) -> None:
        return None
