"""edgekit without its extras (Polygraphy's test_deps pattern): every module imports, every command's
--help works, and a command that needs an extra stops with one line naming it (exit 3).

Fast: in this environment with the extras' modules made unimportable. Slow: the real thing, `pip install`
of this tree without extras into a fresh virtualenv (PyPI, or pip's cache).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the top-level modules of every optional extra (pyproject's [project.optional-dependencies])
EXTRA_MODULES = (
    "tensorflow",
    "tf_keras",
    "onnx2tf",
    "ai_edge_litert",
    "onnx_graphsurgeon",
    "sng4onnx",
    "psutil",
    "openvino",
    "nncf",
    "tensorrt",
    "cuda",
    "pycuda",
    "onnxslim",
    "PIL",
    "asyncssh",
    "ray",
)

# Run by a Python that has only edgekit's core dependencies (or pretends to): prints a JSON report.
PROBE = textwrap.dedent(
    """
    import contextlib, importlib, io, json, pkgutil, sys

    import click
    import edgekit

    failed = {}
    for info in pkgutil.walk_packages(edgekit.__path__, "edgekit."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # runs the CLI
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # noqa: BLE001
            failed[info.name] = f"{type(exc).__name__}: {exc}"

    import edgekit.cli as cli_module

    groups = [v for v in vars(cli_module).values() if isinstance(v, click.Group)]
    top = max(groups, key=lambda g: len(g.commands))

    def paths(group, prefix):
        yield prefix
        for name, command in sorted(group.commands.items()):
            if isinstance(command, click.Group):
                yield from paths(command, [*prefix, name])
            else:
                yield [*prefix, name]

    helps = {}
    for path in paths(top, []):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                code = top.main([*path, "--help"], prog_name="edgekit", standalone_mode=False)
            except SystemExit as exc:
                code = exc.code
            except Exception as exc:  # noqa: BLE001
                code = f"{type(exc).__name__}: {exc}"
        helps[" ".join(path) or "(top)"] = {"code": code or 0, "usage": "Usage:" in out.getvalue()}
    print(json.dumps({"failed": failed, "helps": helps}))
    """
)

BLOCKER = textwrap.dedent(
    """
    import sys

    BLOCKED = set({modules!r})

    class _Hiding:
        # wraps a meta path finder: blocked modules are not found (find_spec says None), as if not installed
        def __init__(self, finder):
            self.finder = finder

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                return None
            find = getattr(self.finder, "find_spec", None)
            return find(name, path, target) if find else None

        def __getattr__(self, attr):
            return getattr(self.finder, attr)

    sys.meta_path[:] = [_Hiding(finder) for finder in sys.meta_path]
    """
)


def _check_probe(output: str) -> None:
    report = json.loads(output.strip().splitlines()[-1])
    assert report["failed"] == {}, report["failed"]
    helps = report["helps"]
    assert {"(top)", "export", "verify", "bench", "inspect", "targets"} <= set(helps)
    bad = {path: result for path, result in helps.items() if result != {"code": 0, "usage": True}}
    assert not bad, bad


def _blocked_env(tmp_path: Path) -> dict[str, str]:
    """PYTHONPATH with a sitecustomize that makes every extra's module unimportable."""
    site = tmp_path / "blocked"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER.format(modules=sorted(EXTRA_MODULES)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    env["EDGEKIT_CACHE_DIR"] = str(tmp_path / "cache")
    return env


def test_every_module_and_help_without_the_extras(tmp_path: Path) -> None:
    env = _blocked_env(tmp_path)
    blocked = subprocess.run(
        [sys.executable, "-c", "import openvino"], env=env, capture_output=True, text=True, timeout=120
    )
    assert blocked.returncode != 0 and "No module named 'openvino'" in blocked.stderr  # the blocker works
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    _check_probe(result.stdout)


def _tiny_model(python: str, path: Path, env: dict[str, str]) -> None:
    code = (
        "import onnx, sys\n"
        "from onnx import helper, TensorProto as T\n"
        "g = helper.make_graph([helper.make_node('Relu', ['x'], ['y'])], 'g',\n"
        "    [helper.make_tensor_value_info('x', T.FLOAT, [1, 3, 8, 8])],\n"
        "    [helper.make_tensor_value_info('y', T.FLOAT, [1, 3, 8, 8])])\n"
        "m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]); m.ir_version = 7\n"
        "onnx.save(m, sys.argv[1])\n"
    )
    subprocess.run([python, "-c", code, str(path)], env=env, check=True, timeout=120)


def _missing_extra(python: str, args: list[str], env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run(
        [python, "-m", "edgekit", *args], env=env, capture_output=True, text=True, timeout=300, cwd=cwd
    )
    assert result.returncode == 3, (args, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_command_that_needs_an_extra_says_which_in_one_line(tmp_path: Path) -> None:
    env = _blocked_env(tmp_path)
    model = tmp_path / "relu.onnx"
    _tiny_model(sys.executable, model, env)
    line = _missing_extra(sys.executable, ["export", str(model), "--target", "intel-cpu"], env, tmp_path)
    assert "pip install 'edgekit[openvino]'" in line


@pytest.mark.slow
def test_bare_virtualenv_install(tmp_path: Path) -> None:
    """`pip install edgekit` (no extras) in a fresh venv: import everything, --help everything."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["EDGEKIT_CACHE_DIR"] = str(tmp_path / "cache")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "--quiet", str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    present = subprocess.run(
        [
            python,
            "-c",
            f"import importlib.util as u; print([m for m in {EXTRA_MODULES!r} if u.find_spec(m)])",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert present.stdout.strip() == "[]", f"extras leaked into the core install: {present.stdout}"
    result = subprocess.run(
        [python, "-c", PROBE], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    _check_probe(result.stdout)
    targets = subprocess.run(
        [python, "-m", "edgekit", "targets"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert targets.returncode == 0 and "x86-cpu" in targets.stdout, targets.stderr
    model = tmp_path / "relu.onnx"
    _tiny_model(python, model, env)
    exported = subprocess.run(
        [python, "-m", "edgekit", "export", str(model), "--target", "x86-cpu", "-o", str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert exported.returncode == 0, exported.stderr  # the core install exports for onnxruntime
    for target, extra in (("intel-cpu", "openvino"), ("android-arm64", "tflite")):
        line = _missing_extra(python, ["export", str(model), "--target", target], env, tmp_path)
        assert f"pip install 'edgekit[{extra}]'" in line
