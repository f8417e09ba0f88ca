from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test session prepares models into its own cache, never the user's ~/.cache."""
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "edgekit-cache"))


@pytest.fixture(autouse=True, scope="session")
def _edgekit_temp(tmp_path_factory: pytest.TempPathFactory):
    """The suite's temp files go into one edgekit run directory (edgekit.tempdirs), removed at the end:
    the test suite leaves no edgekit-* directories in the temp directory. pytest's own tmp_path base
    is made first and stays where it is."""
    tmp_path_factory.getbasetemp()
    from edgekit.tempdirs import run_dir

    with run_dir():
        yield


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):
    """Run `edgekit ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from edgekit.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts sshd (marker `ssh`) is a slow test: `pytest -m "not slow"` leaves it out
    with the onnx2tf and NNCF tests (marked `slow` where they are written)."""
    for item in items:
        if item.get_closest_marker("ssh") is not None:
            item.add_marker(pytest.mark.slow)
