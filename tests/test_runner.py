"""Fleet benchmark over real loopback sshd processes: failures isolated, results durable, resume exact."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from edgekit import api, runner
from edgekit.inventory import load_devices
from edgekit.resources import demo_paths
from tests.artifacts import make_artifact
from tests.sshd import free_port, keygen, known_hosts_line, make_sshd, require_sshd

pytestmark = pytest.mark.ssh

HOSTILE = "$(touch {m}) `touch {m}`; touch {m} 'q\" "


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


@pytest.fixture
def fleet(tmp_path: Path):
    require_sshd()
    marker = tmp_path / "pwned"
    hostile = HOSTILE.format(m=marker)
    client = keygen(tmp_path / "client_key")
    servers = {
        name: make_sshd(tmp_path / f"sshd-{name}", Path(f"{client}.pub")).start()
        for name in ("good-a", "good-b", "dying", "rekeyed")
    }
    closed_port = free_port()
    known = tmp_path / "known_hosts"
    other_key = keygen(tmp_path / "other_host_key")
    lines = [known_hosts_line(servers[n]) for n in ("good-a", "good-b", "dying")]
    lines.append(known_hosts_line(servers["rekeyed"], other_key))  # the device "was reinstalled"
    lines.append(
        f"[127.0.0.1]:{closed_port} {Path(str(other_key) + '.pub').read_text().split()[0]} "
        f"{Path(str(other_key) + '.pub').read_text().split()[1]}\n"
    )
    known.write_text("".join(lines))
    names = {"good-a": f"good a {hostile}", "good-b": "good-b", "dying": "dying", "rekeyed": "rekeyed"}
    blocks = []
    for key, server in servers.items():
        workdir = tmp_path / "devices" / key / f"work {hostile}"
        blocks.append(
            f'[devices.{_toml_str(names[key])}]\ntransport = "ssh"\nhost = "127.0.0.1"\n'
            f"port = {server.port}\n"
            f"identity_file = {_toml_str(str(client))}\nknown_hosts = {_toml_str(str(known))}\n"
            f'target = "fleet-cpu"\nworkdir = {_toml_str(str(workdir))}\nthreads = 1\nconnect_timeout = 10\n'
        )
    blocks.append(
        f'[devices.closed]\nhost = "127.0.0.1"\nport = {closed_port}\n'
        f"identity_file = {_toml_str(str(client))}\n"
        f'known_hosts = {_toml_str(str(known))}\ntarget = "fleet-cpu"\nconnect_timeout = 5\n'
    )
    devices_toml = tmp_path / "devices.toml"
    devices_toml.write_text("\n".join(blocks))
    arts = demo_artifacts(tmp_path, [f"demo a {hostile}", 'demo "b"; $(id)'])
    yield {
        "servers": servers,
        "names": names,
        "devices": devices_toml,
        "arts": arts,
        "marker": marker,
        "tmp": tmp_path,
        "hostile": hostile,
    }
    for server in servers.values():
        server.kill()


def demo_artifacts(tmp_path: Path, names: list[str]) -> list[Path]:
    """The bundled demo model exported (fp32, int8) for a user-defined target profile `fleet-cpu`,
    then moved to directories with hostile names."""
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "fleet-cpu.toml").write_text(
        'name = "fleet-cpu"\nbackend = "onnxruntime"\nprecisions = ["fp32", "int8"]\n'
    )
    paths = demo_paths()
    out = []
    for precision, name in zip(("fp32", "int8"), names, strict=True):
        outcome = api.export(
            api.ExportRequest(
                model=paths["model"],
                target="fleet-cpu",
                precision=precision,
                calib=paths["calib"],
                out_dir=tmp_path / "exported",
                targets_dirs=[targets],
            )
        )
        dest = tmp_path / "arts" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(outcome.path), dest)
        out.append(dest)
    return out


def test_fleet_failures_isolated_and_resume(fleet):
    devices = load_devices(fleet["devices"], ssh_config=fleet["tmp"] / "no_ssh_config")
    artifacts = runner.load_artifacts(fleet["arts"])
    jobs, warnings = runner.plan(artifacts, devices)
    assert not warnings
    assert len(jobs) == 2 * 5  # `local` is x86-cpu/arm64-cpu: not matched
    results = fleet["tmp"] / "out" / "results.jsonl"
    settings = runner.BenchSettings(iterations=20, warmup=2, min_duration_s=1.0, timeout_s=120)
    dying = fleet["servers"]["dying"]
    events: list[dict] = []
    kills: list[bool] = []

    def progress(event: dict) -> None:
        events.append(event)
        if event["device"] == "dying" and event["stage"] == "running" and not kills:
            kills.append(True)  # the device dies while its first benchmark runs
            asyncio.get_running_loop().call_later(0.4, dying.kill)

    records = asyncio.run(runner.run_bench(jobs, settings, results, concurrency=5, progress=progress))
    by_device: dict[str, list[dict]] = {}
    for rec in runner.read_results(results):
        by_device.setdefault(rec["device"]["name"], []).append(rec)
    assert len(records) == 10 and sum(len(v) for v in by_device.values()) == 10

    good = [fleet["names"]["good-a"], "good-b"]
    for name in good:
        assert [r["status"] for r in by_device[name]] == ["ok", "ok"], by_device[name]
        for rec in by_device[name]:
            assert rec["latency_ms"]["p50"] > 0 and rec["throughput_fps"] > 0
            assert rec["device"]["environment"]["runtimes"]["onnxruntime"]
            assert rec["runtime"]["name"] == "onnxruntime"
    lost = by_device["dying"]
    assert all(r["status"] == "failed" for r in lost)
    assert lost[0]["error_kind"] == "lost", lost[0]["error"]
    assert lost[1]["error_kind"] in ("unreachable", "lost"), lost[1]["error"]
    for rec in by_device["rekeyed"]:
        assert rec["status"] == "failed" and rec["error_kind"] == "host_key"
        assert (
            "CHANGED" in rec["error"] and "ssh-keygen -R" in rec["error"] and "ssh-keyscan -p" in rec["error"]
        )
    for rec in by_device["closed"]:
        assert rec["status"] == "failed" and rec["error_kind"] == "unreachable"
        assert "refused" in rec["error"]
    assert runner.any_failed(records)
    rows = runner.table_rows(records)
    assert {r["status"] for r in rows} == {"ok", "failed"}

    # Nothing executed from hostile names; run folders removed on the healthy devices.
    assert not fleet["marker"].exists()
    for key in ("good-a", "good-b"):
        workdir = fleet["tmp"] / "devices" / key / f"work {fleet['hostile']}"  # created literally
        assert list((workdir / "runs").iterdir()) == []
        assert len(list((workdir / "artifacts").iterdir())) == 2

    # The device comes back: resume runs only the missing pairs.
    dying.start()
    events.clear()
    again = asyncio.run(
        runner.run_bench(jobs, settings, results, resume=True, concurrency=5, progress=progress)
    )
    assert sorted({r["device"]["name"] for r in again}) == ["closed", "dying", "rekeyed"]
    assert [r["status"] for r in again if r["device"]["name"] == "dying"] == ["ok", "ok"]
    skipped = {e["device"] for e in events if e["stage"] == "skipped"}
    assert skipped == set(good)
    assert len(runner.read_results(results)) == 16
    assert runner.done_pairs(results) == {(a.sha256, d) for a in artifacts for d in [*good, "dying"]}
    assert not fleet["marker"].exists()


def test_explicit_device_warns_on_target_mismatch(tmp_path):
    art = runner.load_artifacts([make_artifact(tmp_path / "a", target="jetson-nano")])
    devices = load_devices(None)
    jobs, warnings = runner.plan(art, devices, explicit=["local"])
    assert len(jobs) == 1 and "jetson-nano" in warnings[0]
    with pytest.raises(Exception, match="unknown device 'locl'.*Did you mean 'local'"):
        runner.plan(art, devices, explicit=["locl"])


def test_local_bench_with_validation_outputs(tmp_path):
    import numpy as np
    import onnxruntime as ort

    art_dir = make_artifact(tmp_path / "art", target="x86-cpu")
    val = tmp_path / "val.npz"
    x = np.random.default_rng(3).standard_normal((5, 16)).astype(np.float32)
    np.savez(val, x=x)
    devices = load_devices(None)
    devices["local"].workdir = str(tmp_path / "work")
    artifacts = runner.load_artifacts([art_dir])
    jobs, _ = runner.plan(artifacts, devices, explicit=["local"])
    settings = runner.BenchSettings(iterations=5, warmup=1, validation=val)
    results = tmp_path / "results.jsonl"
    (rec,) = asyncio.run(runner.run_bench(jobs, settings, results))
    assert rec["status"] == "ok", rec["error"]
    outputs = np.load(rec["outputs_file"])
    sess = ort.InferenceSession(str(art_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = np.concatenate([sess.run(None, {"x": x[i : i + 1]})[0] for i in range(5)])
    np.testing.assert_allclose(outputs["y"], expected, rtol=1e-5, atol=1e-6)
    # A torn line from a killed run is tolerated and not glued to the next record.
    with open(results, "a") as fh:
        fh.write('{"status": "ok", "artif')
    asyncio.run(runner.run_bench(jobs, runner.BenchSettings(iterations=2, warmup=0), results))
    assert [r["status"] for r in runner.read_results(results)] == ["ok", "ok"]


def test_cancel_removes_device_run_folders(tmp_path):
    art_dir = make_artifact(tmp_path / "art", target="x86-cpu", width=256, depth=8)
    devices = load_devices(None)
    devices["local"].workdir = str(tmp_path / "work")
    jobs, _ = runner.plan(runner.load_artifacts([art_dir]), devices, explicit=["local"])
    settings = runner.BenchSettings(iterations=10, warmup=1, min_duration_s=60)
    results = tmp_path / "results.jsonl"

    async def main() -> None:
        started = asyncio.Event()

        def progress(event: dict) -> None:
            if event["stage"] == "running":
                started.set()

        task = asyncio.ensure_future(runner.run_bench(jobs, settings, results, progress=progress))
        await started.wait()
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert list((tmp_path / "work" / "runs").iterdir()) == []
    assert runner.read_results(results) == []
