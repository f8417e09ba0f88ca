"""Target profiles (targets/*.toml): validation with file and key in every error, search precedence,
and every shipped profile agreeing with its backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit import targets
from edgekit.backends import BACKENDS, get_backend
from edgekit.errors import BadInput


def _profile(directory: Path, body: str, name: str = "mine") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text(f'name = "{name}"\n' + body)
    return path


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            'backend = "onnxruntime"\nprecisions = ["fp32", "int2"]\n',
            "precision 'int2' is not one of fp32, fp16, int8, int4",
        ),
        (
            'backend = "onnxruntime"\nprecisions = ["int8"]\ndefault_precision = "fp32"\n',
            "default_precision 'fp32'",
        ),
        ('backend = "onnxruntime"\nbuild = "remote"\n', "build = 'remote' is not one of host, on-device"),
        ('backend = "onnxruntime"\nthreads = "4"\n', "threads must be an integer"),
        ('backend = "onnxruntime"\n[fidelity]\nmin_cosin = 0.9\n', "unknown [fidelity] key 'min_cosin'"),
        ('backend = "onnxruntime"\n[fidelity]\nmin_cosine = "high"\n', "min_cosine must be a number"),
        ('backend = "onnxruntime"\ndevise = "GPU"\n', "unknown key 'devise'. Did you mean 'device'?"),
        ('precisions = ["fp32"]\n', "missing required string key 'backend'"),
        ('backend = "onnxruntime"\nopset_max = 6\n', "opset_max = 6 is below 7"),
    ],
)
def test_profile_errors_name_file_and_key(tmp_path: Path, body: str, needle: str) -> None:
    path = _profile(tmp_path, body)
    with pytest.raises(BadInput) as info:
        targets.TargetProfile.from_file(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_search_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flag, env = tmp_path / "flag", tmp_path / "env"
    _profile(env, 'backend = "onnxruntime"\ndescription = "from env"\n', "x86-cpu")
    _profile(env, 'backend = "onnxruntime"\ndescription = "env only"\n', "env-only")
    _profile(flag, 'backend = "onnxruntime"\ndescription = "from flag"\n', "x86-cpu")
    monkeypatch.setenv(targets.ENV_VAR, str(env))
    assert targets.get("x86-cpu", [flag]).description == "from flag"
    assert targets.get("x86-cpu").description == "from env"
    assert targets.get("env-only", [flag]).path == str(env / "env-only.toml")
    monkeypatch.delenv(targets.ENV_VAR)
    assert targets.get("x86-cpu").description != "from env"  # the shipped one
    with pytest.raises(BadInput, match="targets directory not found"):
        targets.load_all([tmp_path / "nowhere"])
    with pytest.raises(BadInput, match="unknown target 'x86-cpux'. Did you mean 'x86-cpu'"):
        targets.get("x86-cpux")


def test_shipped_profiles_agree_with_their_backends() -> None:
    for profile in targets.load_all().values():
        assert profile.backend in BACKENDS, profile.name
        backend = get_backend(profile.backend)
        assert set(profile.precisions) <= set(backend.precisions), profile.name
        assert profile.default_precision in profile.precisions
        again = targets.TargetProfile.from_file(Path(profile.path)).to_json()
        assert again == profile.to_json() and again["fidelity"]["min_cosine"] > 0
