"""The on-device engine build: TensorRT's implementation of the backend's on-device entry hook.

TensorRT engines are tied to the GPU and TensorRT version that built them, so each device builds its
own from the bundle's recipe (`build.sh`: trtexec with the calibration cache or the Q/DQ ONNX). The
engine and the build log come home into `<artifact>/engines/<device>/`, and the device's TensorRT
version and GPU (parsed from trtexec's banner) go into the manifest under `details.device_builds`.
An engine already home is uploaded instead (skipped when the device has it).
"""

from __future__ import annotations

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
    local_dir = art.dir / ENGINES_DIR / safe_name(device.name)
    name = engine_name(art.manifest)
    if (local_dir / name).is_file():
        remote = f"{art_dir}/{ENGINES_DIR}/{safe_name(device.name)}/{name}"
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
    record_device_build(art, device.name, log_text, local_dir / name)
    return remote


def record_device_build(art: OnDeviceArtifact, device_name: str, log_text: str, engine: Path) -> None:
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
        "built": now(),
        "log": (engine.parent / "build.log").relative_to(art.dir).as_posix(),
    }
    from edgekit.backends import get_backend

    manifest["files"] = get_backend("tensorrt").file_records(art.dir, manifest["entry"])
    write_json_atomic(art.dir / MANIFEST, manifest)
    art.manifest = manifest
