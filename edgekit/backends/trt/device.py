"""The on-device engine build: TensorRT's implementation of the backend's on-device entry hook.

TensorRT engines are tied to the GPU and TensorRT version that built them, so each device builds its
own from the bundle's recipe (`build.sh`: trtexec with the calibration cache or the Q/DQ ONNX). The
engine and the build log come home into `<artifact>/engines/<device>/<stack key>/`, where the key is a
digest of the device's TensorRT stack and GPU as a quick shell probe reads them (trtexec's digest, the
tensorrt module's and libnvinfer package's versions, the GPU and driver, the L4T release, the board):
after a TensorRT or JetPack upgrade the key changes and the engine is built again. The device's
TensorRT version and GPU (parsed from trtexec's banner) and the probe go into the manifest under
`details.device_builds`. An engine already home for this key is uploaded instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.backends.trt import formats
from edgekit.digest import file_sha256
from edgekit.fsio import safe_name, write_text_atomic
from edgekit.manifest import MANIFEST, now, write_json_atomic
from edgekit.transport import Transport, TransportError

if TYPE_CHECKING:
    from edgekit.backends.base import OnDeviceArtifact, OnDeviceJob, OnDeviceSettings

ENGINES_DIR = "engines"  # <artifact>/engines/<device>/: engines built on each device
DEFAULT_ENGINE = "model.engine"
BUILD_SCRIPT = "build.sh"
# one `key=value` line per fact of the device's TensorRT stack and GPU; absent facts print nothing
STACK_PROBE = r"""
t=$(command -v trtexec 2>/dev/null) && echo "trtexec_sha256=$(sha256sum "$t" 2>/dev/null | cut -c1-64)"
python3 -c 'import tensorrt; print("tensorrt=" + tensorrt.__version__)' 2>/dev/null
dpkg-query -W -f='libnvinfer=${Version}\n' libnvinfer-bin 2>/dev/null
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu=/'
[ -r /etc/nv_tegra_release ] && head -n1 /etc/nv_tegra_release | sed 's/^/l4t=/'
[ -r /proc/device-tree/model ] && { printf 'board='; tr -d '\0' < /proc/device-tree/model; echo; }
true
"""


def engine_name(manifest: dict[str, Any]) -> str:
    return ((manifest.get("details") or {}).get("build") or {}).get("engine") or DEFAULT_ENGINE


async def device_engine(
    transport: Transport,
    job: OnDeviceJob,
    art_dir: str,
    settings: OnDeviceSettings,
    emit: Callable[[str], None],
) -> str:
    """The remote path of this device's engine for a TensorRT bundle uploaded to `art_dir`."""
    art, device = job.artifact, job.device
    stack = await device_stack(transport)
    key = stack_key(stack)
    local_dir = art.dir / ENGINES_DIR / safe_name(device.name) / key
    name = engine_name(art.manifest)
    if (local_dir / name).is_file():
        remote = f"{art_dir}/{ENGINES_DIR}/{safe_name(device.name)}/{key}/{name}"
        await transport.upload(local_dir / name, remote)
        return remote
    if not (art.dir / BUILD_SCRIPT).is_file():
        raise TransportError(
            f"{art.name}: no {BUILD_SCRIPT} recipe in the bundle to build the engine with", "build"
        )
    emit("building")
    rc, out, err = await transport.run(["sh", f"{art_dir}/{BUILD_SCRIPT}"], timeout=settings.timeout_s)
    log_text = out + ("\n" + err if err else "")
    local_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(local_dir / "build.log", log_text)
    if rc != 0:
        last = next((line for line in reversed(log_text.splitlines()) if line.strip()), f"exit {rc}")
        raise TransportError(f"{device.name}: TensorRT engine build failed: {last.strip()[-300:]}", "build")
    remote = f"{art_dir}/{name}"
    partial = local_dir / f".{name}.part"
    await transport.download(remote, partial)
    os.replace(partial, local_dir / name)
    record_device_build(art, device.name, log_text, local_dir / name, stack)
    return remote


async def device_stack(transport: Transport) -> dict[str, str]:
    """The device's TensorRT stack and GPU (STACK_PROBE's facts); empty when the probe says nothing."""
    rc, out, _ = await transport.run(["sh", "-c", STACK_PROBE], timeout=60)
    facts: dict[str, str] = {}
    for line in out.splitlines() if rc == 0 else []:
        key, sep, value = line.partition("=")
        if sep and value.strip():
            facts[key.strip()] = value.strip()
    return facts


def stack_key(stack: dict[str, str]) -> str:
    """A short digest of the stack: the engine cache's key below the device's name."""
    text = "\n".join(f"{k}={v}" for k, v in sorted(stack.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def record_device_build(
    art: OnDeviceArtifact, device_name: str, log_text: str, engine: Path, stack: dict[str, str] | None = None
) -> None:
    """Add the engine and the device's TensorRT facts to the artifact's manifest (atomically)."""
    facts = formats.parse_trtexec_log(log_text)
    manifest = json.loads((art.dir / MANIFEST).read_text(encoding="utf-8"))
    details = manifest.setdefault("details", {})
    details.setdefault("device_builds", {})[device_name] = {
        "engine": engine.relative_to(art.dir).as_posix(),
        "engine_sha256": file_sha256(engine),
        "engine_bytes": engine.stat().st_size,
        "tensorrt": facts.get("tensorrt"),
        "gpu": facts.get("device"),
        "stack": stack or {},
        "stack_key": stack_key(stack or {}),
        "built": now(),
        "log": (engine.parent / "build.log").relative_to(art.dir).as_posix(),
    }
    from edgekit.backends import get_backend

    manifest["files"] = get_backend("tensorrt").file_records(art.dir, manifest["entry"])
    write_json_atomic(art.dir / MANIFEST, manifest)
    art.manifest = manifest
