"""The one calibration/validation reader: .npz and image directories, subsets, hashes, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.calib import CalibrationReader, CalibrationSet, InputInfo
from edgekit.errors import BadInput, InternalError

INPUT = [InputInfo("input", (1, 3, 8, 8), np.dtype("float32"))]


def _npz(path: Path, count: int = 10, **extra) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, input=rng.standard_normal((count, 3, 8, 8)).astype(np.float32), **extra)
    return path


def test_seeded_subset_is_deterministic_and_hashed(tmp_path: Path) -> None:
    path = _npz(tmp_path / "c.npz", labels=np.arange(10))
    first = CalibrationSet.load(path, samples=4, seed=3)
    again = CalibrationSet.load(path, samples=4, seed=3)
    other = CalibrationSet.load(path, samples=4, seed=4)
    assert len(first) == 4 and first.total_samples == 10
    assert first.sha256() == again.sha256() != other.sha256()
    assert np.array_equal(first.labels, again.labels)
    full = CalibrationSet.load(path)
    assert full.sha256() != first.sha256() and len(full) == 10


def test_feeds_add_the_batch_axis_and_are_reiterable(tmp_path: Path) -> None:
    reader = CalibrationSet.load(_npz(tmp_path / "c.npz", count=5)).validate(INPUT)
    feeds = list(reader.feeds())
    assert len(feeds) == 5 and feeds[0]["input"].shape == (1, 3, 8, 8)
    assert len(list(reader.feeds())) == 5  # again from the start
    assert [f["input"].shape[0] for f in reader.feeds(batch_size=2)] == [2, 2, 1]
    assert reader.stack([f["input"] for f in reader.feeds(2)]).shape == (5, 3, 8, 8)


def test_samples_without_batch_axis_for_unbatched_models(tmp_path: Path) -> None:
    reader = CalibrationSet.load(_npz(tmp_path / "c.npz", count=3)).validate(
        [InputInfo("input", (3, 8, 8), np.dtype("float32"))]
    )
    assert next(reader.feeds())["input"].shape == (3, 8, 8) and not reader.batch_axis
    assert [f["input"].shape for f in reader.feeds(batch_size=2)] == [(3, 8, 8)] * 3  # one sample a feed
    assert reader.stack([f["input"] for f in reader.feeds()]).shape == (3, 3, 8, 8)


def test_validate_returns_a_bound_reader_and_leaves_the_set_alone(tmp_path: Path) -> None:
    """No hidden state: the same set bound to two models gives two independent readers."""
    data = CalibrationSet.load(_npz(tmp_path / "c.npz", count=4, labels=np.arange(4)))
    batched = data.validate(INPUT)
    unbatched = data.validate([InputInfo("input", (3, 8, 8), np.dtype("float32"))])
    assert isinstance(batched, CalibrationReader) and isinstance(batched, CalibrationSet)
    assert batched.batched == {"input": True} and unbatched.batched == {"input": False}
    assert next(batched.feeds())["input"].shape == (1, 3, 8, 8)
    assert next(unbatched.feeds())["input"].shape == (3, 8, 8)
    assert batched.sha256() == data.sha256() and batched.record() == data.record()
    assert [b.tolist() for b in batched.label_batches(3)] == [[0, 1, 2], [3]]
    with pytest.raises(InternalError, match="validate"):
        next(data.feeds())  # an unbound set cannot know the model's shapes
    renamed = batched.renamed({"input": "input_0"})
    assert [i.name for i in renamed.inputs] == ["input_0"] and renamed.batched == {"input_0": True}
    assert next(renamed.feeds())["input_0"].shape == (1, 3, 8, 8)
    rebound = renamed.validate([InputInfo("input_0", (1, 3, 8, 8), np.dtype("float32"))])
    assert rebound.batched == {"input_0": True}


def test_boxes_ride_along_like_labels(tmp_path: Path) -> None:
    """A detection set's ground-truth `boxes`: not a model input; subset, bound, renamed and held out
    with the samples; in the hash and the record; float (N, M, 5) or one BadInput line."""
    from edgekit.int8 import holdout

    boxes = np.arange(10 * 2 * 5, dtype=np.float32).reshape(10, 2, 5)
    path = _npz(tmp_path / "c.npz", labels=np.arange(10), boxes=boxes)
    full = CalibrationSet.load(path)
    assert full.names == ["input"] and np.array_equal(full.boxes, boxes) and full.record()["boxes"] is True
    assert full.sha256() != CalibrationSet.load(_npz(tmp_path / "n.npz", labels=np.arange(10))).sha256()
    part = CalibrationSet.load(path, samples=4, seed=3)
    assert np.array_equal(part.boxes[:, 0, 0] // 10, part.labels)  # the same samples kept
    bound = part.validate(INPUT)
    assert bound.sha256() == part.sha256() and bound.record() == part.record()
    reader = bound.renamed({"input": "x"})
    assert np.array_equal(reader.boxes, part.boxes) and np.array_equal(part.renamed({}).boxes, part.boxes)
    held = holdout.subset(reader, [1, 3])
    assert np.array_equal(held.boxes, part.boxes[[1, 3]])
    np.savez(tmp_path / "bad.npz", input=np.zeros((2, 3, 8, 8), np.float32), boxes=np.zeros((2, 4)))
    with pytest.raises(BadInput, match=r"'boxes' must be float \(samples, boxes, 5\)"):
        CalibrationSet.load(tmp_path / "bad.npz")


def test_validation_errors_name_the_problem(tmp_path: Path) -> None:
    data = CalibrationSet.load(_npz(tmp_path / "c.npz"))
    with pytest.raises(BadInput, match="has no array for model input 'image'"):
        data.validate([InputInfo("image", (1, 3, 8, 8), np.dtype("float32"))])
    with pytest.raises(BadInput, match="fixed batch of 4"):
        data.validate([InputInfo("input", (4, 3, 8, 8), np.dtype("float32"))])
    with pytest.raises(BadInput, match="is float32, the model wants float16"):
        data.validate([InputInfo("input", (1, 3, 8, 8), np.dtype("float16"))])
    symbolic = [InputInfo("input", ("N", 3, "H", "W"), np.dtype("float32"))]
    data.validate(symbolic)  # dynamic dims accept any size
    np.savez(tmp_path / "mismatch.npz", input=np.zeros((3, 3, 8, 8), np.float32), labels=np.arange(4))
    with pytest.raises(BadInput, match="disagree on the number of samples"):
        CalibrationSet.load(tmp_path / "mismatch.npz")
    np.savez(tmp_path / "floatlabels.npz", input=np.zeros((2, 3, 8, 8), np.float32), labels=np.zeros(2))
    with pytest.raises(BadInput, match="integer class ids"):
        CalibrationSet.load(tmp_path / "floatlabels.npz").validate(INPUT)


def test_image_directory_with_recipe(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        folder = tmp_path / "imgs" / label
        folder.mkdir(parents=True)
        for index in range(3):
            pixels = rng.integers(0, 255, (20 + index, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{index}.png")
    (tmp_path / "imgs" / "calibration.toml").write_text(
        'input = "input"\nsize = [8, 8]\nresize = "crop"\ncolor = "BGR"\nscale = 0.00392156862745098\n'
        'mean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]\nlayout = "NCHW"\nlabels = "subdir"\n'
    )
    data = CalibrationSet.load(tmp_path / "imgs")
    assert data.kind == "images" and len(data) == 6
    arr = data.arrays["input"]
    assert arr.shape == (6, 3, 8, 8) and arr.dtype == np.float32
    assert arr.min() >= -2.0 - 1e-6 and arr.max() <= 2.0 + 1e-6  # (x/255 - 0.5) / 0.25
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    data.validate(INPUT)
    (tmp_path / "imgs" / "calibration.toml").write_text('input = "input"\nsize = [8, 8]\nlayout = "NHCW"\n')
    with pytest.raises(BadInput, match="'layout' = 'NHCW' is not one of NCHW, NHWC"):
        CalibrationSet.load(tmp_path / "imgs")
