"""manifest.json: reading with clear errors, file records with roles, the artifact's name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekit.digest import file_sha256
from edgekit.errors import BadInput
from edgekit.manifest import MANIFEST, file_records, manifest_sha256, read_manifest
from tests.artifacts import make_artifact


def test_read_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="artifact directory not found"):
        read_manifest(tmp_path / "nowhere")
    with pytest.raises(BadInput, match="is not an edgekit artifact"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(BadInput, match="unreadable manifest"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"backend": "onnxruntime", "target": "x86-cpu"}))
    with pytest.raises(BadInput, match="manifest lacks 'precision'"):
        read_manifest(tmp_path)


def test_file_records_roles_and_digests(tmp_path: Path) -> None:
    art = make_artifact(tmp_path / "a")
    (art / "logs").mkdir()
    (art / "logs" / "export.log").write_text("hello")
    (art / "model.onnx.data").write_bytes(b"\0" * 8)
    records = file_records(art, "model.onnx", lambda rel: rel.endswith(".data"))
    assert [r["path"] for r in records] == ["logs/export.log", "model.onnx", "model.onnx.data"]
    assert [r["role"] for r in records] == ["aux", "entry", "model"]
    assert records[1]["sha256"] == file_sha256(art / "model.onnx") and records[2]["bytes"] == 8
    assert all(r["role"] != "model" for r in file_records(art, "model.onnx"))  # no backend: no guess
    assert manifest_sha256(art) == file_sha256(art / MANIFEST)
    assert read_manifest(art)["entry"] == "model.onnx"
