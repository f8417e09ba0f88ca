"""Run inside a private network namespace (`unshare -n python3 tests/ray_harness.py CONFIG TMP`):
bring up loopback, start a Ray head on 127.0.0.1 (its own process group, its own temp dir), build the
release through it with `edgekit release --executor ray`, stop the head. Exit code: the release's."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

PORT = 6379


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise SystemExit(f"the Ray head did not open 127.0.0.1:{port} in {timeout:.0f} s")


def main(config: str, tmp: str) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    ray = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    head = subprocess.Popen(
        [
            ray,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={PORT}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={tmp}",
        ],
        start_new_session=True,
    )
    try:
        wait_for_port(PORT, 120)
        release = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgekit",
                "release",
                "--config",
                config,
                "--executor",
                "ray",
                "--address",
                f"127.0.0.1:{PORT}",
            ],
            timeout=900,
        )
        return release.returncode
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # whatever is left of this head, and nothing else
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
