"""devices.toml: the inventory reads the generic keys and asks each transport class for its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edgekit.errors import BadInput
from edgekit.inventory import DEVICE_KEYS, load_devices, local_device, trust_device
from edgekit.transport import TRANSPORTS, LocalTransport, transport_class
from edgekit.transport.adb import AdbTransport
from edgekit.transport.ssh import SshTransport


def _devices(tmp_path: Path, text: str):
    toml = tmp_path / "devices.toml"
    toml.write_text(text)
    return load_devices(toml, ssh_config=tmp_path / "no_ssh_config")


def test_transport_keys_come_from_the_transport_classes() -> None:
    assert set(SshTransport.config_keys) == {
        "host",
        "user",
        "port",
        "identity_file",
        "known_hosts",
        "proxy_jump",
    }
    assert set(AdbTransport.config_keys) == {"serial"} and LocalTransport.config_keys == {}
    for kind in TRANSPORTS:
        assert not set(transport_class(kind).config_keys) & set(DEVICE_KEYS), kind
    with pytest.raises(BadInput, match="unknown transport 'shh'. Did you mean 'ssh'"):
        transport_class("shh")


def test_address_and_credentials_are_the_transports(tmp_path: Path) -> None:
    devices = _devices(
        tmp_path,
        '[devices.nano]\nhost = "10.0.0.5"\nuser = "edge"\nport = 2222\nproxy_jump = "bastion"\n'
        'identity_file = "/keys/nano"\ntarget = "jetson-nano"\n'
        '[devices.box]\nhost = "box.lan"\ntarget = "x86-cpu"\n'
        '[devices.phone]\nserial = "R58M123ABC"\ntarget = "android-arm64"\n',
    )
    nano, box, phone, local = devices["nano"], devices["box"], devices["phone"], devices["local"]
    assert nano.address() == "10.0.0.5:2222 via bastion"
    assert nano.to_json()["credentials"] == "/keys/nano" and box.to_json()["credentials"] == "agent"
    assert (nano.hostname, nano.user, nano.port) == ("10.0.0.5", "edge", 2222)  # settings as attributes
    assert phone.address() == "adb R58M123ABC" and phone.to_json()["serial"] == "R58M123ABC"
    assert local.address() == "localhost" and local.to_json()["credentials"] == "-"
    assert isinstance(nano.make_transport(), SshTransport) and isinstance(
        phone.make_transport(), AdbTransport
    )
    assert isinstance(local.make_transport(), LocalTransport)
    with pytest.raises(AttributeError, match="no setting 'serial'"):
        _ = nano.serial


def test_foreign_and_forbidden_keys(tmp_path: Path) -> None:
    with pytest.raises(
        BadInput, match=r"devices.toml:3: \[devices.x\] 'known_hosts' only applies to transport = \"ssh\""
    ):
        _devices(tmp_path, '[devices.x]\ntransport = "local"\nknown_hosts = "/k"\n')
    with pytest.raises(
        BadInput, match=r"devices.toml:3: .*passwords are not accepted; use keys or ssh-agent"
    ):
        _devices(tmp_path, '[devices.x]\nhost = "h"\npassword = "hunter2"\ntarget = "x86-cpu"\n')
    with pytest.raises(BadInput, match=r"devices.toml:3: .*port 70000 is out of range"):
        _devices(tmp_path, '[devices.x]\nhost = "h"\nport = 70000\ntarget = "x86-cpu"\n')


def test_local_device_works_in_the_edgekit_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    assert local_device().workdir == str(tmp_path / "cache")
    assert load_devices(None)["local"].target in ("x86-cpu", "arm64-cpu")
    defined = _devices(tmp_path, '[devices.here]\ntransport = "local"\n')["here"]
    assert defined.workdir == str(tmp_path / "cache") and defined.target == local_device().target


def test_only_ssh_devices_have_host_keys(tmp_path: Path) -> None:
    devices = _devices(tmp_path, '[devices.phone]\nserial = "x"\ntarget = "android-arm64"\n')
    for name in ("phone", "local"):
        with pytest.raises(BadInput, match="only SSH devices have host keys"):
            asyncio.run(trust_device(devices[name]))
