"""Transports: how edgekit reaches a device (local subprocess, SSH, adb)."""

from edgekit.transport.base import Transport, TransportError, quote_argv, sha256_file
from edgekit.transport.local import LocalTransport

__all__ = [
    "AdbTransport",
    "LocalTransport",
    "SshTransport",
    "Transport",
    "TransportError",
    "quote_argv",
    "sha256_file",
]


def __getattr__(name: str) -> object:
    # SshTransport pulls in asyncssh only when used (it is the `runner` extra).
    if name == "SshTransport":
        from edgekit.transport.ssh import SshTransport

        return SshTransport
    if name == "AdbTransport":
        from edgekit.transport.adb import AdbTransport

        return AdbTransport
    raise AttributeError(name)
