"""A release project on disk for the release tests: the bundled digits CNN with its calibration and
validation sets, a devices.toml whose local device works in the test's folder, an edgekit.toml."""

from __future__ import annotations

import json
from pathlib import Path

from edgekit.resources import demo_paths

CONFIG = """\
[release]
name = "digits"
version = "1.0.0"
targets_dir = "targets"
{release_extra}

[[model]]
path = "model/digits.onnx"
calib = "data/calib.npz"
val = "data/val.npz"

{targets}

[gates]
{gates}

[bench]
devices = ["local"]
iterations = 30
warmup = 3
{bench_extra}
"""

# gates that always pass (the tests are about the release, not this model's quantization quality)
OPEN_GATES = "min_cosine = 0.0\nmax_accuracy_drop = 100.0"
TARGETS = '[[target]]\nname = "x86-cpu"\nprecisions = ["fp32", "int8"]\n\n[[target]]\nname = "arm64-cpu"\nprecisions = ["fp32", "int8"]\n'


def make_project(
    root: Path,
    targets: str = TARGETS,
    gates: str = OPEN_GATES,
    release_extra: str = "",
    bench_extra: str = "",
) -> Path:
    paths = demo_paths()
    (root / "model").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    (root / "targets").mkdir(exist_ok=True)
    (root / "model" / "digits.onnx").write_bytes(paths["model"].read_bytes())
    (root / "data" / "calib.npz").write_bytes(paths["calib"].read_bytes())
    (root / "data" / "val.npz").write_bytes(paths["val"].read_bytes())
    # a user's own profile: an ONNX Runtime CPU whose gates nothing passes, whatever the model's task (the
    # slice-cosine floor judges every task; min_cosine the raw outputs)
    (root / "targets" / "strict-cpu.toml").write_text(
        'name = "strict-cpu"\nbackend = "onnxruntime"\nprecisions = ["fp32", "int8"]\n[fidelity]\nmin_cosine = 1.01\n'
        "min_slice_cosine = 1.01\n"
    )
    (root / "devices.toml").write_text(
        f'[devices.local]\ntransport = "local"\ntarget = "x86-cpu"\nworkdir = {json.dumps(str(root / "device"))}\n'
    )
    (root / "edgekit.toml").write_text(
        CONFIG.format(targets=targets, gates=gates, release_extra=release_extra, bench_extra=bench_extra)
    )
    return root / "edgekit.toml"


def new_calibration(root: Path) -> None:
    """A different calibration set for the same input (half the samples, scaled)."""
    import numpy as np

    with np.load(root / "data" / "calib.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays = {k: (v[: max(1, len(v) // 2)] * 0.9).astype(v.dtype) for k, v in arrays.items()}
    np.savez(root / "data" / "calib.npz", **arrays)


def release_json(root: Path, name: str = "digits-1.0.0", out: str = "dist") -> dict:
    return json.loads((root / out / name / "release.json").read_text())
