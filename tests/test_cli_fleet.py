"""The CLI over real loopback sshd devices: the demo artifacts benchmarked as a fleet, devices checked,
on-device fidelity, resume, and a changed host key / closed port reported with their reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import export_ok, ssh_device, write_devices

from edgekit.inventory import default_local_target
from edgekit.resources import demo_paths
from tests.sshd import free_port, keygen, known_hosts_line, make_sshd, require_sshd

pytestmark = pytest.mark.ssh


@pytest.fixture
def demo_fleet(tmp_path: Path, run_cli):
    require_sshd()
    client = keygen(tmp_path / "client_key")
    servers = {
        name: make_sshd(tmp_path / f"sshd-{name}", Path(f"{client}.pub")).start()
        for name in ("a", "b", "rekeyed")
    }
    other = keygen(tmp_path / "other_host_key")
    known = tmp_path / "known_hosts"
    known.write_text(
        known_hosts_line(servers["a"])
        + known_hosts_line(servers["b"])
        + known_hosts_line(servers["rekeyed"], other)
    )
    ports = {name: server.port for name, server in servers.items()} | {"closed": free_port()}
    options = {"threads": 1, "connect_timeout": 5, "memory_mb": 2048}
    blocks = [
        ssh_device(f"board-{name}", port, client, known, "x86-cpu", tmp_path / "work" / name, **options)
        for name, port in ports.items()
    ]
    devices = write_devices(tmp_path / "devices.toml", *blocks)
    paths = demo_paths()
    exports = [
        export_ok(run_cli, paths["model"], "x86-cpu", precision, calib=paths["calib"], out=tmp_path / "arts")
        for precision in ("fp32", "int8")
    ]
    artifacts = [record["artifact"] for record in exports]
    yield {"devices": devices, "artifacts": artifacts, "servers": servers, "tmp": tmp_path}
    for server in servers.values():
        server.kill()


def test_bench_demo_artifacts_on_fleet(demo_fleet, run_cli) -> None:
    results = demo_fleet["tmp"] / "results.jsonl"
    args = [
        "bench",
        *demo_fleet["artifacts"],
        "--devices",
        demo_fleet["devices"],
        "--iterations",
        "30",
        "--warmup",
        "3",
        "-o",
        results,
        "--json",
    ]
    code, out, err = run_cli(*args)
    assert code == 3, err  # some devices failed: the exit code says so
    records = json.loads(out)
    by_device: dict[str, list[dict]] = {}
    for record in records:
        by_device.setdefault(record["device"]["name"], []).append(record)
    local = {"local"} if default_local_target() == "x86-cpu" else set()  # `local` always exists
    assert set(by_device) == {"board-a", "board-b", "board-rekeyed", "board-closed"} | local
    for name in ("board-a", "board-b", *local):
        assert [r["status"] for r in by_device[name]] == ["ok", "ok"]
        for record in by_device[name]:
            assert record["latency_ms"]["p50"] > 0 and record["artifact"]["target"] == "x86-cpu"
    assert all(r["error_kind"] == "host_key" for r in by_device["board-rekeyed"])
    assert all(r["error_kind"] == "unreachable" for r in by_device["board-closed"])
    on_disk = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(on_disk) == len(records)

    # resume: only the failed pairs run again (and fail again)
    code, out, err = run_cli(*args, "--resume")
    again = json.loads(out)
    assert {r["device"]["name"] for r in again} == {"board-rekeyed", "board-closed"}


def test_devices_check_list_and_on_device_verify(demo_fleet, run_cli) -> None:
    code, out, err = run_cli("devices", "check", "--devices", demo_fleet["devices"], "--json")
    assert code == 3, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["board-a"]["status"] == "ok" and rows["board-a"]["runtimes"]["onnxruntime"]
    assert rows["board-rekeyed"]["error_kind"] == "host_key"
    assert rows["board-closed"]["error_kind"] == "unreachable"
    code, out, _ = run_cli("devices", "list", "--devices", demo_fleet["devices"], "--json")
    assert code == 0 and {d["name"] for d in json.loads(out)} >= {"board-a", "local"}

    int8 = [a for a in demo_fleet["artifacts"] if a.endswith("int8")][0]
    code, out, err = run_cli(
        "verify",
        int8,
        "--val",
        demo_paths()["val"],
        "--device",
        "board-b",
        "--devices",
        demo_fleet["devices"],
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["where"] == "board-b" and report["samples"] == 540
    assert report["accuracy_drop"] is not None and report["accuracy_drop"] <= 1.0

    code, _, err = run_cli(
        "verify",
        int8,
        "--val",
        demo_paths()["val"],
        "--device",
        "board-rekeyed",
        "--devices",
        demo_fleet["devices"],
    )
    assert code == 3 and "CHANGED" in err


def test_inspect_fit_table_from_devices(demo_fleet, run_cli) -> None:
    code, out, err = run_cli("inspect", demo_paths()["model"], "--devices", demo_fleet["devices"], "--json")
    assert code == 0, err
    fit = json.loads(out)["fit"]
    board = [row for row in fit if row["device"] == "board-a"]
    assert {row["precision"] for row in board} == {"fp32", "fp16", "int8", "int4"}
    assert all(row["device_mb"] == 2048 and row["fits"] is True for row in board)
