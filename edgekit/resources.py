"""Where the data that ships with edgekit lives: inside the wheel, or at the top of a source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """`targets` or `calibration`: `edgekit/_data/<name>` in a wheel, `<repo>/<name>` in a checkout."""
    bundled = _PACKAGE / "_data" / name
    if bundled.is_dir():
        return bundled
    return _PACKAGE.parent / name


def demo_paths() -> dict[str, Path]:
    """The embedded default: the trained digits CNN and its calibration / labelled validation sets."""
    root = data_dir("calibration") / "digits"
    return {"model": root / "digits_cnn.onnx", "calib": root / "calib.npz", "val": root / "val.npz"}


def detector_paths() -> dict[str, Path]:
    """The embedded detector: Ultralytics-style head and metadata, its calibration set and its validation
    set, which carries its ground-truth `boxes` (calibration/shapes/README.md)."""
    root = data_dir("calibration") / "shapes"
    return {
        "model": root / "shapes_det.onnx",
        "calib": root / "calib.npz",
        "val": root / "val.npz",
    }


# the detector's export size: height and width are dynamic, as in Ultralytics' dynamic=True export
DETECTOR_INPUT_SHAPE = {"images": [1, 3, 640, 640]}
