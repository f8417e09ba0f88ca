"""What the CLI tests share: export command lines, device inventories (devices.toml) and target
profiles written by tests, and the checks every refusal must pass (one line, its exit code,
nothing written)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RunCli = Callable[..., tuple[int, str, str]]


def toml_value(value: Any) -> str:
    """A TOML literal for a str / int / float / bool / list (JSON's string escapes are TOML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def toml_table(header: str, values: dict[str, Any]) -> str:
    lines = [f"[{header}]"] + [f"{key} = {toml_value(v)}" for key, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"


# ---- devices.toml ------------------------------------------------------------------------------------
def local_device(name: str, target: str, workdir: Path, **extra: Any) -> str:
    """A [devices.NAME] block for this machine (the agent runs in a subprocess here)."""
    return toml_table(
        f"devices.{name}", {"transport": "local", "target": target, "workdir": workdir, **extra}
    )


def ssh_device(
    name: str, port: int, identity: Path, known_hosts: Path, target: str, workdir: Path, **extra: Any
) -> str:
    """A [devices.NAME] block for an sshd on loopback (see tests/sshd.py)."""
    values = {
        "transport": "ssh",
        "host": "127.0.0.1",
        "port": port,
        "identity_file": identity,
        "known_hosts": known_hosts,
        "target": target,
        "workdir": workdir,
        **extra,
    }
    return toml_table(f"devices.{name}", values)


def write_devices(path: Path, *blocks: str) -> Path:
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


def write_target(directory: Path, name: str, backend: str = "onnxruntime", **values: Any) -> Path:
    """A user target profile `<directory>/<name>.toml`; a `fidelity` dict becomes its [fidelity] table."""
    directory.mkdir(parents=True, exist_ok=True)
    fidelity = values.pop("fidelity", None)
    text = "\n".join(
        f"{k} = {toml_value(v)}" for k, v in {"name": name, "backend": backend, **values}.items()
    )
    if fidelity:
        text += "\n" + toml_table("fidelity", fidelity)
    (directory / f"{name}.toml").write_text(text + "\n", encoding="utf-8")
    return directory


# ---- command lines -----------------------------------------------------------------------------------
def export_args(
    model: str | Path,
    target: str,
    precision: str | None = None,
    *,
    out: str | Path,
    calib: str | Path | None = None,
    val: str | Path | None = None,
    as_json: bool = True,
    more: Sequence[str | Path] = (),
) -> list[str]:
    """`export MODEL --target T [--PRECISION] [--calib C] [--val V] -o OUT [--json] MORE...`"""
    args = ["export", str(model), "--target", target]
    if precision:
        args.append(f"--{precision}")
    if calib is not None:
        args += ["--calib", str(calib)]
    if val is not None:
        args += ["--val", str(val)]
    args += ["-o", str(out)]
    if as_json:
        args.append("--json")
    return args + [str(m) for m in more]


def export_ok(run_cli: RunCli, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run `export_args(...)`, assert exit 0 and return the printed record {"artifact", "manifest"}."""
    code, out, err = run_cli(*export_args(*args, **kwargs))
    assert code == 0, err
    return json.loads(out)


# ---- refusals ----------------------------------------------------------------------------------------
def assert_one_line(code: int, err: str, exit_code: int, *needles: str) -> str:
    """A refusal: exit `exit_code`, exactly one line on stderr ("edgekit: error: ..." or, for a gate,
    "edgekit: gate failed: ..."), no traceback; returns that line."""
    assert code == exit_code, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    prefix = "edgekit: gate failed:" if exit_code == 1 else "edgekit: error:"
    assert lines[0].startswith(prefix), lines[0]
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def assert_nothing_written(out: Path) -> None:
    """A refused export creates nothing: not the artifact, not a temp dir, not the -o directory."""
    assert not out.exists(), sorted(p.name for p in out.iterdir()) if out.is_dir() else out


def refused(
    run_cli: RunCli, args: Sequence[Any], exit_code: int, *needles: str, out: Path | None = None
) -> str:
    """Run `edgekit ARGS`, assert a one-line refusal with `exit_code` and, with `out`, that nothing was
    written there. Returns the line."""
    code, _, err = run_cli(*args)
    line = assert_one_line(code, err, exit_code, *needles)
    if out is not None:
        assert_nothing_written(out)
    return line
