"""Device inventory (devices.toml): parsing, validation, ~/.ssh/config resolution, list/check/trust.

Transports: `local`, `ssh` (key `host`), `adb` (key `serial`, as `adb devices` lists it).

The `local` device is always present (defined in the file or not). An SSH device's `host` is resolved
through ~/.ssh/config the way OpenSSH does (first value obtained wins, IdentityFile accumulates,
`Host` patterns with `*`, `?` and `!`), and devices.toml's own keys win over the config, as ssh's
command line does. `Match` blocks are not evaluated (their settings are ignored).
"""

from __future__ import annotations

import asyncio
import fnmatch
import getpass
import glob
import json
import logging
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import BadInput, suggest
from edgekit.tomlio import load_toml
from edgekit.transport import LocalTransport, Transport, TransportError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)

TRANSPORTS = ("local", "ssh", "adb")
DEVICE_KEYS = {
    "transport": str,
    "target": str,
    "host": str,
    "serial": str,
    "user": str,
    "port": int,
    "identity_file": str,
    "known_hosts": str,
    "proxy_jump": str,
    "python": str,
    "workdir": str,
    "memory_mb": int,
    "link_mbps": (int, float),  # the device's network link, for `edgekit split --devices`
    "link_latency_ms": (int, float),
    "threads": int,
    "connect_timeout": (int, float),
    "description": str,
}
DEFAULT_WORKDIR = "~/.cache/edgekit"
DEFAULT_ADB_WORKDIR = "/data/local/tmp/edgekit"  # writable by adb's `shell` user
SSH_ONLY_KEYS = ("host", "user", "port", "identity_file", "proxy_jump")
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


def default_local_target() -> str:
    return "arm64-cpu" if platform.machine().lower() in ("aarch64", "arm64") else "x86-cpu"


@dataclass
class Device:
    name: str
    transport: str = "local"
    target: str = ""
    host: str = ""  # as written (an ~/.ssh/config alias or a hostname)
    hostname: str = ""  # resolved
    serial: str = ""  # adb devices only
    user: str | None = None
    port: int = 22
    identity_files: list[str] = field(default_factory=list)
    known_hosts: str = DEFAULT_KNOWN_HOSTS
    proxy_jump: str | None = None
    python: str = "python3"
    workdir: str = DEFAULT_WORKDIR
    memory_mb: int | None = None
    link_mbps: float | None = None  # megabits per second; None: not given (split assumes a default)
    link_latency_ms: float | None = None
    threads: int | None = None
    connect_timeout: float = 15.0
    description: str = ""
    source: str = ""  # "devices.toml:12" for messages

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "transport": self.transport,
            "target": self.target,
            "host": self.host,
            "hostname": self.hostname,
            "serial": self.serial,
            "user": self.user,
            "port": self.port,
            "identity_files": self.identity_files,
            "known_hosts": self.known_hosts,
            "proxy_jump": self.proxy_jump,
            "python": self.python,
            "workdir": self.workdir,
            "memory_mb": self.memory_mb,
            "link_mbps": self.link_mbps,
            "link_latency_ms": self.link_latency_ms,
            "threads": self.threads,
            "description": self.description,
        }

    def make_transport(self) -> Transport:
        if self.transport == "local":
            python = self.python if self.python != "python3" else None
            return LocalTransport(self.name, python=python, workdir=self.workdir)
        if self.transport == "adb":
            from edgekit.transport.adb import AdbTransport

            return AdbTransport(
                self.name,
                serial=self.serial,
                python=self.python,
                workdir=self.workdir,
                connect_timeout=self.connect_timeout,
            )
        from edgekit.transport.ssh import SshTransport

        return SshTransport(
            self.name,
            host=self.hostname or self.host,
            port=self.port,
            username=self.user,
            identity_files=self.identity_files,
            known_hosts=self.known_hosts,
            proxy_jump=self.proxy_jump,
            python=self.python,
            workdir=self.workdir,
            connect_timeout=self.connect_timeout,
        )


# ----------------------------------------------------------------------------- ~/.ssh/config


@dataclass
class SshConfigEntry:
    hostname: str | None = None
    user: str | None = None
    port: int | None = None
    identity_files: list[str] = field(default_factory=list)
    proxy_jump: str | None = None


