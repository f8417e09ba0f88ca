"""Issue 19: `release --executor ray` with a model path that is a symbolic link (model caches such as
the Hugging Face hub store every file as one): the inputs are packed with the link's target's bytes,
under the link's name, not as a dangling link."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from edgekit.release.executors import _pack, _unpack
from tests.release_project import make_project, release_json
from tests.test_release_processes import REPO, _can_unshare, _env


def test_pack_ships_a_linked_files_content(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / "ab12").write_bytes(b"model bytes")
    (blobs / "cd34").write_bytes(b"weights")
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "m.onnx").symlink_to(blobs / "ab12")
    (snapshot / "m.onnx.data").symlink_to(Path("..") / "blobs" / "cd34")  # relative, as the hub makes them
    data = _pack(snapshot / "m.onnx", [snapshot / "m.onnx", snapshot / "m.onnx.data"])
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert all(m.isfile() for m in tar.getmembers())
    out = tmp_path / "worker"
    _unpack(data, out)
    assert (out / "m.onnx").read_bytes() == b"model bytes" and not (out / "m.onnx").is_symlink()
    assert (out / "m.onnx.data").read_bytes() == b"weights"


@pytest.mark.slow
@pytest.mark.skipif(not _can_unshare(), reason="needs root, unshare and ip (a private network namespace)")
def test_a_ray_release_of_a_linked_model(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    config = make_project(tmp_path, targets='[[target]]\nname = "x86-cpu"\nprecisions = ["fp32"]\n')
    model = tmp_path / "model" / "digits.onnx"
    store = tmp_path / "hub" / "blobs"
    store.mkdir(parents=True)
    shutil.move(model, store / "0123abcd")
    model.symlink_to(store / "0123abcd")
    ray_tmp = tempfile.mkdtemp(prefix="ekray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    try:
        run = subprocess.run(
            ["unshare", "-n", sys.executable, str(REPO / "tests" / "ray_harness.py"), str(config), ray_tmp],
            capture_output=True, text=True, env=_env(tmp_path), timeout=1200,
        )  # fmt: skip
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = release_json(tmp_path)
    assert [a["status"] for a in data["artifacts"]] == ["ok"], data["artifacts"]
    assert data["artifacts"][0]["built_by"].startswith("ray:")
