"""Device inventory (devices.toml): parsing, validation, list / check / trust.

The generic keys of a `[devices.NAME]` table (transport, target, python, workdir, memory_mb, threads,
connect_timeout, description) are read here; every other key belongs to a transport and is asked of its
class (`edgekit.transport.TRANSPORTS`): `local`, `ssh` (key `host`, resolved through ~/.ssh/config as
OpenSSH would), `adb` (key `serial`, as `adb devices` lists it). The `local` device is always present
(defined in the file or not). Errors name file, line and key, and suggest the closest key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import BadInput, suggest
from edgekit.tomlio import load_toml, tomllib
from edgekit.transport import (
    TRANSPORTS,
    DeviceConfig,
    LocalTransport,
    Transport,
    TransportError,
    transport_class,
)
from edgekit.transport.ssh_config import SshConfigEntry, resolve_ssh_config  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

# the keys every transport shares; each transport class adds its own (`Transport.config_keys`)
DEVICE_KEYS: dict[str, type | tuple[type, ...]] = {
    "transport": str,
    "target": str,
    "python": str,
    "workdir": str,
    "memory_mb": int,
    "link_mbps": (int, float),  # the device's network link, for `edgekit split --devices`
    "link_latency_ms": (int, float),
    "threads": int,
    "connect_timeout": (int, float),
    "description": str,
}


def default_local_target() -> str:
    return LocalTransport.default_target() or "x86-cpu"


@dataclass
class Device:
    """One device of the inventory. `settings` holds its transport's own settings (an SSH device's
    host, hostname, user, port, identity_files, known_hosts, proxy_jump; an adb device's serial), also
    readable as attributes (`device.hostname`)."""

    name: str
    transport: str = "local"
    target: str = ""
    python: str = "python3"
    workdir: str = ""
    memory_mb: int | None = None
    link_mbps: float | None = None  # megabits per second; None: not given (split assumes a default)
    link_latency_ms: float | None = None
    threads: int | None = None
    connect_timeout: float = 15.0
    description: str = ""
    source: str = ""  # "devices.toml:12" for messages
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.workdir:
            self.workdir = self.transport_class().default_workdir()

    def __getattr__(self, name: str) -> Any:
        # only called for names that are not fields: the transport's settings
        settings = self.__dict__.get("settings")
        if settings is not None and name in settings:
            return settings[name]
        raise AttributeError(f"device '{self.__dict__.get('name')}' has no setting '{name}'")

    def transport_class(self) -> type[Transport]:
        return transport_class(self.transport)

    def address(self) -> str:
        return self.transport_class().address(self.settings)

    def to_json(self) -> dict[str, Any]:
        cls = self.transport_class()
        out: dict[str, Any] = {
            "name": self.name,
            "transport": self.transport,
            "target": self.target,
            "address": cls.address(self.settings),
            "credentials": cls.credentials(self.settings),
            **self.settings,
            "python": self.python,
            "workdir": self.workdir,
            "memory_mb": self.memory_mb,
            "link_mbps": self.link_mbps,
            "link_latency_ms": self.link_latency_ms,
            "threads": self.threads,
            "description": self.description,
        }
        return out

    def make_transport(self) -> Transport:
        return self.transport_class().for_device(self)


def local_device() -> Device:
    """The built-in `local` device: this machine, this Python, edgekit's cache as its workdir."""
    return Device(name="local", transport="local", target=default_local_target(), source="built-in")


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
        devices["local"] = local_device()
    return devices


def _key_types() -> dict[str, tuple[str, type | tuple[type, ...]]]:
    """Every devices.toml key -> (owning transport or "" for the generic ones, accepted type)."""
    keys: dict[str, tuple[str, type | tuple[type, ...]]] = {k: ("", t) for k, t in DEVICE_KEYS.items()}
    for kind in TRANSPORTS:
        for key, kind_type in transport_class(kind).config_keys.items():
            keys.setdefault(key, (kind, kind_type))
    return keys


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

    config = DeviceConfig(name, spec, where, at, ssh_config)
    if not name.strip():
        raise BadInput(f"{where}: a device name must not be empty")
    keys = _key_types()
    for key, value in spec.items():
        if key == "password":
            raise config.fail(key, "passwords are not accepted; use keys or ssh-agent")
        if key not in keys:
            raise config.fail(key, f"unknown key '{key}'.{suggest(key, keys)}")
        expected = keys[key][1]
        if not isinstance(value, expected) or isinstance(value, bool):
            kind = "a number" if expected is not str else "a string"
            raise config.fail(key, f"{key} must be {kind}, got {value!r}")
    implied = [k for k in TRANSPORTS if transport_class(k).implied_by in spec]
    transport = spec.get("transport", implied[0] if implied else "local")
    if transport not in TRANSPORTS:
        raise config.fail(
            "transport",
            f"transport '{transport}' is not one of {', '.join(TRANSPORTS)}.{suggest(transport, TRANSPORTS)}",
        )
    for key in spec:
        owner = keys[key][0]
        if owner and owner != transport:
            raise config.fail(key, f"'{key}' only applies to transport = \"{owner}\"")
    cls = transport_class(transport)
    target = spec.get("target", cls.default_target() or "")
    if not target:
        raise config.fail(None, 'needs target = "..." (a target profile name)')
    return Device(
        name=name,
        transport=transport,
        target=target,
        python=spec.get("python", "python3"),
        workdir=spec.get("workdir", cls.default_workdir()),
        memory_mb=spec.get("memory_mb"),
        link_mbps=_positive(spec, "link_mbps", at),
        link_latency_ms=_positive(spec, "link_latency_ms", at, allow_zero=True),
        threads=spec.get("threads"),
        connect_timeout=float(spec.get("connect_timeout", 15.0)),
        description=spec.get("description", ""),
        source=where,
        settings=cls.settings_from_config(config),
    )


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
    """Fetch the device's host key, show its fingerprint, add it to known_hosts when confirmed: asked of
    the device's transport (only SSH has host keys; see `SshTransport.trust`)."""
    return await device.transport_class().trust(device, confirm)


DEFAULT_DEVICES = "devices.toml"


def load_inventory(devices_file: str | Path | None) -> dict[str, Device]:
    """The inventory: `devices_file`, else ./devices.toml when present, else only `local`."""
    if devices_file is None:
        return load_devices(DEFAULT_DEVICES if Path(DEFAULT_DEVICES).is_file() else None)
    if not Path(devices_file).expanduser().is_file():
        raise BadInput(f"devices file not found: {devices_file}")
    return load_devices(devices_file)
