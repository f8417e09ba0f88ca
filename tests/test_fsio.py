"""edgekit.fsio.staged_dir: the final directory appears whole or not at all, and a failed block leaves
no directory it created behind (a refused export must not leave an empty -o directory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.fsio import staged_dir


def test_success_renames_into_place_and_replaces_the_old(tmp_path: Path) -> None:
    final = tmp_path / "out" / "deep" / "artifact"
    for text in ("first", "second"):
        with staged_dir(final) as tmp:
            (tmp / "model.onnx").write_text(text)
        assert (final / "model.onnx").read_text() == text
    assert sorted(p.name for p in final.parent.iterdir()) == ["artifact"]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_failure_removes_what_it_created(tmp_path: Path, error: type[BaseException]) -> None:
    final = tmp_path / "out" / "deep" / "artifact"
    with pytest.raises(error), staged_dir(final) as tmp:
        (tmp / "half.onnx").write_text("half")
        raise error()
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_directories_that_existed_or_were_filled(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "older.artifact").mkdir()
    with pytest.raises(ValueError), staged_dir(out / "new" / "artifact"):
        (out / "new" / "sibling-written-meanwhile").write_text("x")
        raise ValueError
    assert sorted(p.name for p in out.iterdir()) == ["new", "older.artifact"]
    assert [p.name for p in (out / "new").iterdir()] == ["sibling-written-meanwhile"]