def _config_lines(path: Path, depth: int = 0) -> list[tuple[str, str]]:
    """(keyword lowercased, value) pairs, with Include expanded in place."""
    if depth > 8 or not path.is_file():
        return []
    pairs: list[tuple[str, str]] = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"(\S+?)\s*(?:=\s*|\s+)(.*)$", line)
        if not match:
            continue
        key, value = match.group(1).lower(), match.group(2).strip()
        if key == "include":
            for pattern in shlex.split(value):
                pattern = os.path.expanduser(pattern)
                if not os.path.isabs(pattern):
                    pattern = str(Path("~/.ssh").expanduser() / pattern)
                for inc in sorted(glob.glob(pattern)):
                    pairs.extend(_config_lines(Path(inc), depth + 1))
            continue
        pairs.append((key, value))
    return pairs


def _host_matches(patterns: str, host: str) -> bool:
    matched = False
    for pattern in patterns.split():
        if pattern.startswith("!"):
            if fnmatch.fnmatchcase(host, pattern[1:]):
                return False
        elif fnmatch.fnmatchcase(host, pattern):
            matched = True
    return matched


def resolve_ssh_config(host: str, path: str | Path = "~/.ssh/config") -> SshConfigEntry:
    """What OpenSSH would use for `ssh host` from this config file."""
    entry = SshConfigEntry()
    active = True  # settings before the first Host line apply to every host
    for key, value in _config_lines(Path(path).expanduser()):
        if key == "host":
            active = _host_matches(value, host)
            continue
        if key == "match":
            active = False
            continue
        if not active:
            continue
        unquoted = value.strip('"')
        if key == "hostname" and entry.hostname is None:
            entry.hostname = unquoted.replace("%h", host).replace("%%", "%")
        elif key == "user" and entry.user is None:
            entry.user = unquoted
        elif key == "port" and entry.port is None and unquoted.isdigit():
            entry.port = int(unquoted)
        elif key == "identityfile":
            entry.identity_files.append(unquoted)
        elif key == "proxyjump" and entry.proxy_jump is None and unquoted.lower() != "none":
            entry.proxy_jump = unquoted
    return entry


def _expand_identity(path: str, host: str, user: str | None) -> str:
    path = path.replace("%d", str(Path.home())).replace("%h", host).replace("%u", getpass.getuser())
    path = path.replace("%r", user or getpass.getuser()).replace("%%", "%")
    return os.path.expanduser(path)


# ----------------------------------------------------------------------------- devices.toml


def _key_lines(text: str) -> dict[tuple[str, str | None], int]:
    """Line numbers of `[devices.NAME]` headers and their `key = ...` lines, for error messages."""
    lines: dict[tuple[str, str | None], int] = {}
    current: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("["):
            current = None
            try:
                parsed = tomllib.loads(line.split("#", 1)[0] if line.count('"') == 0 else line)
            except tomllib.TOMLDecodeError:
                continue
            devices = parsed.get("devices")
            if isinstance(devices, dict) and len(devices) == 1:
                current = next(iter(devices))
                lines[(current, None)] = number
            continue
        match = re.match(r'([A-Za-z0-9_-]+|"[^"]*")\s*=', line)
        if match and current is not None:
            lines.setdefault((current, match.group(1).strip('"')), number)
    return lines


def load_devices(
    path: str | Path | None = None, ssh_config: str | Path = "~/.ssh/config"
) -> dict[str, Device]:
    """Devices from devices.toml (or only `local` when path is None). Errors name file, line and key."""
    devices: dict[str, Device] = {}
    if path is not None:
        path = Path(path).expanduser()
        data = load_toml(path)
        lines = _key_lines(path.read_text(encoding="utf-8"))
        unknown_top = set(data) - {"devices"}
        if unknown_top:
            key = sorted(unknown_top)[0]
            raise BadInput(f"{path}: unknown top-level key '{key}' (devices go under [devices.NAME])")
        table = data.get("devices", {})
        if not isinstance(table, dict):
            raise BadInput(f"{path}: 'devices' must be a table of [devices.NAME] sections")
        for name, spec in table.items():
            where = f"{path}:{lines.get((name, None), '?')}"
            if not isinstance(spec, dict):
                raise BadInput(f"{where}: [devices.{name}] must be a table")
            devices[name] = _parse_device(name, spec, where, lines, path, ssh_config)
    if "local" not in devices:
        devices["local"] = Device(
            name="local", transport="local", target=default_local_target(), source="built-in"
        )
    return devices


