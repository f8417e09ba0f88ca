"""adb transport over a FAKE `adb` client (tests/fake_adb.py; no Android device can run here).

The fake runs device commands with /bin/sh on this machine, so quoting is tested for real, and the
device's "python" is this machine's Python, so a real ONNX Runtime benchmark runs through the runner.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit import runner
from edgekit.errors import BadInput, MissingDependency
from edgekit.inventory import check_devices, load_devices
from edgekit.transport import TransportError
from edgekit.transport.adb import AdbNotFound, AdbTransport
from tests.artifacts import make_artifact

FAKE = Path(__file__).with_name("fake_adb.py")


@pytest.fixture
def adb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A fake `adb` first on PATH with one healthy, one unauthorized, one offline, one pre-7 device."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "adb"
    exe.write_text(f"#!{sys.executable}\n" + FAKE.read_text())
    exe.chmod(0o755)
    listing = tmp_path / "adb-devices.txt"
    listing.write_text("emulator-5554 device\nR58M-unauth unauthorized\nflaky offline\nold legacy\n")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    log = tmp_path / "adb-calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_ADB_DEVICES", str(listing))
    monkeypatch.setenv("FAKE_ADB_SANDBOX", str(sandbox))
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    return {"tmp": tmp_path, "listing": listing, "sandbox": sandbox, "log": log}


def _transport(d: dict, serial: str = "emulator-5554", **kw) -> AdbTransport:
    options = {"python": sys.executable, "workdir": str(d["tmp"] / "dev work"), "connect_timeout": 20}
    options.update(kw)
    return AdbTransport("phone", serial, **options)


def test_quoted_run_upload_skip_verify_download(adb):
    marker = adb["tmp"] / "pwned"
    hostile = f"$(touch {marker}); `touch {marker}` 'q\" \\ & | > x; touch {marker}"

    async def main() -> None:
        async with _transport(adb) as t:
            assert t.workdir == str(adb["tmp"] / "dev work")
            rc, out, _ = await t.run(["printf", "%s", hostile])
            assert rc == 0 and out == hostile
            local = adb["tmp"] / "blob.bin"
            local.write_bytes(b"\x00\x01edgekit" * 1000)
            remote = t.path(f"a {hostile}.bin")
            assert await t.upload(local, remote) is True
            assert await t.upload(local, remote) is False  # same sha256 already there: skipped
            back = adb["tmp"] / "back.bin"
            await t.download(remote, back)
            assert back.read_bytes() == local.read_bytes()
            rc, out, _ = await t.run(
                [sys.executable, "-c", "import sys; print(sys.stdin.read()[::-1])"], stdin=b"abc"
            )
            assert (rc, out.strip()) == (0, "cba")
            rc, _, _ = await t.run(["sh", "-c", "exit 7"])
            assert rc == 7  # the remote exit status comes back (shell protocol v2)
            with pytest.raises(TransportError) as exc:
                await t.run(["sleep", "5"], timeout=0.5)
            assert exc.value.kind == "timeout"
            with pytest.raises(TransportError, match="not found on the device"):
                await t.download(t.path("missing.bin"), adb["tmp"] / "x.bin")

    asyncio.run(main())
    assert not marker.exists()
    assert not list(adb["sandbox"].iterdir())
    # Every shell call hands adb exactly ONE command argument after `--` (adb joins, never escapes).
    calls = [json.loads(line) for line in adb["log"].read_text().splitlines()]
    shells = [c for c in calls if "shell" in c]
    assert shells and all(
        c[:5] == ["-s", "emulator-5554", "shell", "-T", "--"] and len(c) == 6 for c in shells
    )


def test_bench_and_check_over_adb(adb, tmp_path):
    art_dir = make_artifact(tmp_path / "art $(touch pwned)", target="android-arm64")
    val = tmp_path / "val.npz"
    x = np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)
    np.savez(val, x=x)
    toml = tmp_path / "devices.toml"
    toml.write_text(
        f'[devices.pixel]\nserial = "emulator-5554"\ntarget = "android-arm64"\npython = "{sys.executable}"\n'
        f'workdir = "{tmp_path / "pixel work"}"\n\n'
        f'[devices.locked]\ntransport = "adb"\nserial = "R58M-unauth"\ntarget = "android-arm64"\n'
    )
    devices = load_devices(toml)
    assert devices["pixel"].transport == "adb" and devices["locked"].workdir == "/data/local/tmp/edgekit"
    checked = {r["name"]: r for r in asyncio.run(check_devices([devices["pixel"], devices["locked"]]))}
    assert checked["pixel"]["status"] == "ok", checked["pixel"]
    assert "onnxruntime" in checked["pixel"]["runtimes"] and checked["pixel"]["free_disk_mb"] > 0
    assert checked["locked"]["error_kind"] == "auth" and not checked["locked"]["auth"]

    jobs, _ = runner.plan(runner.load_artifacts([art_dir]), devices)
    assert {j.device.name for j in jobs} == {"pixel", "locked"}
    results = tmp_path / "results.jsonl"
    settings = runner.BenchSettings(iterations=5, warmup=1, validation=val)
    records = {r["device"]["name"]: r for r in asyncio.run(runner.run_bench(jobs, settings, results))}
    ok = records["pixel"]
    assert ok["status"] == "ok", ok["error"]
    assert ok["latency_ms"]["p50"] > 0 and ok["runtime"]
    import onnxruntime as ort

    sess = ort.InferenceSession(str(art_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = np.concatenate([sess.run(None, {"x": x[i : i + 1]})[0] for i in range(4)])
    np.testing.assert_allclose(np.load(ok["outputs_file"])["y"], expected, rtol=1e-5, atol=1e-6)
    locked = records["locked"]
    assert locked["status"] == "failed" and locked["error_kind"] == "auth"
    assert "USB debugging" in locked["error"]
    assert len(runner.read_results(results)) == 2
    assert not (adb["sandbox"] / "pwned").exists() and not (Path.cwd() / "pwned").exists()
    # The device-side run folder was removed; the artifact stays cached for the next run.
    assert not list((tmp_path / "pixel work" / "runs").iterdir())


def test_device_errors_name_the_fix(adb, tmp_path, monkeypatch):
    def connect_error(serial: str) -> TransportError:
        async def main() -> None:
            await _transport(adb, serial).connect()

        with pytest.raises(TransportError) as exc:
            asyncio.run(main())
        return exc.value

    err = connect_error("R58M-unauth")
    assert err.kind == "auth" and "accept the 'Allow USB debugging?' prompt" in str(err)
    assert "`adb devices`" in str(err)
    err = connect_error("nope-123")
    assert err.kind == "unreachable" and "not found" in str(err) and "`adb devices`" in str(err)
    err = connect_error("flaky")
    assert err.kind == "unreachable" and "adb reconnect" in str(err)
    err = connect_error("old")
    assert err.kind == "remote" and "shell protocol v2" in str(err)
    err = asyncio.run(_missing_python(adb))
    assert "set `python = ...`" in str(err)

    async def unplugged() -> TransportError:
        async with _transport(adb) as t:
            adb["listing"].write_text("")  # the phone is unplugged mid-run
            with pytest.raises(TransportError) as exc:
                await t.run(["true"])
            return exc.value

    err = asyncio.run(unplugged())
    assert err.kind == "lost" and "disappeared" in str(err)

    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(AdbNotFound) as missing:
        asyncio.run(_transport(adb).connect())
    assert isinstance(missing.value, MissingDependency) and missing.value.exit_code == 3
    assert "android-tools-adb" in str(missing.value) and "\n" not in str(missing.value)


async def _missing_python(d: dict) -> TransportError:
    with pytest.raises(TransportError) as exc:
        await _transport(d, python="/nonexistent/python3").connect()
    return exc.value


def test_inventory_adb_keys(tmp_path):
    toml = tmp_path / "devices.toml"
    toml.write_text('[devices.phone]\ntransport = "adb"\ntarget = "android-arm64"\n')
    with pytest.raises(BadInput, match=r"devices.toml:1: .*transport 'adb' needs serial"):
        load_devices(toml)
    toml.write_text('[devices.phone]\ntransport = "adb"\nserail = "x"\ntarget = "android-arm64"\n')
    with pytest.raises(BadInput, match=r"devices.toml:3: .*unknown key 'serail'.*Did you mean 'serial'"):
        load_devices(toml)
    toml.write_text('[devices.phone]\ntransport = "abd"\nserial = "x"\ntarget = "t"\n')
    with pytest.raises(BadInput, match=r"devices.toml:2: .*Did you mean 'adb'"):
        load_devices(toml)
    toml.write_text('[devices.phone]\nserial = "x"\nhost = "h"\ntarget = "t"\n')
    with pytest.raises(BadInput, match=r"devices.toml:2: .*'serial' only applies to transport = \"adb\""):
        load_devices(toml)
    toml.write_text('[devices.phone]\nserial = "x"\nport = 22\ntarget = "t"\n')
    with pytest.raises(BadInput, match=r"devices.toml:3: .*'port' only applies"):
        load_devices(toml)
    toml.write_text('[devices.phone]\nserial = "192.168.1.50:5555"\ntarget = "android-arm64"\n')
    phone = load_devices(toml)["phone"]
    transport = phone.make_transport()
    assert isinstance(transport, AdbTransport) and transport.serial == "192.168.1.50:5555"
    assert (
        transport.workdir_spec == "/data/local/tmp/edgekit" and phone.to_json()["serial"] == transport.serial
    )
