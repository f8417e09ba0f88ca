"""Real OpenSSH sshd processes on loopback for the runner tests (keys generated per test run)."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
SFTP_SERVER = next(
    (
        p
        for p in (
            "/usr/lib/openssh/sftp-server",
            "/usr/libexec/openssh/sftp-server",
            "/usr/lib/ssh/sftp-server",
        )
        if os.path.exists(p)
    ),
    "internal-sftp",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path, comment: str = "edgekit-test") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return path


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


@dataclass
class Sshd:
    port: int
    root: Path
    host_key: Path
    proc: subprocess.Popen | None = None

    def start(self) -> Sshd:
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "sshd.log", "ab"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def kill(self) -> None:
        """The listener and every session process it forked (a device dying), by pid."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(5)


def make_sshd(root: Path, authorized_pub: Path, port: int | None = None) -> Sshd:
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    host_key = keygen(root / "ssh_host_ed25519_key", "host")
    authorized = root / "authorized_keys"
    shutil.copy(authorized_pub, authorized)
    os.chmod(authorized, 0o600)
    user = getpass.getuser()
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {host_key}",
        f"PidFile {root / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "UsePAM no",
        "StrictModes no",
        f"AllowUsers {user}",
        "PermitRootLogin prohibit-password" if os.geteuid() == 0 else "",
        f"Subsystem sftp {SFTP_SERVER}",
        "LogLevel ERROR",
        "MaxStartups 50",
        "MaxSessions 50",
        # Each session's shell sources the user's ~/.bashrc (bash does under sshd); a pyenv there runs
        # `pyenv rehash`, which waits up to 60 s on a lock that a killed session (this fixture kills
        # its sessions at teardown) can leave behind: give up after 1 s instead of stalling every command.
        "SetEnv PYENV_REHASH_TIMEOUT=1",
    ]
    (root / "sshd_config").write_text("\n".join(line for line in lines if line) + "\n")
    return Sshd(port, root, host_key)


def require_sshd() -> str:
    import pytest

    if SSHD is None or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server not installed (apt-get install openssh-server): sshd tests skipped")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory when root
    return SSHD


def known_hosts_line(sshd: Sshd, key: Path | None = None) -> str:
    pub = Path(str(key or sshd.host_key) + ".pub").read_text().split()
    return f"[127.0.0.1]:{sshd.port} {pub[0]} {pub[1]}\n"
