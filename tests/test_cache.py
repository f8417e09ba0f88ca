"""The content cache (edgekit.cache): keyed entries written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit import cache as content_cache


def test_cache_store_is_all_or_nothing(tmp_path: Path) -> None:
    store = content_cache.ContentCache("things", root=tmp_path / "things")
    with pytest.raises(RuntimeError):
        with store.store("k1", {"v": 1}) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("converter died")
    assert store.lookup("k1") is None and list((tmp_path / "things").iterdir()) == []
    (tmp_path / "things" / ".tmp-k2-stale").mkdir()  # left by a killed process
    with store.store("k2", {"v": 2}) as tmp:
        (tmp / "data.bin").write_bytes(b"y")
    entry, meta = store.lookup("k2") or (None, None)
    assert meta == {"v": 2} and entry is not None and (entry / "data.bin").read_bytes() == b"y"
    with store.store("k2", {"v": 3}):
        pass  # a newer entry replaces the older one whole
    assert store.lookup("k2")[1] == {"v": 3} and not (store.path("k2") / "data.bin").exists()
    assert [e.name for e, _ in store.entries("k")] == ["k2"]
    assert content_cache.digest({"b": 1, "a": 2}) == content_cache.digest({"a": 2, "b": 1})
