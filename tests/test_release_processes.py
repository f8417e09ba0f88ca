"""A release as processes: killed mid-build it leaves no release (and its build processes die with
it), the next run completes; built through a real Ray head inside a private network namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.release_project import make_project, release_json

REPO = Path(__file__).resolve().parent.parent


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "EDGEKIT_CACHE_DIR": str(tmp / "cache")}


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_a_release_killed_mid_build_leaves_nothing_and_the_next_run_completes(tmp_path):
    config = make_project(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekit", "release", "--config", str(config)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=_env(tmp_path),
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("building "):
            break
    else:
        pytest.fail(f"the release never started building (exit {proc.wait()})")
    deadline = time.monotonic() + 60
    while not (builders := _children(proc.pid) - {proc.pid}) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # exports under way
    builders = {p for p in _children(proc.pid) if _alive(p)}
    proc.kill()
    proc.wait()
    assert builders, "no build processes were running"
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in builders) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in builders), "build processes outlived the release"
    assert not (tmp_path / "dist" / "digits-1.0.0").exists()

    again = subprocess.run(
        [sys.executable, "-m", "edgekit", "release", "--config", str(config)],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
    )
    assert again.returncode == 0, again.stderr
    dist = tmp_path / "dist"
    assert (dist / "digits-1.0.0" / "SHA256SUMS").is_file()
    assert not list(dist.glob(".tmp-*")) and not list((tmp_path / "cache" / "release").glob(".tmp-*"))
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=dist / "digits-1.0.0", capture_output=True)
    assert check.returncode == 0


def _can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_unshare(), reason="needs root, unshare and ip (a private network namespace)")
def test_a_release_built_on_a_ray_cluster(tmp_path):
    pytest.importorskip("ray")
    targets = '[[target]]\nname = "x86-cpu"\nprecisions = ["fp32", "int8"]\n'
    config = make_project(tmp_path, targets=targets)
    ray_tmp = tempfile.mkdtemp(prefix="ekray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    try:
        run = subprocess.run(
            ["unshare", "-n", sys.executable, str(REPO / "tests" / "ray_harness.py"), str(config), ray_tmp],
            capture_output=True,
            text=True,
            env=_env(tmp_path),
            timeout=1200,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = release_json(tmp_path)
    assert data["executor"].startswith("Ray cluster at 127.0.0.1")
    assert [a["status"] for a in data["artifacts"]] == ["ok", "ok"]
    for artifact in data["artifacts"]:
        assert artifact["built_by"].startswith("ray:"), artifact["built_by"]
        assert artifact["fidelity"]["passed"] and artifact["bench"]["local"]["status"] == "ok"
    check = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path / "dist" / "digits-1.0.0", capture_output=True
    )
    assert check.returncode == 0