def _parse_device(
    name: str,
    spec: dict[str, Any],
    where: str,
    lines: dict[tuple[str, str | None], int],
    path: Path,
    ssh_config: str | Path,
) -> Device:
    def at(key: str) -> str:
        line = lines.get((name, key))
        return f"{path}:{line}" if line else where

    if not name.strip():
        raise BadInput(f"{where}: a device name must not be empty")
    for key, value in spec.items():
        if key not in DEVICE_KEYS:
            raise BadInput(f"{at(key)}: [devices.{name}] unknown key '{key}'.{suggest(key, DEVICE_KEYS)}")
        expected = DEVICE_KEYS[key]
        if not isinstance(value, expected) or isinstance(value, bool):
            kind = "a number" if expected is not str else "a string"
            raise BadInput(f"{at(key)}: [devices.{name}] {key} must be {kind}, got {value!r}")
    if "password" in spec:  # pragma: no cover - rejected above as unknown; kept explicit for clarity
        raise BadInput(f"{at('password')}: passwords are not accepted; use keys or ssh-agent")
    default_transport = "ssh" if "host" in spec else "adb" if "serial" in spec else "local"
    transport = spec.get("transport", default_transport)
    if transport not in TRANSPORTS:
        raise BadInput(
            f"{at('transport')}: [devices.{name}] transport '{transport}' is not one of "
            f"{', '.join(TRANSPORTS)}.{suggest(transport, TRANSPORTS)}"
        )
    target = spec.get("target", default_local_target() if transport == "local" else "")
    if not target:
        raise BadInput(f'{where}: [devices.{name}] needs target = "..." (a target profile name)')
    port = spec.get("port")
    if port is not None and not 0 < port < 65536:
        raise BadInput(f"{at('port')}: [devices.{name}] port {port} is out of range 1-65535")
    device = Device(
        name=name,
        transport=transport,
        target=target,
        python=spec.get("python", "python3"),
        workdir=spec.get("workdir", DEFAULT_ADB_WORKDIR if transport == "adb" else DEFAULT_WORKDIR),
        memory_mb=spec.get("memory_mb"),
        link_mbps=_positive(spec, "link_mbps", at),
        link_latency_ms=_positive(spec, "link_latency_ms", at, allow_zero=True),
        threads=spec.get("threads"),
        connect_timeout=float(spec.get("connect_timeout", 15.0)),
        description=spec.get("description", ""),
        source=where,
    )
    if transport == "ssh":
        host = spec.get("host", "")
        if not host:
            raise BadInput(f"{where}: [devices.{name}] transport 'ssh' needs host = \"...\"")
        resolved = resolve_ssh_config(host, ssh_config)
        device.host = host
        device.hostname = resolved.hostname or host
        device.user = spec.get("user") or resolved.user
        device.port = int(port or resolved.port or 22)
        files = [spec["identity_file"]] if "identity_file" in spec else resolved.identity_files
        device.identity_files = [_expand_identity(f, device.hostname, device.user) for f in files]
        device.known_hosts = spec.get("known_hosts", DEFAULT_KNOWN_HOSTS)
        device.proxy_jump = spec.get("proxy_jump") or resolved.proxy_jump
    else:
        for key in SSH_ONLY_KEYS:
            if key in spec:
                raise BadInput(f"{at(key)}: [devices.{name}] '{key}' only applies to transport = \"ssh\"")
    if transport == "adb":
        serial = spec.get("serial", "").strip()
        if not serial:
            raise BadInput(
                f"{where}: [devices.{name}] transport 'adb' needs serial = \"...\" (the first column of "
                '`adb devices`, e.g. "R58M123ABC" or "192.168.1.50:5555")'
            )
        device.serial = serial
    elif "serial" in spec:
        raise BadInput(f"{at('serial')}: [devices.{name}] 'serial' only applies to transport = \"adb\"")
    return device


