"""~/.ssh/config resolution, the way OpenSSH does it, for SSH devices of the inventory.

First value obtained wins, IdentityFile accumulates, `Host` patterns with `*`, `?` and `!`, `Include`
expanded in place. `Match` blocks are not evaluated (their settings are ignored). devices.toml's own
keys win over the config, as ssh's command line does (see `SshTransport.settings_from_config`).
"""

from __future__ import annotations

import fnmatch
import getpass
import glob
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


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


def expand_identity(path: str, host: str, user: str | None) -> str:
    path = path.replace("%d", str(Path.home())).replace("%h", host).replace("%u", getpass.getuser())
    path = path.replace("%r", user or getpass.getuser()).replace("%%", "%")
    return os.path.expanduser(path)
