"""SSH transport (asyncssh): host keys checked against known_hosts, keys or agent only.

asyncssh's own ~/.ssh/config loading is switched off (`config=[]`): edgekit resolves the device's
host through ~/.ssh/config itself (`edgekit.transport.ssh_config`, when the inventory is read) and
passes the resolved HostName, User, Port, IdentityFile and ProxyJump explicitly, so what `devices
list` shows is what is used. Host-key trust (`edgekit devices trust`) lives here too: a key is shown
by its fingerprint and appended to known_hosts only when confirmed, never replacing a different one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import MissingDependency
from edgekit.transport.base import DeviceConfig, StreamProcess, Transport, TransportError, quote_argv
from edgekit.transport.ssh_config import expand_identity, resolve_ssh_config

if TYPE_CHECKING:
    from edgekit.transport.base import Endpoint

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"

log = logging.getLogger(__name__)


def _asyncssh() -> Any:
    try:
        import asyncssh
    except ImportError as exc:
        raise MissingDependency("asyncssh", "runner", "SSH devices") from exc
    return asyncssh


def known_hosts_label(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def trust_fix(name: str, host: str, port: int, known_hosts: str) -> str:
    return (
        f"check the fingerprint, then run `edgekit devices trust {name}` "
        f"(or `ssh-keyscan -p {port} {host} >> {known_hosts}`)"
    )


def has_known_key(known_hosts: Path, host: str, port: int) -> bool:
    """Whether known_hosts holds any key for host:port (to tell an unknown key from a changed one)."""
    if not known_hosts.is_file():
        return False
    asyncssh = _asyncssh()
    try:
        entries = asyncssh.read_known_hosts(str(known_hosts))
    except (OSError, ValueError):
        return False
    host_keys, ca_keys, *_ = entries.match(host, host, port)
    return bool(host_keys or ca_keys)


class SshTransport(Transport):
    kind = "ssh"
    config_keys = {
        "host": str,  # an ~/.ssh/config alias or a hostname
        "user": str,
        "port": int,
        "identity_file": str,
        "known_hosts": str,
        "proxy_jump": str,
    }
    implied_by = "host"

    # -- the inventory's questions -----------------------------------------------------------------

    @classmethod
    def settings_from_config(cls, config: DeviceConfig) -> dict[str, Any]:
        """host / user / port / identity files / ProxyJump from devices.toml, the rest from
        ~/.ssh/config as OpenSSH resolves it (devices.toml wins, as ssh's command line does)."""
        spec = config.spec
        host = spec.get("host", "")
        if not host:
            raise config.fail(None, "transport 'ssh' needs host = \"...\"")
        port = spec.get("port")
        if port is not None and not 0 < port < 65536:
            raise config.fail("port", f"port {port} is out of range 1-65535")
        resolved = resolve_ssh_config(host, config.ssh_config)
        hostname = resolved.hostname or host
        user = spec.get("user") or resolved.user
        files = [spec["identity_file"]] if "identity_file" in spec else resolved.identity_files
        return {
            "host": host,  # as written
            "hostname": hostname,  # resolved
            "user": user,
            "port": int(port or resolved.port or 22),
            "identity_files": [expand_identity(f, hostname, user) for f in files],
            "known_hosts": spec.get("known_hosts", DEFAULT_KNOWN_HOSTS),
            "proxy_jump": spec.get("proxy_jump") or resolved.proxy_jump,
        }

    @classmethod
    def address(cls, settings: Mapping[str, Any]) -> str:
        where = f"{settings.get('hostname') or settings['host']}:{settings.get('port', 22)}"
        return where + (f" via {settings['proxy_jump']}" if settings.get("proxy_jump") else "")

    @classmethod
    def credentials(cls, settings: Mapping[str, Any]) -> str:
        return ", ".join(settings.get("identity_files") or []) or "agent"

    @classmethod
    def for_device(cls, device: Endpoint) -> SshTransport:
        settings = device.settings
        return cls(
            device.name,
            host=settings["hostname"] or settings["host"],
            port=settings["port"],
            username=settings["user"],
            identity_files=settings["identity_files"],
            known_hosts=settings["known_hosts"],
            proxy_jump=settings["proxy_jump"],
            python=device.python,
            workdir=device.workdir,
            connect_timeout=device.connect_timeout,
        )

    @classmethod
    async def trust(cls, device: Endpoint, confirm: Callable[[str], bool] | None = None) -> dict[str, Any]:
        """Fetch the device's host key, show its fingerprint, append it to known_hosts when confirmed.

        `confirm(message)` is asked with the fingerprint (the CLI prompts; None accepts). A different key
        already on file is never replaced silently: that is an error with the `ssh-keygen -R` step.
        """
        asyncssh = _asyncssh()
        settings = device.settings
        host, port = settings["hostname"] or settings["host"], settings["port"]
        key = await fetch_host_key(host, port, device.connect_timeout)
        fingerprint = key.get_fingerprint("sha256")
        known = Path(settings["known_hosts"]).expanduser()
        label = known_hosts_label(host, port)
        record = {
            "name": device.name,
            "host": label,
            "key_type": key.get_algorithm(),
            "fingerprint": fingerprint,
        }
        if known.is_file():
            host_keys, *_ = asyncssh.read_known_hosts(str(known)).match(host, host, port)
            if any(k.public_data == key.public_data for k in host_keys):
                return {**record, "added": False, "note": "already trusted"}
            if host_keys:
                raise TransportError(
                    f"{device.name}: {known} already holds a DIFFERENT key for {label}; if the device was "
                    f"reinstalled remove it first with `ssh-keygen -R '{label}' -f {known}`",
                    "host_key",
                )
        if confirm is not None and not confirm(
            f"{label} presents {key.get_algorithm()} key {fingerprint}. Trust it?"
        ):
            return {**record, "added": False, "note": "declined"}
        record["line"] = append_known_host(known, host, port, key)
        return {**record, "added": True}

    # -- the connection ----------------------------------------------------------------------------

    def __init__(
        self,
        name: str,
        host: str,
        port: int = 22,
        username: str | None = None,
        identity_files: list[str] | None = None,
        known_hosts: str = "~/.ssh/known_hosts",
        proxy_jump: str | None = None,
        python: str = "python3",
        workdir: str = "~/.cache/edgekit",
        connect_timeout: float = 15.0,
    ) -> None:
        super().__init__(name, python, workdir)
        self.host = host
        self.port = int(port)
        self.username = username
        self.identity_files = [str(Path(p).expanduser()) for p in identity_files or []]
        self.known_hosts = Path(known_hosts).expanduser()
        self.proxy_jump = proxy_jump
        self.connect_timeout = connect_timeout
        self.conn: Any = None
        self._sftp_ok = True

    def _where(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{user}{self.host}:{self.port}"

    async def connect(self) -> None:
        asyncssh = _asyncssh()
        known: Any = str(self.known_hosts) if self.known_hosts.is_file() else b""
        options: dict[str, Any] = {
            "port": self.port,
            "known_hosts": known,
            "config": [],
            "password_auth": False,
            "kbdint_auth": False,
            "connect_timeout": self.connect_timeout,
            "keepalive_interval": 10,
            "keepalive_count_max": 3,
        }
        if self.username:
            options["username"] = self.username
        keys = [p for p in self.identity_files if os.path.isfile(p)]
        if self.identity_files and not keys:
            raise TransportError(
                f"{self.name}: identity file {self.identity_files[0]} not found; fix identity_file in "
                "devices.toml (or remove it to use ssh-agent / default keys)",
                "auth",
            )
        if keys:
            options["client_keys"] = keys
        if self.proxy_jump:
            options["tunnel"] = self.proxy_jump
        try:
            self.conn = await asyncio.wait_for(
                asyncssh.connect(self.host, **options), self.connect_timeout + 5
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            label = known_hosts_label(self.host, self.port)
            fix = trust_fix(self.name, self.host, self.port, str(self.known_hosts))
            if has_known_key(self.known_hosts, self.host, self.port):
                raise TransportError(
                    f"{self.name}: host key for {label} CHANGED (does not match {self.known_hosts}) - "
                    f"refusing to connect (possible man-in-the-middle). If the device was reinstalled: "
                    f"`ssh-keygen -R '{label}' -f {self.known_hosts}`, then {fix}",
                    "host_key",
                ) from exc
            raise TransportError(
                f"{self.name}: host key for {label} is unknown (not in {self.known_hosts}) - refusing to "
                f"connect; {fix}",
                "host_key",
            ) from exc
        except asyncssh.PermissionDenied as exc:
            raise TransportError(
                f"{self.name}: authentication refused by {self._where()} ({exc.reason}); keys or ssh-agent "
                "only - check identity_file / user in devices.toml and the device's authorized_keys",
                "auth",
            ) from exc
        except (TimeoutError, asyncio.TimeoutError) as exc:
            raise TransportError(
                f"{self.name}: unreachable: {self._where()} timed out after {self.connect_timeout:.0f} s",
                "unreachable",
            ) from exc
        except ConnectionRefusedError as exc:
            raise TransportError(
                f"{self.name}: unreachable: connection refused by {self._where()} (is sshd running?)",
                "unreachable",
            ) from exc
        except OSError as exc:
            raise TransportError(
                f"{self.name}: unreachable: {self._where()}: {exc.strerror or exc}", "unreachable"
            ) from exc
        except asyncssh.Error as exc:
            raise TransportError(
                f"{self.name}: SSH connection to {self._where()} failed: {exc.reason}", "unreachable"
            ) from exc
        await self._resolve_workdir()

    def _lost(self, exc: BaseException) -> TransportError:
        reason = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
        return TransportError(f"{self.name}: connection lost mid-run ({reason})", "lost")

    async def run(
        self, argv: list[str], timeout: float | None = None, stdin: bytes | None = None
    ) -> tuple[int, str, str]:
        """Run quoted argv. stdin stays open while it runs (unless data is given), so an agent started
        with --stdin-watchdog exits when the channel closes (timeout, Ctrl-C, host gone)."""
        asyncssh = _asyncssh()
        if self.conn is None:
            raise TransportError(f"{self.name}: not connected", "lost")
        proc = None
        try:
            proc = await self.conn.create_process(quote_argv(argv), encoding=None)
            if stdin is not None:
                proc.stdin.write(stdin)
                proc.stdin.write_eof()
            result = await proc.wait(timeout=timeout)
        except asyncssh.TimeoutError:
            self._abort(proc)
            raise TransportError(f"{self.name}: command timed out after {timeout:.0f} s", "timeout") from None
        except asyncio.CancelledError:
            self._abort(proc)
            raise
        except (asyncssh.Error, OSError, EOFError) as exc:
            raise self._lost(exc) from exc
        if result.exit_status is None and result.exit_signal is None:
            raise TransportError(f"{self.name}: connection lost mid-run (no exit status)", "lost")
        rc = result.exit_status if result.exit_status is not None else 128
        out = (result.stdout or b"").decode("utf-8", "replace")
        err = (result.stderr or b"").decode("utf-8", "replace")
        if result.exit_signal:
            err += f"\nkilled by signal {result.exit_signal[0]}"
        return rc, out, err

    async def open_process(self, argv: list[str]) -> StreamProcess:
        """The process ends when the channel closes (stdin EOF), so a lost host leaves nothing running."""
        asyncssh = _asyncssh()
        if self.conn is None:
            raise TransportError(f"{self.name}: not connected", "lost")
        try:
            proc = await self.conn.create_process(quote_argv(argv), encoding=None)
        except (asyncssh.Error, OSError) as exc:
            raise self._lost(exc) from exc
        tail = bytearray()

        async def drain_stderr() -> None:
            with contextlib.suppress(Exception):
                while chunk := await proc.stderr.read(65536):
                    tail.extend(chunk)
                    del tail[:-8192]

        reader = asyncio.ensure_future(drain_stderr())

        async def wait() -> int | None:
            result = await proc.wait()
            await reader
            return result.exit_status

        return StreamProcess(
            proc.stdin, proc.stdout, wait, lambda: self._abort(proc), lambda: tail.decode("utf-8", "replace")
        )

    @staticmethod
    def _abort(proc: Any) -> None:
        if proc is None:
            return
        with contextlib.suppress(Exception):
            proc.send_signal("KILL")
        with contextlib.suppress(Exception):
            proc.close()

    async def _put(self, local: Path, remote: str) -> None:
        asyncssh = _asyncssh()
        if self._sftp_ok:
            try:
                async with self.conn.start_sftp_client() as sftp:
                    await sftp.put(str(local), remote)
                return
            except (asyncssh.ChannelOpenError, asyncssh.SFTPError) as exc:
                log.info("%s: SFTP unavailable (%s); uploading through the device's Python", self.name, exc)
                self._sftp_ok = False
            except (asyncssh.Error, OSError) as exc:
                raise self._lost(exc) from exc
        await self._put_via_stdin(local, remote)

    async def _get(self, remote: str, local: Path) -> None:
        asyncssh = _asyncssh()
        if self._sftp_ok:
            try:
                async with self.conn.start_sftp_client() as sftp:
                    await sftp.get(remote, str(local))
                return
            except asyncssh.SFTPNoSuchFile as exc:
                raise TransportError(f"{self.name}: {remote} not found on the device", "remote") from exc
            except (asyncssh.ChannelOpenError, asyncssh.SFTPError) as exc:
                log.info("%s: SFTP unavailable (%s); downloading through the device's Python", self.name, exc)
                self._sftp_ok = False
            except (asyncssh.Error, OSError) as exc:
                raise self._lost(exc) from exc
        code = "import shutil,sys\nshutil.copyfileobj(open(sys.argv[1],'rb'),sys.stdout.buffer)\n"
        proc = await self.conn.create_process(
            quote_argv([*self.python_argv, "-c", code, remote]), encoding=None
        )
        result = await proc.wait()
        if result.exit_status != 0:
            raise TransportError(f"{self.name}: could not read {remote} from the device", "remote")
        local.write_bytes(result.stdout or b"")

    def agent_argv(self, agent: str, job: str) -> list[str]:
        return [*self.python_argv, agent, "--stdin-watchdog", job]

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.conn.wait_closed(), 5)
            self.conn = None


async def fetch_host_key(host: str, port: int = 22, timeout: float = 10.0) -> Any:
    """The key the server presents (for `edgekit devices trust`), without authenticating."""
    asyncssh = _asyncssh()
    try:
        return await asyncio.wait_for(asyncssh.get_server_host_key(host, port, config=[]), timeout)
    except (OSError, asyncio.TimeoutError, asyncssh.Error) as exc:
        raise TransportError(f"could not fetch the host key of {host}:{port}: {exc}", "unreachable") from exc


def append_known_host(known_hosts: Path, host: str, port: int, key: Any) -> str:
    """Append `[host]:port keytype base64` to known_hosts (0600, parent 0700); returns the line."""
    line = f"{known_hosts_label(host, port)} {key.export_public_key('openssh').decode().strip()}\n"
    known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    return line.strip()