def _positive(
    spec: dict[str, Any], key: str, at: Callable[[str], str], allow_zero: bool = False
) -> float | None:
    if key not in spec:
        return None
    value = float(spec[key])
    if value < 0 or (value == 0 and not allow_zero):
        raise BadInput(f"{at(key)}: {key} must be {'>= 0' if allow_zero else '> 0'}, got {spec[key]!r}")
    return value


def select_devices(devices: dict[str, Device], names: list[str]) -> list[Device]:
    chosen = []
    for name in names:
        if name not in devices:
            raise BadInput(f"unknown device '{name}'.{suggest(name, devices)} Devices: {', '.join(devices)}")
        chosen.append(devices[name])
    return chosen


# ----------------------------------------------------------------------------- list / check / trust


def list_devices(devices: dict[str, Device]) -> list[dict[str, Any]]:
    return [d.to_json() for d in devices.values()]


async def check_device(device: Device) -> dict[str, Any]:
    """Reachability, auth, Python and runtimes, free disk and memory of one device."""
    record: dict[str, Any] = {"name": device.name, "target": device.target, "transport": device.transport}
    started = time.perf_counter()
    transport = device.make_transport()
    try:
        await transport.connect()
        record["connect_ms"] = (time.perf_counter() - started) * 1000.0
        record["reachable"] = record["auth"] = True
        agent = await transport.ensure_agent()
        rc, out, err = await transport.run([*transport.python_argv, agent, "--probe", transport.workdir], 60)
        probe = json.loads(out) if out.strip() else {}
        if probe.get("status") != "ok":
            raise TransportError(
                probe.get("error") or f"agent probe failed (exit {rc}): {err.strip()[-200:]}"
            )
        env = probe.get("environment", {})
        record.update(
            status="ok",
            workdir=transport.workdir,
            python=env.get("python"),
            runtimes=probe.get("runtimes", {}),
            free_disk_mb=probe.get("free_disk_mb"),
            memory_mb=(env.get("memory") or {}).get("total_mb"),
            available_memory_mb=(env.get("memory") or {}).get("available_mb"),
            cpu=env.get("cpu"),
            os=env.get("os"),
            power_mode=env.get("power_mode"),
        )
        warnings = []
        if not set(record["runtimes"]) - {"numpy"}:
            warnings.append("no inference runtime found (onnxruntime/openvino/tflite/tensorrt)")
        if record["free_disk_mb"] is not None and record["free_disk_mb"] < 500:
            warnings.append(f"only {record['free_disk_mb']:.0f} MB free in the workdir")
        record["warnings"] = warnings
    except TransportError as exc:
        record.update(status="failed", error=str(exc), error_kind=exc.kind)
        record.setdefault("reachable", exc.kind not in ("unreachable",))
        record.setdefault("auth", exc.kind not in ("unreachable", "auth", "host_key"))
    except (ValueError, OSError) as exc:
        record.update(status="failed", error=f"{device.name}: {exc}", error_kind="remote")
    finally:
        await transport.close()
    return record


async def check_devices(devices: list[Device], concurrency: int = 8) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(concurrency)

    async def one(device: Device) -> dict[str, Any]:
        async with gate:
            return await check_device(device)

    return list(await asyncio.gather(*(one(d) for d in devices)))


async def trust_device(device: Device, confirm: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """Fetch the device's host key, show its fingerprint, append it to known_hosts when confirmed.

    `confirm(message)` is asked with the fingerprint (the CLI prompts; None accepts). A different key
    already on file is never replaced silently: that is an error with the `ssh-keygen -R` step.
    """
    if device.transport != "ssh":
        raise BadInput(
            f"device '{device.name}' uses transport '{device.transport}'; only SSH devices have host keys"
        )
    import asyncssh

    from edgekit.transport.ssh import append_known_host, fetch_host_key, known_hosts_label

    host, port = device.hostname or device.host, device.port
    key = await fetch_host_key(host, port, device.connect_timeout)
    fingerprint = key.get_fingerprint("sha256")
    known = Path(device.known_hosts).expanduser()
    label = known_hosts_label(host, port)
    record = {"name": device.name, "host": label, "key_type": key.get_algorithm(), "fingerprint": fingerprint}
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
