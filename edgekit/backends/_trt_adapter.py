"""ADAPTER (temporary, for the merge of the `arch-trt` split): the TensorRT backend's answers to the
backend seam (`edgekit.backends.base.Backend`) and its typed `--option`s, kept out of `trt.py` so the
split of that module into the `edgekit/backends/trt/` package does not conflict with them.

MERGE NOTE: once `edgekit.backends.trt` is a package, move `TensorRTOptions`, the methods of the
class below, `device_engine` and `record_device_build` into it (onto its `TensorRTBackend`), point
the registry row in `edgekit/backends/__init__.py` back at `edgekit.backends.trt:TensorRTBackend`,
convert the package's `job.options.extra` reads to `self.options_of(job.options)`, and delete this
file. `runner.device_engine` / `runner.record_device_build` no longer exist: the runner calls
`Backend.on_device_entry`, which this class answers with `device_engine`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edgekit.backends import trt
from edgekit.backends.base import ExportOptions
from edgekit.backends.options import BackendOptions
from edgekit.manifest import MANIFEST, write_json_atomic
from edgekit.transport import TransportError, sha256_file

if TYPE_CHECKING:
    from edgekit.runner import Artifact, BenchSettings, Job
    from edgekit.targets import TargetProfile
    from edgekit.transport import Transport

ENGINES_DIR = "engines"  # <artifact>/engines/<device>/: TensorRT engines built on each device


@dataclass
class TensorRTOptions(BackendOptions):
    """`--option KEY=VALUE` of the tensorrt backend."""

    min_shapes: str | None = field(
        default=None, metadata={"help": "optimization profile minimum, NAME:1x3x224x224[,NAME:...]"}
    )
    opt_shapes: str | None = field(
        default=None, metadata={"help": "optimization profile optimum (as min_shapes)"}
    )
    max_shapes: str | None = field(
        default=None, metadata={"help": "optimization profile maximum (as min_shapes)"}
    )
    max_batch: int = field(
        default=trt.DEFAULT_MAX_BATCH,
        metadata={"help": "largest batch of a dynamic batch axis (profile max)"},
    )
    int8_mode: Literal["qdq", "calib"] | None = field(
        default=None,
        metadata={
            "help": "INT8 build: qdq (explicit Q/DQ ONNX) or calib (calibration cache); default by target"
        },
    )
    build_engine: bool = field(
        default=False,
        metadata={"help": "build the engine on this machine at export (needs TensorRT and a GPU)"},
    )


class TensorRTBackend(trt.TensorRTBackend):
    Options = TensorRTOptions
    model_suffixes = (".onnx", ".data", ".engine", ".plan")

    def bundle_only(self) -> str | None:
        if self.engine_available():
            return None
        return "bundle only: no tensorrt here, engines build on the device"

    def needs_calibration(self, precision: str, options: ExportOptions) -> bool:
        return precision == "int8"  # host calibration writes the cache and the Q/DQ ONNX

    def times_here(self, target: TargetProfile, manifest: Mapping[str, Any]) -> bool:
        """Only a host-built engine times TensorRT here: the bundle's host runner is onnxruntime."""
        return target.build == "host" and bool((manifest.get("details") or {}).get("engine"))

    def device_files(self, manifest: Mapping[str, Any]) -> list[tuple[str, str | None]]:
        """Engines built on devices stay home: each device gets only its own (see device_engine)."""
        return [f for f in super().device_files(manifest) if not f[0].startswith(f"{ENGINES_DIR}/")]

    async def on_device_entry(
        self,
        transport: Transport,
        job: Job,
        remote_dir: str,
        settings: BenchSettings,
        emit: Callable[[str], None],
    ) -> str:
        engine = (job.artifact.manifest.get("details") or {}).get("engine")
        if engine and transport.kind == "local":
            return f"{remote_dir}/{engine}"  # built on this machine at export: its own engine
        return await device_engine(transport, job, remote_dir, settings, emit)


async def device_engine(
    transport: Transport, job: Job, art_dir: str, settings: BenchSettings, emit: Callable[[str], None]
) -> str:
    """The remote path of this device's TensorRT engine for a TensorRT bundle.

    TensorRT engines are tied to the GPU and TensorRT version that built them, so each device builds
    its own from the bundle's recipe (`build.sh`: trtexec with the calibration cache or the Q/DQ ONNX).
    The engine and the build log come home into `<artifact>/engines/<device>/`, and the device's
    TensorRT version and GPU (parsed from trtexec's banner) go into the manifest under
    `details.device_builds`. An engine already there is uploaded (skipped when the device has it).
    """
    from edgekit.runner.job import safe_name

    art, device = job.artifact, job.device
    local_dir = art.dir / ENGINES_DIR / safe_name(device.name)
    engine_name = ((art.manifest.get("details") or {}).get("build") or {}).get("engine") or "model.engine"
    if (local_dir / engine_name).is_file():
        remote = f"{art_dir}/{ENGINES_DIR}/{safe_name(device.name)}/{engine_name}"
        await transport.upload(local_dir / engine_name, remote)
        return remote
    if not (art.dir / "build.sh").is_file():
        raise TransportError(
            f"{art.name}: no build.sh recipe in the bundle to build the engine with", "build"
        )
    emit("building")
    rc, out, err = await transport.run(["sh", f"{art_dir}/build.sh"], timeout=settings.timeout_s)
    log_text = out + ("\n" + err if err else "")
    local_dir.mkdir(parents=True, exist_ok=True)
    (local_dir / "build.log").write_text(log_text, encoding="utf-8")
    if rc != 0:
        last = next((line for line in reversed(log_text.splitlines()) if line.strip()), f"exit {rc}")
        raise TransportError(f"{device.name}: TensorRT engine build failed: {last.strip()[-300:]}", "build")
    remote = f"{art_dir}/{engine_name}"
    tmp_engine = local_dir / f".{engine_name}.part"
    await transport.download(remote, tmp_engine)
    os.replace(tmp_engine, local_dir / engine_name)
    record_device_build(art, device.name, log_text, local_dir / engine_name)
    return remote


def record_device_build(art: Artifact, device_name: str, log_text: str, engine: Path) -> None:
    """Add the engine and the device's TensorRT facts to the artifact's manifest (atomically)."""
    from edgekit import trt_formats
    from edgekit.backends import get_backend
    from edgekit.runner.job import now

    facts = trt_formats.parse_trtexec_log(log_text)
    manifest = json.loads((art.dir / MANIFEST).read_text(encoding="utf-8"))
    details = manifest.setdefault("details", {})
    details.setdefault("device_builds", {})[device_name] = {
        "engine": engine.relative_to(art.dir).as_posix(),
        "engine_sha256": sha256_file(engine),
        "engine_bytes": engine.stat().st_size,
        "tensorrt": facts.get("tensorrt"),
        "gpu": facts.get("device"),
        "built": now(),
        "log": (engine.parent / "build.log").relative_to(art.dir).as_posix(),
    }
    manifest["files"] = get_backend("tensorrt").file_records(art.dir, manifest["entry"])
    write_json_atomic(art.dir / MANIFEST, manifest)
    art.manifest = manifest
