"""edgekit.toml mistakes: one line naming file:line, a close-name suggestion where there is one, exit 2,
and no work done (no dist folder, no build)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.release import load_config
from edgekit.resources import demo_paths

GOOD = """\
[release]
name = "digits"
version = "1.0.0"

[[model]]
path = "model.onnx"
calib = "calib.npz"
val = "val.npz"
input_shape = ["input:1,1,8,8"]

[[target]]
name = "x86-cpu"
precisions = ["fp32", "int8"]

[gates]
max_accuracy_drop = 1.0

[bench]
devices = ["local"]
iterations = 50
max_p90_ms = { local = 50.0 }
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    paths = demo_paths()
    (tmp_path / "model.onnx").write_bytes(paths["model"].read_bytes())
    (tmp_path / "calib.npz").write_bytes(paths["calib"].read_bytes())
    (tmp_path / "val.npz").write_bytes(paths["val"].read_bytes())
    (tmp_path / "edgekit.toml").write_text(GOOD)
    return tmp_path


def test_a_good_config_resolves_paths_against_its_folder(project):
    cfg = load_config(project / "edgekit.toml")
    assert cfg.release_name == "digits-1.0.0" and cfg.out == project / "dist"
    assert cfg.models[0].path == project / "model.onnx" and cfg.models[0].input_shapes == {
        "input": [1, 1, 8, 8]
    }
    assert cfg.targets[0].precisions == ["fp32", "int8"] and cfg.gates == {"max_accuracy_drop": 1.0}
    assert cfg.bench.limits == {"max_p90_ms": {"local": 50.0}} and "local" in cfg.devices


CASES = [
    # (replace this, with that, expected line, expected message part)
    ('version = "1.0.0"', 'version = "1.0.0"\nnmae = "x"', 4, "unknown key 'nmae'. Did you mean 'name'?"),
    ("[gates]", "[gaets]", 15, "unknown table [gaets]. Did you mean 'gates'?"),
    ('path = "model.onnx"', 'path = "missing.onnx"', 6, "[[model]] path 'missing.onnx' not found"),
    ('calib = "calib.npz"', 'calib = "nope.npz"', 7, "[[model]] calib 'nope.npz' not found"),
    ('name = "x86-cpu"', 'name = "x86-cpv"', 12, "unknown target 'x86-cpv'. Did you mean 'x86-cpu'?"),
    ('precisions = ["fp32", "int8"]', 'precisions = ["fp32", "int3"]', 13, "does not offer 'int3'"),
    ('devices = ["local"]', 'devices = ["locl"]', 19, "unknown device 'locl'. Did you mean 'local'?"),
    ("iterations = 50", 'iterations = "50"', 20, "iterations must be an integer"),
    (
        "max_p90_ms = { local = 50.0 }",
        "max_p90_ms = { phone = 50.0 }",
        21,
        "device 'phone' is not in [bench] devices",
    ),
    (
        "max_accuracy_drop = 1.0",
        "max_acuracy_drop = 1.0",
        16,
        "unknown key 'max_acuracy_drop'. Did you mean 'max_accuracy_drop'?",
    ),
    ('version = "1.0.0"', 'version = "1.0/0"', 3, "version '1.0/0' must be letters"),
    ('input_shape = ["input:1,1,8,8"]', 'input_shape = ["input:1,x"]', 9, "input_shape"),
    ('calib = "calib.npz"\n', "", 5, "builds int8, which needs a calibration set"),
    ("[bench]", "[bench", 18, "malformed TOML"),
    (
        'precisions = ["fp32", "int8"]',
        'precisions = ["fp32", "int8"]\noptions = { calib_methd = "minmax" }',
        14,
        "unknown option 'calib_methd'. Did you mean 'calib_method'?",
    ),
    (
        'precisions = ["fp32", "int8"]',
        'precisions = ["fp32", "int8"]\noptions = { opset_max = 3 }',
        14,
        "not an option of the onnxruntime backend",
    ),
    (
        'precisions = ["fp32", "int8"]',
        'precisions = ["fp32", "int8"]\noptions = { dynamic_int8 = "yes" }',
        14,
        "options.dynamic_int8 must be true or false",
    ),
    (
        'val = "val.npz"',
        'val = "val.npz"\ntask = "detetc"',
        9,
        "task 'detetc' is not a task. Did you mean 'detect'?",
    ),
    ('val = "val.npz"', 'val = "val.npz"\ntask = 3', 9, "task must be a string"),
    (
        'val = "val.npz"',
        'val = "val.npz"\nmetric = "nocolon"',
        9,
        "metric 'nocolon' must be 'module:function'",
    ),
    ('val = "val.npz"', 'val = "val.npz"\nmetric = "no_such_mod:f"', 9, "cannot import module 'no_such_mod'"),
    ("max_accuracy_drop = 1.0", "min_fl = 0.9", 16, "unknown key 'min_fl'. Did you mean 'min_f1'?"),
    ("max_accuracy_drop = 1.0", 'min_mask_iou = "high"', 16, "min_mask_iou must be an integer or a number"),
]


@pytest.mark.parametrize("old,new,line,message", CASES, ids=[c[3][:40] for c in CASES])
def test_mistakes_are_one_line_with_file_and_line(project, run_cli, old, new, line, message):
    config = project / "edgekit.toml"
    assert old in GOOD
    config.write_text(GOOD.replace(old, new, 1))
    code, out, err = run_cli("release", "--config", config)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert f"{config}:{line}: " in err, err
    assert message in err, err
    assert not (project / "dist").exists()


def test_model_task_metric_and_task_gates_are_read(project):
    """[[model]] task and metric (a module beside the config) and the task gates in [gates]."""
    (project / "release_metric.py").write_text("def agree(reference, actual, labels):\n    return 1.0\n")
    text = GOOD.replace(
        'val = "val.npz"', 'val = "val.npz"\ntask = "classify"\nmetric = "release_metric:agree"'
    )
    text = text.replace(
        "max_accuracy_drop = 1.0", "max_accuracy_drop = 3.0\nmin_f1 = 0.9\nmin_slice_cosine = 0.4"
    )
    (project / "edgekit.toml").write_text(text)
    cfg = load_config(project / "edgekit.toml")
    assert cfg.models[0].task == "classify" and cfg.models[0].metric == "release_metric:agree"
    assert cfg.gates == {"max_accuracy_drop": 3.0, "min_f1": 0.9, "min_slice_cosine": 0.4}


def test_missing_config_and_unknown_executor(project, run_cli):
    code, _, err = run_cli("release", "--config", project / "nope.toml")
    assert code == 2 and "release config not found" in err
    code, _, err = run_cli("release", "--config", project / "edgekit.toml", "--executor", "slurm")
    assert code == 2 and "slurm" in err
    code, _, err = run_cli("release", "--config", project / "edgekit.toml", "--executor", "ray")
    assert code == 2 and "--address" in err
