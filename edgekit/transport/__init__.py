"""Transports: how edgekit reaches a device (local subprocess, SSH, adb).

A transport is one module here and one row in `TRANSPORTS`; the inventory asks the transport class
for its devices.toml keys, settings, address and host-key trust (see `base.Transport`).
"""

from __future__ import annotations

import importlib

from edgekit.errors import BadInput, suggest
from edgekit.transport.base import DeviceConfig, Transport, TransportError, quote_argv, sha256_file
from edgekit.transport.local import LocalTransport

# kind -> "module:Class"; modules import their client library (asyncssh) only when connecting
TRANSPORTS: dict[str, str] = {
    "local": "edgekit.transport.local:LocalTransport",
    "ssh": "edgekit.transport.ssh:SshTransport",
    "adb": "edgekit.transport.adb:AdbTransport",
}

__all__ = [
    "TRANSPORTS",
    "AdbTransport",
    "DeviceConfig",
    "LocalTransport",
    "SshTransport",
    "Transport",
    "TransportError",
    "quote_argv",
    "sha256_file",
    "transport_class",
]


def transport_class(kind: str) -> type[Transport]:
    if kind not in TRANSPORTS:
        raise BadInput(
            f"unknown transport '{kind}'.{suggest(kind, TRANSPORTS)} Valid: {', '.join(TRANSPORTS)}"
        )
    module_name, class_name = TRANSPORTS[kind].split(":")
    cls: type[Transport] = getattr(importlib.import_module(module_name), class_name)
    return cls


def __getattr__(name: str) -> object:
    if name == "SshTransport":
        return transport_class("ssh")
    if name == "AdbTransport":
        return transport_class("adb")
    raise AttributeError(name)
