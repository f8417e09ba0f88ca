"""SSH transport and inventory against a real loopback sshd: quoting, host keys, uploads, check, trust."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from edgekit.errors import BadInput
from edgekit.inventory import check_devices, load_devices, resolve_ssh_config, trust_device
from edgekit.transport import TransportError
from edgekit.transport.ssh import SshTransport
from tests.sshd import keygen, known_hosts_line, make_sshd, require_sshd


@pytest.fixture
def device(tmp_path: Path):
    require_sshd()
    client = keygen(tmp_path / "client_key")
    server = make_sshd(tmp_path / "sshd", Path(f"{client}.pub")).start()
    known = tmp_path / "known_hosts"
    known.write_text(known_hosts_line(server))
    yield {"server": server, "client": client, "known": known, "tmp": tmp_path}
    server.kill()


def _transport(d: dict, **kw) -> SshTransport:
    options = {
        "host": "127.0.0.1",
        "port": d["server"].port,
        "identity_files": [str(d["client"])],
        "known_hosts": str(d["known"]),
        "workdir": str(d["tmp"] / "work dir"),
        "connect_timeout": 10,
    }
    options.update(kw)
    return SshTransport("dev", **options)


@pytest.mark.ssh
def test_quoted_run_upload_skip_verify_download(device):
    marker = device["tmp"] / "pwned"
    hostile = f"$(touch {marker}); `touch {marker}` 'q\" \\ & | > x"

    async def main() -> None:
        async with _transport(device) as t:
            rc, out, _ = await t.run(["printf", "%s", hostile])
            assert rc == 0 and out == hostile
            local = device["tmp"] / "blob.bin"
            local.write_bytes(b"\x00\x01edgekit" * 1000)
            remote = t.path(f"a {hostile}.bin")
            assert await t.upload(local, remote) is True
            assert await t.upload(local, remote) is False  # same sha256 already there: skipped
            back = device["tmp"] / "back.bin"
            await t.download(remote, back)
            assert back.read_bytes() == local.read_bytes()
            rc, _, _ = await t.run(["sh", "-c", "exit 7"])
            assert rc == 7
            with pytest.raises(TransportError) as exc:
                await t.run(["sleep", "30"], timeout=0.5)
            assert exc.value.kind == "timeout"

    asyncio.run(main())
    assert not marker.exists()


@pytest.mark.ssh
def test_unknown_key_wrong_key_and_auth_refused(device):
    device["known"].write_text("")

    async def connect(**kw) -> TransportError:
        with pytest.raises(TransportError) as exc:
            await _transport(device, **kw).connect()
        return exc.value

    err = asyncio.run(connect())
    assert err.kind == "host_key" and "unknown" in str(err)
    assert f"ssh-keyscan -p {device['server'].port} 127.0.0.1" in str(err) and "devices trust dev" in str(err)
    other = keygen(device["tmp"] / "stranger")
    device["known"].write_text(known_hosts_line(device["server"]))
    err = asyncio.run(connect(identity_files=[str(other)]))
    assert err.kind == "auth" and "refused" in str(err)


@pytest.mark.ssh
def test_devices_check_and_trust(device, tmp_path):
    device["known"].write_text("")
    toml = tmp_path / "devices.toml"
    toml.write_text(
        f'[devices.box]\nhost = "box-alias"\nidentity_file = "{device["client"]}"\n'
        f'known_hosts = "{device["known"]}"\ntarget = "x86-cpu"\nworkdir = "{tmp_path / "w"}"\n'
    )
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(f"Host box-*\n  HostName 127.0.0.1\n  Port {device['server'].port}\n  User root\n")
    devices = load_devices(toml, ssh_config=ssh_config)
    box = devices["box"]
    assert (box.hostname, box.port) == ("127.0.0.1", device["server"].port)
    first = asyncio.run(check_devices([box, devices["local"]]))
    assert first[0]["status"] == "failed" and first[0]["error_kind"] == "host_key"
    assert first[1]["status"] == "ok" and "onnxruntime" in first[1]["runtimes"]
    trusted = asyncio.run(trust_device(box, confirm=lambda msg: "SHA256:" in msg))
    assert trusted["added"] and trusted["fingerprint"].startswith("SHA256:")
    assert asyncio.run(trust_device(box))["note"] == "already trusted"
    (rec,) = asyncio.run(check_devices([box]))
    assert rec["status"] == "ok", rec
    assert rec["reachable"] and rec["auth"] and rec["python"] and rec["free_disk_mb"] > 0
    assert "onnxruntime" in rec["runtimes"] and rec["memory_mb"] > 0
    json.dumps(rec)


def test_inventory_errors_name_file_line_and_key(tmp_path):
    toml = tmp_path / "devices.toml"
    toml.write_text('[devices.nano]\nhost = "nano"\ntarget = "jetson-nano"\nprot = 22\n')
    with pytest.raises(BadInput, match=r"devices.toml:4: \[devices.nano\] unknown key 'prot'.*'port'"):
        load_devices(toml)
    toml.write_text('[devices.nano]\nhost = "nano"\ntarget = "jetson-nano"\nport = "22"\n')
    with pytest.raises(BadInput, match=r"devices.toml:4: .*port must be a number"):
        load_devices(toml)
    toml.write_text('[devices.nano]\ntransport = "sssh"\nhost = "n"\ntarget = "t"\n')
    with pytest.raises(BadInput, match=r"devices.toml:2: .*Did you mean 'ssh'"):
        load_devices(toml)
    toml.write_text('[devices.nano]\ntransport = "ssh"\ntarget = "t"\n')
    with pytest.raises(BadInput, match=r"devices.toml:1: .*needs host"):
        load_devices(toml)
    assert set(load_devices(None)) == {"local"}


def test_ssh_config_resolution_like_openssh(tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text(
        "Host nano*  !nano-bad\n  HostName %h.lan\n  User edge\n  IdentityFile ~/.ssh/nano\n"
        "  ProxyJump bastion\nHost *\n  User nobody\n  Port 2200\n  IdentityFile ~/.ssh/id_ed25519\n"
    )
    nano = resolve_ssh_config("nano1", cfg)
    assert (nano.hostname, nano.user, nano.port, nano.proxy_jump) == ("nano1.lan", "edge", 2200, "bastion")
    assert nano.identity_files == ["~/.ssh/nano", "~/.ssh/id_ed25519"]
    bad = resolve_ssh_config("nano-bad", cfg)
    assert (bad.hostname, bad.user) == (None, "nobody")
