"""Transports: how edgekit reaches a device (local subprocess, SSH; adb would be one more file)."""

from edgekit.transport.base import Transport, TransportError, quote_argv, sha256_file
from edgekit.transport.local import LocalTransport

__all__ = ["LocalTransport", "SshTransport", "Transport", "TransportError", "quote_argv", "sha256_file"]


def __getattr__(name: str) -> object:
    # SshTransport pulls in asyncssh only when used (it is the `runner` extra).
    if name == "SshTransport":
        from edgekit.transport.ssh import SshTransport

        return SshTransport
    raise AttributeError(name)
